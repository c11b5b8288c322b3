"""A tiny built-in-format checkpoint folder (small BPE, real config layout) shared by the training tests."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from omnistream.checkpoint import save_checkpoint
from omnistream.train.builtin_config import BuiltinSizes, write_assets
from omnistream.train.parts import ASSET_FILES, fresh_model
from omnistream.train.talker_codes import record_codes

TINY = BuiltinSizes(hidden=32, thinker_layers=1, heads=2, kv_heads=1, experts=2, top_k=1, moe_intermediate=32,
                    vision_hidden=32, vision_depth=1, audio_d_model=32, audio_layers=1, talker_hidden=32,
                    talker_layers=1, talker_experts=2, code_groups=2, codebook=32, code2wav_hidden=32,
                    decoder_dim=32, bpe_vocab=400)


@pytest.fixture(scope="session")
def tiny_assets(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tiny_builtin")
    write_assets(folder, TINY)
    return folder


RECORDED_MIX = {"color": 1.0, "direction": 1.0, "transcribe_digits": 1.0}


@pytest.fixture(scope="session")
def recording(tiny_assets, tmp_path_factory):
    """A tiny random checkpoint's spoken answers to 6 training examples, every one kept (it is never right)."""
    folder = tmp_path_factory.mktemp("teacher")
    for name in ASSET_FILES:
        if (Path(tiny_assets) / name).is_file():
            (folder / name).write_bytes((Path(tiny_assets) / name).read_bytes())
    config = json.loads((folder / "generation_config.json").read_text())
    config["talker_max_new_tokens"] = 12       # a random talker rarely says EOS: keep its answers short
    (folder / "generation_config.json").write_text(json.dumps(config))
    save_checkpoint(fresh_model(tiny_assets, seed=5), folder)
    out = tmp_path_factory.mktemp("recording")
    monkeypatch = pytest.MonkeyPatch()
    monkeypatch.setenv("OMNISTREAM_CACHE", str(tmp_path_factory.getbasetemp() / "speech-cache"))
    kept = record_codes(folder, out, start=0, count=6, seed=9, mix=RECORDED_MIX, spoken_fraction=0.5, chunk=3,
                        keep=lambda example, reply: True)
    monkeypatch.undo()
    return folder, out, kept
