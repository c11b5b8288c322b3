"""The benchmark's model shapes and their random-weight checkpoints (written by transformers, read by both sides).

* tiny  — the spec §8 tiny model (tests/reference.py `tiny_config`): engine overheads dominate.
* slice — the released Instruct config (tests/fixtures/instruct_config.json: hidden 2048, 128 experts top-8,
          vocab 152064; talker, code predictor and Code2Wav at their real widths) with only `layers`
          layers per component, so it fits a small machine while every matrix has its real size.

Weights are random but non-degenerate (tests.reference.reinitialize): routers spread over all experts, as a
trained model's would, so the memory traffic of expert routing is realistic.
"""
from __future__ import annotations

import copy
import hashlib
import json
import logging
import sys
import time
from pathlib import Path
from typing import Any

import torch

from omnistream.cache import cache_root as omnistream_cache

ROOT = Path(__file__).resolve().parents[1]
logger = logging.getLogger(__name__)


def shape_config(shape: str, layers: int = 2) -> dict[str, Any]:
    if shape == "tiny":
        from tests.reference import tiny_config
        return tiny_config()
    if shape != "slice":
        raise ValueError(f"unknown shape {shape!r} (tiny or slice)")
    cfg = json.loads((ROOT / "tests" / "fixtures" / "instruct_config.json").read_text())
    thinker, talker = cfg["thinker_config"], cfg["talker_config"]
    thinker["text_config"]["num_hidden_layers"] = layers
    thinker["audio_config"]["encoder_layers"] = layers
    vision = thinker["vision_config"]
    vision["depth"] = layers
    vision["deepstack_visual_indexes"] = list(range(min(3, layers)))
    talker["text_config"]["num_hidden_layers"] = layers
    talker["code_predictor_config"]["num_hidden_layers"] = layers
    talker["accept_hidden_layer"] = min(talker["accept_hidden_layer"], layers)
    cfg["code2wav_config"]["num_hidden_layers"] = layers
    return cfg


def cache_root() -> Path:
    return omnistream_cache() / "bench"


def checkpoint(shape: str, dtype: torch.dtype, layers: int = 2, seed: int = 0) -> Path:
    """The random checkpoint for a shape, built once and cached (OMNISTREAM_CACHE/bench/...)."""
    cfg = shape_config(shape, layers)
    key = hashlib.sha1(json.dumps([cfg, str(dtype), seed], sort_keys=True).encode()).hexdigest()[:10]
    folder = cache_root() / f"{shape}-{key}"
    if (folder / "config.json").is_file() and any(folder.glob("*.safetensors")):
        return folder
    build(folder, cfg, dtype, seed)
    return folder


def build(folder: Path, cfg: dict[str, Any], dtype: torch.dtype, seed: int) -> None:
    from transformers import Qwen3OmniMoeForConditionalGeneration

    from tests.reference import _hf_config, reinitialize

    started = time.perf_counter()
    print(f"[bench] building a random checkpoint in {folder} ...", file=sys.stderr, flush=True)
    folder.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)            # build in the target dtype: the slice is ~2.3 B parameters
    try:
        model = Qwen3OmniMoeForConditionalGeneration(_hf_config(copy.deepcopy(cfg))).eval()
    finally:
        torch.set_default_dtype(previous)
    reinitialize(model, seed)
    model.save_pretrained(folder)
    print(f"[bench] built in {time.perf_counter() - started:.0f} s", file=sys.stderr, flush=True)
