"""Engine knobs (not model facts): batch size, cache lengths, dtype, device, compile, audio chunking.

Model facts come from the checkpoint's config.json; request knobs live in `SamplingParams`. CLI flags override
only these.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from omnistream.errors import ConfigError

_DTYPES = {"float32": torch.float32, "fp32": torch.float32, "bfloat16": torch.bfloat16, "bf16": torch.bfloat16,
           "float16": torch.float16, "fp16": torch.float16, "float64": torch.float64, "fp64": torch.float64}


def resolve_dtype(dtype: torch.dtype | str) -> torch.dtype:
    if isinstance(dtype, torch.dtype):
        return dtype
    try:
        return _DTYPES[str(dtype).lower().removeprefix("torch.")]
    except KeyError:
        raise ConfigError(f"unknown dtype {dtype!r}; use one of {sorted(_DTYPES)}", param="dtype") from None


def resolve_device(device: torch.device | str | None) -> torch.device:
    if device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(device)
    except (RuntimeError, TypeError) as e:
        raise ConfigError(f"bad device {device!r}: {e}", param="device") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device 'cuda' requested but CUDA is not available", param="device")
    return device


@dataclass(frozen=True)
class EngineConfig:
    """How the engine runs. `None` lengths are derived from the checkpoint (see `resolved`)."""
    max_num_seqs: int = 8                    # cache slots: requests whose text (or speech) is generated at once
    max_model_len: int | None = None         # thinker tokens per request (prompt + answer); None → min(config, 8192)
    talker_max_len: int | None = None        # talker positions per request (prompt + frames); None → max_model_len
    max_prefill_tokens: int = 8192           # prompt tokens admitted per step (the first admission always goes)
    max_waiting: int = 1024                  # queued requests before add() raises CapacityError
    default_max_new_tokens: int = 1024       # the reference's thinker_max_new_tokens when the checkpoint sets none
    first_audio_frames: int = 1              # frames decoded into the first audio chunk (latency)
    audio_chunk_frames: int = 4              # frames per later chunk (throughput; chunks concatenate exactly)
    compile: bool = False                    # torch.compile the decode steps; falls back to eager on failure
    native_kernels: bool = True              # bf16 on CPU: one-row products through the native GEMV

    def __post_init__(self) -> None:
        for name in ("max_num_seqs", "max_prefill_tokens", "max_waiting", "default_max_new_tokens",
                     "first_audio_frames", "audio_chunk_frames"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"{name} must be a positive integer, got {value!r}", param=name)
        for name in ("max_model_len", "talker_max_len"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or value < 16):
                raise ConfigError(f"{name} must be an integer ≥ 16, got {value!r}", param=name)

    def thinker_len(self, max_position_embeddings: int) -> int:
        if self.max_model_len is not None:
            return min(self.max_model_len, max_position_embeddings)
        return min(max_position_embeddings, 8192)

    def talker_len(self, thinker_len: int, max_position_embeddings: int) -> int:
        return min(self.talker_max_len or thinker_len, max_position_embeddings)
