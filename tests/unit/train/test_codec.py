"""Codec pieces: the mel encoder, residual VQ, the STFT loss, and Code2Wav learning from it."""
from __future__ import annotations

import numpy as np
import torch

from omnistream.synth import speak_answer
from omnistream.train.codec import (FRAME, N_MELS, ResidualVQ, codec_loss, encode_wave, frame_features,
                                    pad_to_frames, stft_loss)
from omnistream.train.parts import fresh_model


def test_features_and_rvq_round_trip(tmp_path):
    wave = speak_answer("The circle is red.", "ethan")
    padded = pad_to_frames(wave)
    assert padded.numel() % FRAME == 0 and padded.numel() >= wave.size
    feats = frame_features(padded)
    assert feats.shape == (padded.numel() // FRAME, 4 * N_MELS)
    rvq = ResidualVQ.fit(feats.repeat(4, 1) + 0.01 * torch.randn(4 * feats.shape[0], feats.shape[1]),
                         num_quantizers=3, codebook_size=16, iters=5)
    codes, _ = encode_wave(rvq, wave)
    assert codes.shape == (3, feats.shape[0]) and int(codes.max()) < 16
    rvq.save(tmp_path / "rvq.safetensors")
    assert torch.equal(ResidualVQ.load(tmp_path / "rvq.safetensors").encode(feats), codes)
    # more levels quantise better
    residual = lambda q: (((feats - rvq.mean) / rvq.std) - sum(rvq.centroids[i][codes[i]] for i in range(q))).pow(2).mean()
    assert residual(3) < residual(1)


def test_stft_loss_is_zero_only_for_equal_signals():
    x = torch.sin(torch.linspace(0, 400, 8000))[None]
    assert float(stft_loss(x, x)) < 1e-4
    assert float(stft_loss(0.5 * x, x)) > 0.1


def test_code2wav_learns_a_clip(tiny_assets):
    torch.manual_seed(0)
    code2wav = fresh_model(tiny_assets, seed=1).code2wav
    frames = 2
    codes = torch.randint(0, 32, (1, 2, frames))
    t = torch.arange(frames * FRAME) / 24000
    wave = (0.3 * torch.sin(2 * np.pi * 220 * t))[None]
    batch = {"codes": codes, "wave": wave}
    optimizer = torch.optim.Adam(code2wav.parameters(), lr=3e-3)
    first = None
    for _ in range(10):
        loss, metrics = codec_loss(code2wav, batch)
        first = first if first is not None else float(loss.detach())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert float(loss) < 0.8 * first
    assert set(metrics) == {"stft", "mel"}
