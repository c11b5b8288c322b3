"""Streamed speech: the AudioChunk events of a reply concatenate to exactly the one-shot decoding of its codes,
whatever the chunking, with no samples lost at chunk boundaries — and speech starts while the text is still
being written (spec §1.1, §5.2, §7.2-7).

Run in float64 so "exactly" can mean 1e-10: every part of the decoder is causal, so streaming equals one-shot
in exact arithmetic and differs in float32 only by rounding (tests/parity/test_end_to_end.py covers float32).
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

from omnistream.api import Omni
from omnistream.engine.events import AudioChunk, Done, TextDelta
from tests.engine_fixtures import cached_checkpoint, conversations

OPTIONS = dict(temperature=0, max_new_tokens=16, talker_temperature=0, talker_max_new_tokens=40,
               talker_min_new_tokens=4, voice="chelsie")


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return cached_checkpoint(tmp_path_factory)


def _stream(folder, first: int, chunk: int):
    with Omni.from_pretrained(folder, dtype="float64", first_audio_frames=first, audio_chunk_frames=chunk) as omni:
        events = list(omni.stream(conversations()["audio_image"], **OPTIONS))
        return omni, events


@pytest.mark.parametrize("first,chunk", [(1, 1), (1, 4), (3, 7), (64, 64)])
def test_chunks_concatenate_to_one_shot_decoding(folder, first, chunk):
    omni, events = _stream(folder, first, chunk)
    done = events[-1]
    assert isinstance(done, Done) and done.audio_codes is not None
    chunks = [e for e in events if isinstance(e, AudioChunk)]
    frames = done.audio_codes.shape[1]
    assert frames > 4 and all(c.sample_rate == 24000 and c.samples.dtype == np.float32 for c in chunks)
    # chunk bookkeeping: consecutive frame ranges of the requested sizes covering every frame
    assert [c.first_frame for c in chunks] == list(np.cumsum([0] + [c.num_frames for c in chunks[:-1]]))
    assert sum(c.num_frames for c in chunks) == frames and chunks[0].num_frames == min(first, frames)
    code2wav = omni.model.code2wav
    for c in chunks:   # each chunk holds exactly the samples its frames made final
        end = c.first_frame + c.num_frames
        assert c.samples.shape[0] == code2wav.num_samples(end) - code2wav.num_samples(c.first_frame)
    streamed = np.concatenate([c.samples for c in chunks]).astype(np.float64)
    with torch.no_grad():
        one_shot = code2wav(torch.from_numpy(done.audio_codes)[None]).reshape(-1).numpy()
    assert streamed.shape == one_shot.shape == (code2wav.num_samples(frames),)
    # chunks are float32 events: equal to the float64 one-shot within float32 rounding of the samples
    np.testing.assert_allclose(streamed, one_shot, rtol=0, atol=1e-7)
    assert done.usage.audio_samples == streamed.shape[0]


def test_same_audio_whatever_the_chunking(folder):
    runs = [_stream(folder, first, chunk)[1] for first, chunk in ((1, 1), (2, 5))]
    audio = [np.concatenate([e.samples for e in events if isinstance(e, AudioChunk)]) for events in runs]
    np.testing.assert_array_equal(audio[0], audio[1])


def test_speech_starts_while_text_is_written(folder):
    """The first audio chunk comes out of the very step that produced the first text token (talker prefilled
    right after the thinker's prefill), and frame k is spoken before the thinker has finished."""
    with Omni.from_pretrained(folder, dtype="float32", first_audio_frames=1, audio_chunk_frames=1) as omni:
        engine = omni.engine
        omni.close()  # drive the engine by hand, step by step
        params = omni.sampling_params(**OPTIONS)
        request = engine.add_request(omni.processor(conversations()["audio_image"]), params)
        first_step = engine.step()
        assert request.output_ids and not request.thinker_done
        assert any(isinstance(e, AudioChunk) for e in first_step)
        audio_steps_while_writing = 0
        while engine.has_work:
            events = engine.step()
            if any(isinstance(e, AudioChunk) for e in events) and not request.thinker_done:
                audio_steps_while_writing += 1
            assert all(not isinstance(e, TextDelta) or e.request_id == request.request_id for e in events)
        assert audio_steps_while_writing >= OPTIONS["max_new_tokens"] - 2
