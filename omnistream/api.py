"""The Python API: `Omni.from_pretrained(...)`, `omni.chat(...)` and `omni.stream(...)`.

    from omnistream import Omni
    omni = Omni.from_pretrained("path/to/checkpoint", dtype="bfloat16", device="cpu")
    reply = omni.chat(messages, voice="ethan", max_new_tokens=256, temperature=0.7, seed=0)
    reply.text, reply.audio, reply.sample_rate, reply.token_ids, reply.usage, reply.thinking
    for event in omni.stream(messages, voice="chelsie"):   # TextDelta / AudioChunk / Done (or Failed)
        ...

A thin synchronous facade: the engine runs on its own thread (`EngineThread`), so several threads calling
`chat` at once are batched together. Every generation knob left as None takes the checkpoint's default
(`generation_config.json`, see engine/defaults.py); talker knobs are passed with a `talker_` prefix.
"""
from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from omnistream.engine.async_engine import AsyncEngine, EngineThread
from omnistream.engine.config import EngineConfig, resolve_device, resolve_dtype
from omnistream.engine.defaults import GenerationDefaults
from omnistream.engine.engine import Engine
from omnistream.engine.events import AudioChunk, Done, Event, Failed, TextDelta, Usage
from omnistream.engine.request import SamplingParams
from omnistream.engine.validation import voices
from omnistream.errors import CheckpointError

logger = logging.getLogger(__name__)

BUILTIN_MODEL = Path(__file__).resolve().parent / "assets" / "builtin"
SAMPLE_RATE = 24000


@dataclass(frozen=True, eq=False)
class Reply:
    """A finished answer. `audio` is float32 mono (empty without speech); `thinking` holds <think> content."""
    text: str
    audio: np.ndarray
    sample_rate: int
    token_ids: tuple[int, ...]
    usage: Usage
    thinking: str = ""
    finish_reason: str = "stop"
    audio_codes: np.ndarray | None = None          # [Q, F] codec frames behind `audio`
    timings: dict[str, float] = field(default_factory=dict)


class Omni:
    """A loaded checkpoint plus a running engine."""

    def __init__(self, model: torch.nn.Module, processor: Any, *, engine_config: EngineConfig | None = None,
                 defaults: GenerationDefaults | None = None) -> None:
        self.model, self.processor = model, processor
        tokenizer = processor.tokenizer
        self.defaults = defaults or GenerationDefaults.from_dict({}, model.config.im_end_token_id)
        self.engine = Engine(model, text_decoder=processor.incremental_decoder, config=engine_config or EngineConfig(),
                             defaults=self.defaults, token_ids=processor.token_ids,
                             think_ids=(tokenizer.token_to_id("<think>"), tokenizer.token_to_id("</think>")))
        self._thread = EngineThread(self.engine)

    @classmethod
    def from_pretrained(cls, path: str | Path | None = None, *, dtype: torch.dtype | str | None = None,
                        device: torch.device | str | None = "cpu", engine_config: EngineConfig | None = None,
                        **engine_options: Any) -> Omni:
        """Load a checkpoint folder (None → the built-in model). `engine_options` are EngineConfig fields."""
        from omnistream.inputs import Processor
        from omnistream.models.omni import OmniModel

        folder = _checkpoint_folder(path)
        torch_dtype = resolve_dtype(dtype) if dtype is not None else _checkpoint_dtype(folder)
        model = OmniModel.from_pretrained(folder, dtype=torch_dtype, device=resolve_device(device))
        config = replace(engine_config or EngineConfig(), **engine_options)
        defaults = GenerationDefaults.from_checkpoint(folder, model.config.im_end_token_id)
        return cls(model, Processor.from_pretrained(folder), engine_config=config, defaults=defaults)

    # ------------------------------------------------------------------------------------------ generation
    def chat(self, messages: list[dict[str, Any]], **options: Any) -> Reply:
        """Generate a whole answer (text and, when the checkpoint speaks, audio). Options as `stream`."""
        return collect(self.stream(messages, **options))

    def stream(self, messages: list[dict[str, Any]], *, use_audio_in_video: bool = False,
               request_id: str | None = None, **options: Any) -> Iterator[Event]:
        """Events while the answer is generated: TextDelta, AudioChunk, then Done (or Failed).

        options: voice, max_new_tokens, min_new_tokens, temperature, top_p, top_k, repetition_penalty, seed,
        return_audio, stop, stop_token_ids, and talker_* knobs (talker_temperature, talker_top_k, …).
        Stopping the iteration early cancels the request. Bad options raise before any compute.
        """
        params = self.sampling_params(**options)
        inputs = self.processor(messages, use_audio_in_video=use_audio_in_video)
        return self.stream_inputs(inputs, params, request_id)

    def stream_inputs(self, inputs: Any, params: SamplingParams | None = None,
                      request_id: str | None = None) -> Iterator[Event]:
        """Like `stream` for prebuilt ModelInputs (one conversation)."""
        return self._thread.stream(inputs, params or self.sampling_params(), request_id)

    def sampling_params(self, **options: Any) -> SamplingParams:
        """SamplingParams from keyword options, unset ones from the checkpoint's generation defaults."""
        return self.defaults.sampling_params(**options)

    # ------------------------------------------------------------------------------------------ misc
    @property
    def voices(self) -> tuple[str, ...]:
        return voices(self.engine)

    @property
    def has_speech(self) -> bool:
        return bool(self.model.has_speech)

    def async_engine(self) -> AsyncEngine:
        """An asyncio front end over this Omni's engine thread (for servers)."""
        return AsyncEngine(self._thread)

    def close(self) -> None:
        self._thread.close()

    def __enter__(self) -> Omni:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def collect(events: Iterator[Event]) -> Reply:
    """Consume a stream into a Reply; a Failed event re-raises its error."""
    audio: list[np.ndarray] = []
    sample_rate = SAMPLE_RATE
    for event in events:
        if isinstance(event, AudioChunk):
            audio.append(event.samples)
            sample_rate = event.sample_rate
        elif isinstance(event, Failed):
            raise event.error
        elif isinstance(event, Done):
            wav = np.concatenate(audio).astype(np.float32) if audio else np.zeros(0, np.float32)
            return Reply(text=event.text, audio=wav, sample_rate=sample_rate, token_ids=event.token_ids,
                         usage=event.usage, thinking=event.thinking, finish_reason=event.finish_reason,
                         audio_codes=event.audio_codes, timings=dict(event.timings))
        elif not isinstance(event, TextDelta):
            raise TypeError(f"unexpected event {event!r}")
    raise RuntimeError("the event stream ended without Done")


def _checkpoint_folder(path: str | Path | None) -> Path:
    if path is None:
        if not (BUILTIN_MODEL / "config.json").is_file():
            raise CheckpointError(
                f"the built-in model is not installed ({BUILTIN_MODEL} has no config.json); pass the path of a "
                f"checkpoint folder to Omni.from_pretrained(path)", param="path")
        return BUILTIN_MODEL
    folder = Path(path).expanduser()
    if not folder.is_dir():
        raise CheckpointError(f"checkpoint folder {folder} does not exist", param="path")
    return folder


def _checkpoint_dtype(folder: Path) -> torch.dtype:
    """The dtype the checkpoint's config.json declares (torch_dtype / dtype), float32 when it declares none."""
    try:
        data = json.loads((folder / "config.json").read_text())
    except (OSError, json.JSONDecodeError):
        return torch.float32
    name = data.get("torch_dtype") or data.get("dtype")
    return resolve_dtype(name) if isinstance(name, str) else torch.float32
