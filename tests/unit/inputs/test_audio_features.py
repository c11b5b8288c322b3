"""Log-mel features and audio token counts against independent formulas (spec §2.2, §4.1)."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from omnistream.errors import MediaError
from omnistream.inputs.audio_features import audio_token_count, log_mel_features, mel_filter_bank
from omnistream.inputs.settings import PreprocessorSettings
from tests.inputs_fixtures import noise, tone

SETTINGS = PreprocessorSettings()


def slaney_hz_to_mel(f: float) -> float:
    return 3 * f / 200 if f < 1000 else 15 + math.log(f / 1000) * 27 / math.log(6.4)


def test_mel_filters_peak_at_slaney_centres_and_have_unit_area():
    filters = mel_filter_bank(400, 128, 16000, 8000.0)          # [201, 128]
    assert filters.shape == (201, 128) and (filters >= 0).all()
    freqs = np.linspace(0, 8000, 201)
    mel_edges = np.linspace(0, slaney_hz_to_mel(8000), 130)
    for m in (10, 40, 80, 127):
        lo, hi = (math.exp((e - 15) * math.log(6.4) / 27) * 1000 if e >= 15 else e * 200 / 3
                  for e in (mel_edges[m], mel_edges[m + 2]))
        inside = (freqs > lo) & (freqs < hi)
        assert (filters[~inside, m] == 0).all()
        # Slaney norm: the triangle's area over Hz is 1 (checked where the filter spans many bins)
        if hi - lo > 400:
            assert abs(np.trapezoid(filters[:, m], freqs) - 1.0) < 0.02


def reference_log_mel(wave: np.ndarray) -> np.ndarray:
    """Direct float64 formula: reflect-pad, periodic Hann, rfft power, mel, log10, 8-decade floor, scale."""
    n_fft, hop = 400, 160
    padded = np.pad(wave.astype(np.float64), n_fft // 2, mode="reflect")
    window = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(n_fft) / n_fft)
    frames = len(wave) // hop
    spec = np.stack([np.abs(np.fft.rfft(padded[i * hop:i * hop + n_fft] * window)) ** 2 for i in range(frames)], 1)
    mel = mel_filter_bank(n_fft, 128, 16000, 8000.0).T @ spec
    log = np.log10(np.maximum(mel, 1e-10))
    return (np.maximum(log, log.max() - 8.0) + 4.0) / 4.0


@pytest.mark.parametrize("seconds", [0.3, 1.37])
def test_features_match_direct_formula(seconds):
    wave = tone(seconds, 700.0) + noise(seconds, seed=3)
    features, mask = log_mel_features([wave], SETTINGS)
    expected = reference_log_mel(wave)
    assert features.shape == (1, 128, len(wave) // 160) and features.dtype == torch.float32
    np.testing.assert_allclose(features[0].numpy(), expected, atol=2e-4)
    assert mask.dtype == torch.int32 and int(mask.sum()) == len(wave) // 160


def test_silence_is_the_floor_value():
    features, _ = log_mel_features([np.zeros(8000, np.float32)], SETTINGS)
    assert torch.allclose(features, torch.full_like(features, (-10 + 4) / 4))


def test_tone_energy_lands_in_the_right_mel_bin():
    features, _ = log_mel_features([tone(1.0, 1000.0)], SETTINGS)
    centres = np.argmax(mel_filter_bank(400, 128, 16000, 8000.0), axis=0) * 40.0   # Hz of each filter's peak bin
    loudest = int(features[0].mean(-1).argmax())
    assert abs(centres[loudest] - 1000.0) <= 80.0


def test_batch_pads_to_longest_and_masks_valid_frames():
    short, long = tone(0.3), tone(1.37)             # 4800 and 21920 samples
    features, mask = log_mel_features([short, long], SETTINGS)
    frames = 21920 // 160
    assert features.shape == (2, 128, frames)
    assert mask.sum(-1).tolist() == [math.ceil(4800 / 160), frames]     # ⌈n/hop⌉, capped at F (spec §4.1)
    alone, _ = log_mel_features([long], SETTINGS)
    assert torch.equal(alone[0], features[1])       # the longest clip is unaffected by batching


def test_too_short_audio_is_refused():
    with pytest.raises(MediaError):
        log_mel_features([np.zeros(100, np.float32)], SETTINGS)


def test_audio_token_count_formula():
    for frames in range(0, 1200):
        expected = 13 * (frames // 100) + math.ceil((frames % 100) / 8)   # spec §2.2
        assert audio_token_count(frames) == expected
    assert [audio_token_count(f) for f in (100, 150, 250, 3000)] == [13, 20, 33, 390]
    lengths = torch.tensor([100, 150, 37])
    assert audio_token_count(lengths).tolist() == [13, 20, 5]


def test_audio_token_count_other_window():
    # n_window 25 → 50-frame chunks → 50 → 25 → 13 → 7 tokens per full chunk
    assert audio_token_count(50, n_window=25) == 7
    assert audio_token_count(120, n_window=25) == 2 * 7 + math.ceil(20 / 8)
