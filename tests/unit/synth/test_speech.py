"""espeak-ng speech: voice sets, sample rates, cache, noise level, output voices."""
from __future__ import annotations

import subprocess

import numpy as np
import pytest

from omnistream.errors import ConfigError, OmniInputError, RequestError
from omnistream.synth import speech

QUESTION = "What color is the circle?"


def _installed_variants() -> set[str]:
    listing = subprocess.run(["espeak-ng", "--voices=variant"], capture_output=True, text=True, check=True).stdout
    return {line.split()[-1].removeprefix("!v/") for line in listing.splitlines()[1:] if "!v/" in line}


def test_train_and_test_voices_are_disjoint_and_mixed():
    train, test = speech.train_voices(), speech.held_out_voices()
    assert not {v.name for v in train} & {v.name for v in test}
    assert not {v.variant for v in train} & {v.variant for v in test}
    for voices in (train, test):
        assert {v.gender for v in voices} == {"male", "female"}
        assert {"en-us", "en-gb"} <= {v.accent for v in voices}
    output_variants = {p.voice.split("+")[1] for p in speech.OUTPUT_VOICES.values()}
    assert not output_variants & {v.variant for v in train + test}
    installed = _installed_variants()
    assert {v.variant for v in train + test} | output_variants <= installed


def test_val_hears_train_voices_and_test_hears_test_voices():
    rng = np.random.default_rng(0)
    test_names = {v.name for v in speech.held_out_voices()}
    for _ in range(50):
        assert speech.sample_speech_params(rng, "val").voice not in test_names
        params = speech.sample_speech_params(rng, "test")
        assert params.voice in test_names
        assert speech.RATE_RANGE[0] <= params.rate <= speech.RATE_RANGE[1]
    with pytest.raises(ConfigError):
        speech.sample_speech_params(rng, "dev")


def test_synthesize_gives_16khz_speech_and_caches_it(speech_cache):
    params = speech.SpeechParams("en-gb+m1", 160, 50)
    wave = speech.synthesize(QUESTION, params)
    assert wave.dtype == np.float32 and wave.ndim == 1
    seconds = wave.size / speech.INPUT_SAMPLE_RATE
    assert 0.8 < seconds < 4.0  # five words at 160 wpm
    assert 0.05 < np.abs(wave).max() <= 1.0
    cached = list((speech_cache / "speech").rglob("*.npy"))
    assert cached
    again = speech.synthesize(QUESTION, params)
    assert again.tobytes() == wave.tobytes()
    # the cache is really used: an entry written under the key is what comes back
    path = speech._cache_path(QUESTION, params, speech.INPUT_SAMPLE_RATE)
    np.save(path, np.zeros(5, np.float32))
    assert speech.synthesize(QUESTION, params).tolist() == [0.0] * 5
    assert speech.synthesize(QUESTION, params, use_cache=False).tobytes() == wave.tobytes()


def test_rate_and_voice_change_the_audio():
    slow = speech.synthesize(QUESTION, speech.SpeechParams("en-us+f1", 120, 50), use_cache=False)
    fast = speech.synthesize(QUESTION, speech.SpeechParams("en-us+f1", 200, 50), use_cache=False)
    other = speech.synthesize(QUESTION, speech.SpeechParams("en-us+m2", 200, 50), use_cache=False)
    assert slow.size > 1.3 * fast.size
    assert other.size != fast.size or not np.array_equal(other, fast)


def test_resample_keeps_pitch_and_duration():
    t = np.arange(22050) / 22050
    tone = np.sin(2 * np.pi * 440 * t).astype(np.float32)
    for rate in (16000, 24000):
        out = speech.resample(tone, 22050, rate)
        assert out.size == rate
        peak_hz = np.argmax(np.abs(np.fft.rfft(out))) * rate / out.size
        assert peak_hz == pytest.approx(440, abs=1)
        assert np.abs(out).max() == pytest.approx(1.0, abs=0.02)


def test_noise_is_light_and_seeded():
    wave = speech.synthesize(QUESTION, speech.SpeechParams("en-us+m2", 150, 50))
    a = speech.add_noise(wave, np.random.default_rng(1), 30.0)
    b = speech.add_noise(wave, np.random.default_rng(1), 30.0)
    assert a.tobytes() == b.tobytes()
    snr = 10 * np.log10(np.mean(wave.astype(np.float64) ** 2) / np.mean((a - wave).astype(np.float64) ** 2))
    assert snr == pytest.approx(30.0, abs=0.5)


def test_speak_answer_is_24khz_and_deterministic():
    ethan = speech.speak_answer("The circle is red.", "ethan")
    chelsie = speech.speak_answer("The circle is red.", "chelsie")
    assert ethan.dtype == np.float32 and 0.5 < ethan.size / speech.OUTPUT_SAMPLE_RATE < 3.0
    assert ethan.tobytes() == speech.speak_answer("The circle is red.", "ethan").tobytes()
    assert not np.array_equal(ethan[: chelsie.size], chelsie[: ethan.size])
    same_at_16k = speech.synthesize("The circle is red.", speech.OUTPUT_VOICES["ethan"], use_cache=False)
    assert abs(ethan.size - same_at_16k.size * 24000 / 16000) <= 2  # same utterance, resampled
    with pytest.raises(RequestError):
        speech.speak_answer("Yes.", "nobody")


def test_bad_requests_are_typed_errors():
    with pytest.raises(OmniInputError):
        speech.synthesize("   ", speech.SpeechParams("en-us", 150, 50))
    with pytest.raises(ConfigError):
        speech.synthesize("Yes.", speech.SpeechParams("en-us", 150, 120))


def test_perturb_speed_scales_duration_and_pitch_together():
    rate = speech.INPUT_SAMPLE_RATE
    t = np.arange(rate) / rate                                     # one second of 440 Hz
    tone = np.sin(2 * np.pi * 440.0 * t).astype(np.float32)
    fast = speech.perturb_speed(tone, 1.1)
    assert abs(fast.size - rate / 1.1) <= 1                        # 10% shorter
    peak = np.argmax(np.abs(np.fft.rfft(fast))) * rate / fast.size
    assert abs(peak - 440.0 * 1.1) < 2.0                           # and 10% higher
    assert np.array_equal(speech.perturb_speed(tone, 1.0), tone)
    with pytest.raises(ConfigError):
        speech.perturb_speed(tone, 3.0)
