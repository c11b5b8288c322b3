"""Shared helpers for the engine, API and CLI tests: random-weight checkpoints that omnistream and
transformers both load, conversations, and the reference's greedy generate with its talker codes.

The checkpoints come from `tests.reference` (every weight non-trivial, spec §10) with one more step for the
speech decoder: the residual units' second convs are scaled down and the last conv calibrated so the waveform
is a real, mostly unclipped signal (with full-gain random convs ~95% of samples sit at the ±1 clamp and
float32 rounding grows ~10× per decoder block, so a waveform comparison would prove little).
Each folder also holds a tokenizer with the real special ids, the chat template and preprocessor_config.json.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from omnistream.inputs import write_chat_template, write_tokenizer
from tests.inputs_fixtures import (CORPUS, PREPROCESSOR_CONFIG, ROLE_IDS, SPECIAL_IDS, drawing, encode_video, tone,
                                   video_frames)
from tests.reference import _hf_config, reinitialize, tiny_config

_BUILT: dict[tuple, Path] = {}


@torch.no_grad()
def _calibrate_code2wav(model: torch.nn.Module, seed: int, target_std: float = 0.3) -> None:
    code2wav = model.code2wav
    for name, p in code2wav.named_parameters():
        if name.endswith("conv2.conv.weight"):
            p.mul_(0.3)
    cfg = code2wav.config
    gen = torch.Generator().manual_seed(seed + 100)
    codes = torch.randint(0, cfg.codebook_size, (1, cfg.num_quantizers, 16), generator=gen)
    last = code2wav.decoder[-1]
    captured: list[torch.Tensor] = []
    handle = last.register_forward_hook(lambda module, args, out: captured.append(out))
    code2wav(codes)
    handle.remove()
    factor = target_std / captured[0].std().item()
    last.conv.weight.mul_(factor)
    last.conv.bias.mul_(factor)


def build_engine_checkpoint(folder: Path, cfg: dict[str, Any] | None = None, seed: int = 0) -> Path:
    """A transformers-written random checkpoint with tokenizer files; returns the folder."""
    from transformers import Qwen3OmniMoeForConditionalGeneration

    cfg = cfg or tiny_config()
    folder.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    model = Qwen3OmniMoeForConditionalGeneration(_hf_config(cfg)).float().eval()
    reinitialize(model, seed)
    if cfg.get("enable_audio_output", True):
        _calibrate_code2wav(model, seed)
    model.save_pretrained(folder)
    write_tokenizer(folder, CORPUS, SPECIAL_IDS, vocab_size=600, fixed_ids=ROLE_IDS)
    write_chat_template(folder)
    (folder / "preprocessor_config.json").write_text(json.dumps(PREPROCESSOR_CONFIG, indent=2))
    return folder


def cached_checkpoint(tmp_path_factory, name: str = "instruct", seed: int = 0, **cfg_kwargs: Any) -> Path:
    """Build each (name, seed, config) checkpoint once per test session."""
    key = (name, seed, tuple(sorted(cfg_kwargs.items())))
    if key not in _BUILT:
        _BUILT[key] = build_engine_checkpoint(tmp_path_factory.mktemp(name), tiny_config(**cfg_kwargs), seed)
    return _BUILT[key]


def load_reference_model(folder: Path):
    from tests.reference import load_reference
    return load_reference(folder)


@torch.no_grad()
def reference_generate(model, inputs, **kwargs: Any) -> tuple[list[int], np.ndarray | None, np.ndarray | None]:
    """transformers' generate(...) on our ModelInputs → (new thinker ids, talker codes [Q, F], waveform)."""
    captured: dict[str, torch.Tensor] = {}
    code2wav = getattr(model, "code2wav", None)
    if code2wav is not None:
        original = code2wav.chunked_decode

        def capture(codes, **kw):
            captured["codes"] = codes.clone()
            return original(codes, **kw)
        code2wav.chunked_decode = capture
    try:
        fields = {k: v for k, v in inputs.as_dict().items() if k != "input_ids"}
        out = model.generate(input_ids=inputs.input_ids, **fields, **kwargs)
    finally:
        if code2wav is not None:
            code2wav.chunked_decode = original
    if isinstance(out, tuple):
        sequences, wav = out
        wav = wav.reshape(-1).numpy()
    else:
        sequences, wav = (out.sequences if hasattr(out, "sequences") else out), None
    ids = sequences[0, inputs.input_ids.shape[1]:].tolist()
    codes = captured["codes"][0].numpy() if "codes" in captured else None
    return ids, codes, wav


def conversations() -> dict[str, list[dict[str, Any]]]:
    """Named conversations covering the talker prompt's cases (spec §1.1)."""
    return {
        "system_text": [{"role": "system", "content": "You are a helpful assistant."},
                        {"role": "user", "content": "What is in this image? Describe the audio."}],
        "audio_image": [{"role": "user", "content": [
            {"type": "audio", "audio": tone(1.5)}, {"type": "image", "image": drawing(64, 64)},
            {"type": "text", "text": "What is in this image? Describe the audio."}]}],
        "multi_turn": [{"role": "user", "content": "The red circle moves to the left."},
                       {"role": "assistant", "content": "Yes it does."},
                       {"role": "user", "content": [{"type": "audio", "audio": tone(0.6, 220.0)},
                                                    {"type": "text", "text": "Transcribe the speech"}]}],
        "short": [{"role": "user", "content": "Hello world!"}],
        "video": [{"role": "user", "content": [{"type": "video", "video": encode_video(video_frames(4, 32, 32), fps=2)},
                                               {"type": "text", "text": "Describe the video."}]}],
    }
