"""End to end against transformers: greedy `Omni.chat` == `generate(..., return_audio=True)` with greedy thinker,
talker and code predictor, on random-weight checkpoints written by transformers and loaded by omnistream.

Compared: the thinker's new token ids (exact), the talker's codec frames [Q, F] (exact), and the waveform
(same length; values within float32 rounding of the same decoder — our decoder run one-shot on the same
codes equals the reference's bit for bit, the streamed one differs by rounding only).

Settings on both sides: the reference's talker defaults except do_sample (so repetition penalty 1.05 on the
talker's own codes is applied by both, spec §7.2-13), `talker_min_new_tokens=4` so a random talker cannot
end before its first frame (spec §8), and talker_max_new_tokens small to keep the test fast. Greedy here
means the thinker, the talker and the code predictor (the reference mirrors the talker's do_sample onto the
predictor; we do the same via predictor_temperature=None).
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

from omnistream.api import Omni
from tests.engine_fixtures import cached_checkpoint, conversations, load_reference_model, reference_generate

pytestmark = pytest.mark.parity

CASES = {
    # name: (conversation, voice, thinker_max_new_tokens, talker_max_new_tokens, extra kwargs)
    "system_text": ("system_text", "ethan", 8, 12, {}),
    "audio_image": ("audio_image", "chelsie", 20, 40, {}),
    "multi_turn_penalties": ("multi_turn", "aiden", 6, 40, {"repetition_penalty": 1.3,
                                                            "talker_repetition_penalty": 1.2}),
    "short_text_long_speech": ("short", "ethan", 3, 30, {}),
    "video_positions": ("video", "ethan", 6, 20, {}),
}


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return cached_checkpoint(tmp_path_factory)


@pytest.fixture(scope="module")
def omni(folder):
    with Omni.from_pretrained(folder, dtype="float32") as omni:
        yield omni


@pytest.fixture(scope="module")
def reference(folder):
    return load_reference_model(folder)


def _reference_kwargs(voice: str, thinker_max: int, talker_max: int, extra: dict) -> dict:
    kwargs = dict(speaker=voice, thinker_max_new_tokens=thinker_max, thinker_do_sample=False,
                  talker_do_sample=False, talker_max_new_tokens=talker_max, talker_min_new_tokens=4)
    if "repetition_penalty" in extra:
        kwargs["thinker_repetition_penalty"] = extra["repetition_penalty"]
    if "talker_repetition_penalty" in extra:
        kwargs["talker_repetition_penalty"] = extra["talker_repetition_penalty"]
    if "stop_token_ids" in extra:
        kwargs["thinker_eos_token_id"] = [151645, *extra["stop_token_ids"]]
    return kwargs


def _chat(omni: Omni, messages, voice: str, thinker_max: int, talker_max: int, extra: dict):
    return omni.chat(messages, voice=voice, temperature=0, max_new_tokens=thinker_max, talker_temperature=0,
                     talker_max_new_tokens=talker_max, talker_min_new_tokens=4, **extra)


def _float32_rounding(omni: Omni, codes: np.ndarray) -> float:
    """How far float32 decoding of these codes is from float64: the bar for comparing waveforms."""
    import copy
    decoder = omni.model.code2wav
    with torch.no_grad():
        c = torch.from_numpy(codes)[None]
        exact = copy.deepcopy(decoder).double()(c).reshape(-1)
        single = decoder(c).reshape(-1).double()
    return float((single - exact).abs().max())


@pytest.mark.parametrize("case", list(CASES))
def test_greedy_chat_equals_reference(omni, reference, case):
    name, voice, thinker_max, talker_max, extra = CASES[case]
    messages = conversations()[name]
    reply = _chat(omni, messages, voice, thinker_max, talker_max, extra)
    inputs = omni.processor(messages)
    ref_ids, ref_codes, ref_wav = reference_generate(reference, inputs,
                                                     **_reference_kwargs(voice, thinker_max, talker_max, extra))

    assert list(reply.token_ids) == ref_ids
    assert reply.audio_codes is not None and reply.audio_codes.shape[1] >= 1
    np.testing.assert_array_equal(reply.audio_codes, ref_codes)
    assert reply.audio.dtype == np.float32 and reply.audio.shape == ref_wav.shape
    assert reply.usage.audio_frames == ref_codes.shape[1] and reply.usage.audio_samples == ref_wav.shape[0]
    assert np.abs(ref_wav).max() > 0.1 and np.mean(np.abs(ref_wav) >= 1) < 0.05   # a real, unclipped signal
    with torch.no_grad():                    # our decoder one-shot on the same codes: the reference's, exactly
        one_shot = omni.model.code2wav(torch.from_numpy(reply.audio_codes)[None]).reshape(-1).numpy()
    np.testing.assert_array_equal(one_shot, ref_wav)
    tolerance = 4 * max(_float32_rounding(omni, reply.audio_codes), 1e-6)
    np.testing.assert_allclose(reply.audio, ref_wav, rtol=0, atol=tolerance)


def test_stop_token_equals_reference_eos(omni, reference):
    """The text ends on a stop id exactly where the reference's thinker stops on that eos id; the talker then
    gets tts_eos one step after the last embedded token, as in the reference (spec §1.1)."""
    messages = conversations()["audio_image"]
    free = _chat(omni, messages, "ethan", 10, 30, {})
    stop_id = free.token_ids[4]
    extra = {"stop_token_ids": [stop_id]}
    reply = _chat(omni, messages, "ethan", 10, 30, extra)
    inputs = omni.processor(messages)
    ref_ids, ref_codes, _ = reference_generate(reference, inputs, **_reference_kwargs("ethan", 10, 30, extra))
    assert reply.finish_reason == "stop" and reply.token_ids[-1] == stop_id
    assert list(reply.token_ids) == ref_ids
    np.testing.assert_array_equal(reply.audio_codes, ref_codes)


def test_thinker_only_checkpoint_text_equals_reference(tmp_path_factory):
    folder = cached_checkpoint(tmp_path_factory, "thinking", seed=3, enable_audio_output=False)
    reference = load_reference_model(folder)
    with Omni.from_pretrained(folder, dtype="float32") as omni:
        assert not omni.has_speech and omni.voices == ()
        for name in ("system_text", "audio_image"):
            messages = conversations()[name]
            reply = omni.chat(messages, temperature=0, max_new_tokens=12)
            ref_ids, _, _ = reference_generate(reference, omni.processor(messages), thinker_max_new_tokens=12,
                                               thinker_do_sample=False)
            assert list(reply.token_ids) == ref_ids and reply.audio.size == 0 and reply.audio_codes is None
