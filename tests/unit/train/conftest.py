"""A tiny built-in-format checkpoint folder (small BPE, real config layout) shared by the training tests."""
from __future__ import annotations

import pytest

from omnistream.train.builtin_config import BuiltinSizes, write_assets

TINY = BuiltinSizes(hidden=32, thinker_layers=1, heads=2, kv_heads=1, experts=2, top_k=1, moe_intermediate=32,
                    vision_hidden=32, vision_depth=1, audio_d_model=32, audio_layers=1, talker_hidden=32,
                    talker_layers=1, talker_experts=2, code_groups=2, codebook=32, code2wav_hidden=32,
                    decoder_dim=32, bpe_vocab=400)


@pytest.fixture(scope="session")
def tiny_assets(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tiny_builtin")
    write_assets(folder, TINY)
    return folder
