"""A leading `<think>…</think>` span is written but never spoken: the talker starts at the first token after
`</think>` and says exactly what it says for the same answer without the span (engine.py, talker_runner.py).

The thinker is forced through a fixed token script (its sampler returns the script; every scripted token is
still fed back through the real decoder), so the span's presence is the only difference between two runs.
"""
from __future__ import annotations

import numpy as np
import pytest

from omnistream.api import Omni
from omnistream.engine.events import AudioChunk, Done
from tests.engine_fixtures import cached_checkpoint, conversations

OPTIONS = dict(temperature=0, max_new_tokens=24, talker_temperature=0, talker_max_new_tokens=40,
               talker_min_new_tokens=4, voice="chelsie")
ANSWER = [300, 301, 302, 303, 304, 305]          # ordinary text ids of the test vocabulary
THOUGHT = [310, 311, 312]


@pytest.fixture(scope="module")
def omni(tmp_path_factory):
    with Omni.from_pretrained(cached_checkpoint(tmp_path_factory), dtype="float32") as omni:
        yield omni


def _run(omni: Omni, script: list[int], max_new_tokens: int = OPTIONS["max_new_tokens"]):
    """One request whose thinker writes `script` (then keeps to its last id) → (request, events, steps), where
    steps[i] = (tokens written after engine step i, that step's events)."""
    engine = omni.engine
    runner = engine.thinker
    real = runner._sample

    def scripted(logits, requests):
        real(logits, requests)                   # the sampler's own bookkeeping still runs
        return [script[min(len(r.output_ids), len(script) - 1)] for r in requests]

    runner._sample = scripted
    try:
        params = omni.sampling_params(**{**OPTIONS, "max_new_tokens": max_new_tokens})
        request = engine.add_request(omni.processor(conversations()["audio_image"]), params)
        steps = []
        while engine.has_work:
            events = engine.step()
            steps.append((len(request.output_ids), events))
    finally:
        runner._sample = real
    return request, [e for _, events in steps for e in events], steps


def _ids(omni: Omni) -> tuple[int, int, int]:
    open_id, close_id = omni.engine._think_open, omni.engine._think_close
    assert open_id is not None and close_id is not None
    return open_id, close_id, omni.engine.defaults.eos_token_ids[0]


def test_the_span_is_written_not_spoken(omni):
    open_id, close_id, eos = _ids(omni)
    _, plain, _ = _run(omni, ANSWER + [eos])
    think_request, think, _ = _run(omni, [open_id, *THOUGHT, close_id, *ANSWER, eos])
    plain_done, think_done = plain[-1], think[-1]
    assert isinstance(plain_done, Done) and isinstance(think_done, Done)
    assert think_done.thinking and think_done.text == plain_done.text
    assert think_done.usage.thinking_tokens == len(THOUGHT) + 1
    assert think_request.speech_start == len(THOUGHT) + 2
    assert plain_done.audio_codes is not None and plain_done.audio_codes.shape[1] > 4
    np.testing.assert_array_equal(think_done.audio_codes, plain_done.audio_codes)
    audio = [np.concatenate([e.samples for e in events if isinstance(e, AudioChunk)]) for events in (plain, think)]
    np.testing.assert_array_equal(audio[0], audio[1])


def test_speech_starts_with_the_answer(omni):
    """No audio while the thinker is inside the span; the first chunk comes out of the step that wrote the
    answer's first token."""
    open_id, close_id, eos = _ids(omni)
    _, _, steps = _run(omni, [open_id, *THOUGHT, close_id, *ANSWER, eos])
    first_audio_at = next(n for n, events in steps if any(isinstance(e, AudioChunk) for e in events))
    assert first_audio_at == len(THOUGHT) + 3           # <think>, the thought, </think>, the first answer token


@pytest.mark.parametrize("case", ["ends_inside_the_span", "empty_answer"])
def test_nothing_to_say_after_the_span(omni, case):
    open_id, close_id, eos = _ids(omni)
    if case == "ends_inside_the_span":
        request, events, _ = _run(omni, [open_id, *THOUGHT * 4], max_new_tokens=6)
        assert request.finish_reason == "length"
    else:
        request, events, _ = _run(omni, [open_id, *THOUGHT, close_id, eos])
    done = events[-1]
    assert isinstance(done, Done) and done.thinking and done.text == ""
    assert done.audio_codes is None and not any(isinstance(e, AudioChunk) for e in events)
    assert not omni.engine.has_work and not omni.engine._talker_prompts
    assert omni.engine.accounts.talker.num_free == omni.engine.config.max_num_seqs
