"""The Python API on random-weight checkpoints: Omni.from_pretrained / chat / stream, the asyncio front end,
bad requests rejected before any compute, cancellation, seeds, defaults and thinking output.

(The built-in model is tested here only for its clear absence error; answers of the built-in model are the
built-in model's own tests.)
"""
from __future__ import annotations

import asyncio
import json
import shutil
import threading

import numpy as np
import pytest
import torch

from omnistream.api import BUILTIN_MODEL, Omni, Reply
from omnistream.engine.async_engine import EngineUnhealthy
from omnistream.engine.events import AudioChunk, Done, TextDelta
from omnistream.errors import CheckpointError, LimitExceeded, OmniInputError, RequestError
from tests.engine_fixtures import cached_checkpoint, conversations

SPEECH = dict(talker_max_new_tokens=16, talker_min_new_tokens=3)


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return cached_checkpoint(tmp_path_factory)


@pytest.fixture(scope="module")
def omni(folder):
    with Omni.from_pretrained(folder, dtype="float32", max_model_len=256) as omni:
        yield omni


@pytest.fixture(scope="module")
def thinking(tmp_path_factory):
    folder = cached_checkpoint(tmp_path_factory, "thinking", seed=3, enable_audio_output=False)
    with Omni.from_pretrained(folder) as omni:
        yield omni


def test_chat_returns_text_audio_and_usage(omni):
    reply = omni.chat(conversations()["audio_image"], voice="Ethan", temperature=0, max_new_tokens=6, **SPEECH)
    assert isinstance(reply, Reply) and reply.sample_rate == 24000
    assert reply.audio.dtype == np.float32 and reply.audio.ndim == 1 and reply.audio.size > 0
    assert len(reply.token_ids) == 6 and reply.finish_reason == "length"
    assert reply.usage.completion_tokens == 6 and reply.usage.prompt_tokens > 20
    assert reply.usage.audio_samples == reply.audio.size == omni.model.code2wav.num_samples(reply.usage.audio_frames)
    assert set(reply.timings) == {"first_text", "first_audio"} and sorted(omni.voices) == ["aiden", "chelsie", "ethan"]


def test_stream_yields_text_audio_then_done(omni):
    events = list(omni.stream(conversations()["system_text"], temperature=0, max_new_tokens=5, **SPEECH))
    assert isinstance(events[-1], Done) and all(not isinstance(e, Done) for e in events[:-1])
    assert any(isinstance(e, AudioChunk) for e in events)
    ids = [t for e in events if isinstance(e, TextDelta) for t in e.token_ids]
    assert tuple(ids) == events[-1].token_ids


def test_return_audio_false_gives_the_same_text_and_no_audio(omni):
    messages = conversations()["short"]
    spoken = omni.chat(messages, temperature=0, max_new_tokens=5, **SPEECH)
    silent = omni.chat(messages, temperature=0, max_new_tokens=5, return_audio=False)
    assert silent.token_ids == spoken.token_ids and silent.audio.size == 0 and silent.audio_codes is None


def test_same_seed_same_answer_and_speech(omni):
    messages = conversations()["short"]
    runs = [omni.chat(messages, temperature=1.0, top_k=50, seed=s, max_new_tokens=6, **SPEECH) for s in (3, 3, 4)]
    assert runs[0].token_ids == runs[1].token_ids and np.array_equal(runs[0].audio_codes, runs[1].audio_codes)
    np.testing.assert_array_equal(runs[0].audio, runs[1].audio)
    assert runs[0].token_ids != runs[2].token_ids


def test_stop_token_ids_end_the_text(omni):
    messages = conversations()["short"]
    free = omni.chat(messages, temperature=0, max_new_tokens=6, return_audio=False)
    reply = omni.chat(messages, temperature=0, max_new_tokens=6, return_audio=False, stop_token_ids=[free.token_ids[2]])
    assert reply.token_ids == free.token_ids[:3] and reply.finish_reason == "stop"


@pytest.mark.parametrize("options,param,error", [
    (dict(voice="nobody"), "voice", RequestError),
    (dict(temperature=-0.5), "temperature", RequestError),
    (dict(top_p=0.0), "top_p", RequestError),
    (dict(max_new_tokens=10_000), "max_new_tokens", RequestError),
    (dict(max_new_tokens=0), "max_new_tokens", RequestError),
    (dict(talker_top_k=-1), "talker_top_k", RequestError),
    (dict(colour="red"), "colour", RequestError),
])
def test_bad_requests_fail_before_any_compute(omni, options, param, error):
    steps = omni.engine.num_steps
    with pytest.raises(error) as info:
        omni.stream(conversations()["short"], **options)
    assert info.value.param == param
    assert omni.engine.num_steps == steps and not omni.engine.has_work


def test_duplicate_request_id_is_rejected(omni):
    stream = omni.stream(conversations()["short"], request_id="same", max_new_tokens=200, return_audio=False)
    with pytest.raises(RequestError) as info:
        omni.stream(conversations()["short"], request_id="same")
    assert info.value.param == "request_id"
    assert isinstance(list(stream)[-1], Done)


def test_prompt_beyond_the_context_is_rejected(omni):
    long = [{"role": "user", "content": "Hello world! " * 200}]
    with pytest.raises(LimitExceeded):
        omni.chat(long)
    with pytest.raises(OmniInputError):
        omni.chat([{"role": "wizard", "content": 3}])


def test_thinker_only_checkpoint_refuses_audio_and_voices(thinking):
    messages = conversations()["short"]
    assert not thinking.has_speech
    with pytest.raises(RequestError) as info:
        thinking.chat(messages, return_audio=True)
    assert info.value.param == "return_audio"
    with pytest.raises(RequestError) as info:
        thinking.chat(messages, voice="ethan")
    assert info.value.param == "voice"
    reply = thinking.chat(messages, max_new_tokens=4)
    assert len(reply.token_ids) == 4 and reply.audio.size == 0


def test_thinking_output_is_surfaced_separately(thinking):
    """A generation prompt that already opened <think> (Thinking templates): the answer goes to `thinking`."""
    inputs = thinking.processor(conversations()["short"])
    think = thinking.processor.tokenizer.token_to_id("<think>")
    ids = torch.cat([inputs.input_ids, torch.tensor([[think]])], dim=1)
    next_position = inputs.position_ids.max() + 1
    positions = torch.cat([inputs.position_ids, torch.full((3, 1, 1), float(next_position))], dim=2)
    inputs.input_ids, inputs.attention_mask, inputs.position_ids = ids, torch.ones_like(ids), positions
    events = list(thinking.stream_inputs(inputs, thinking.sampling_params(max_new_tokens=5)))
    done = events[-1]
    assert done.usage.thinking_tokens == 5 and done.text == ""
    assert all(e.is_thinking for e in events if isinstance(e, TextDelta))


def test_generation_defaults_come_from_generation_config(folder, tmp_path):
    copy = shutil.copytree(folder, tmp_path / "ckpt")
    (copy / "generation_config.json").write_text(json.dumps(
        {"do_sample": True, "temperature": 0.5, "top_k": 5, "top_p": 0.9, "max_new_tokens": 7}))
    with Omni.from_pretrained(copy) as omni:
        params = omni.sampling_params()
        assert (params.temperature, params.top_k, params.top_p) == (0.5, 5, 0.9)
        assert omni.sampling_params(temperature=0).temperature == 0
        reply = omni.chat(conversations()["short"], return_audio=False, seed=1)
        assert len(reply.token_ids) == 7 and reply.finish_reason == "length"


def test_breaking_out_of_a_stream_cancels_the_request(omni):
    stream = omni.stream(conversations()["short"], temperature=0, max_new_tokens=200, talker_max_new_tokens=300)
    for event in stream:
        if isinstance(event, AudioChunk):
            break
    stream.close()
    for _ in range(200):
        if not omni.engine.has_work:
            break
        threading.Event().wait(0.01)
    assert not omni.engine.has_work and omni.engine.accounts.thinker.num_free == omni.engine.config.max_num_seqs


def test_concurrent_chats_are_batched_and_equal_sequential(omni):
    names = ["short", "system_text", "audio_image"]
    options = dict(temperature=0, seed=5, max_new_tokens=5, **SPEECH)   # sampled speech, seeded
    alone = {n: omni.chat(conversations()[n], **options) for n in names}
    results: dict[str, Reply] = {}
    threads = [threading.Thread(target=lambda n=n: results.__setitem__(
        n, omni.chat(conversations()[n], **options))) for n in names]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    for n in names:
        assert results[n].token_ids == alone[n].token_ids
        np.testing.assert_array_equal(results[n].audio_codes, alone[n].audio_codes)


def test_async_engine_generate_and_abort(omni):
    engine = omni.async_engine()
    inputs = omni.processor(conversations()["short"])

    async def main():
        events = [e async for e in engine.generate(inputs, omni.sampling_params(max_new_tokens=4, **SPEECH))]
        partial = []
        async for event in engine.generate(inputs, omni.sampling_params(max_new_tokens=200), request_id="cancel-me"):
            partial.append(event)
            break                                           # leaving the loop aborts the request
        return events, partial

    events, partial = asyncio.run(main())
    assert isinstance(events[-1], Done) and len(events[-1].token_ids) == 4
    assert partial and partial[0].request_id == "cancel-me" and engine.is_healthy


def test_closed_engine_is_unhealthy_and_refuses_work(folder):
    omni = Omni.from_pretrained(folder)
    omni.close()
    with pytest.raises(EngineUnhealthy):
        omni.chat(conversations()["short"])


def test_missing_checkpoints_raise_clear_errors(tmp_path):
    with pytest.raises(CheckpointError) as info:
        Omni.from_pretrained(tmp_path / "nowhere")
    assert info.value.param == "path"
    if not (BUILTIN_MODEL / "config.json").is_file():
        with pytest.raises(CheckpointError, match="built-in model"):
            Omni.from_pretrained()
