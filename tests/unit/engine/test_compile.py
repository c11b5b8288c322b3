"""The optional torch.compile path: a compiler that fails at setup or at the first call falls back to eager with
the same results; and (slow) the compiled engine gives the same greedy answer and speech as the eager one."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from omnistream.engine import compile as compile_module
from omnistream.engine.compile import MaybeCompiled, compile_forward


def _double(x: torch.Tensor) -> torch.Tensor:
    return 2 * x


def test_compiler_setup_failure_runs_eager(monkeypatch):
    def broken(fn, **kwargs):
        raise RuntimeError("no compiler here")

    monkeypatch.setattr(compile_module.torch, "compile", broken)
    fn = MaybeCompiled(_double, True, "double")
    assert not fn.is_compiled and fn(torch.ones(2)).tolist() == [2.0, 2.0]


def test_first_call_failure_falls_back_for_good(monkeypatch):
    calls = []

    def fails_when_called(fn, **kwargs):
        def compiled(*args):
            calls.append(1)
            raise RuntimeError("backend crashed")
        return compiled

    monkeypatch.setattr(compile_module.torch, "compile", fails_when_called)
    fn = MaybeCompiled(_double, True, "double")
    assert fn.is_compiled
    assert fn(torch.ones(1)).item() == 2.0 and fn(torch.ones(1)).item() == 2.0
    assert len(calls) == 1 and not fn.is_compiled


def test_disabled_means_plain_eager_and_compile_forward_wraps_once():
    layer = torch.nn.Linear(3, 3)
    compile_forward(layer, False, "linear")
    assert not isinstance(layer.forward, MaybeCompiled)
    fn = MaybeCompiled(_double, False, "double")
    assert not fn.is_compiled and fn(torch.ones(1)).item() == 2.0


@pytest.mark.slow
def test_compiled_engine_gives_the_eager_answer(tmp_path_factory):
    from omnistream.api import Omni
    from tests.engine_fixtures import cached_checkpoint, conversations

    folder = cached_checkpoint(tmp_path_factory)
    options = dict(temperature=0, max_new_tokens=6, talker_temperature=0, talker_max_new_tokens=10,
                   talker_min_new_tokens=4)
    replies = []
    for compiled in (False, True):
        with Omni.from_pretrained(folder, dtype="float32", compile=compiled) as omni:
            replies.append(omni.chat(conversations()["audio_image"], **options))
            if compiled:
                assert omni.engine.thinker._decode_forward.is_compiled
    eager, compiled = replies
    assert compiled.token_ids == eager.token_ids
    np.testing.assert_array_equal(compiled.audio_codes, eager.audio_codes)
    np.testing.assert_allclose(compiled.audio, eager.audio, atol=1e-3)
