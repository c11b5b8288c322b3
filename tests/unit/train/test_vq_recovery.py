"""Reading a residual VQ back from its codes and the speech they decode to."""
from __future__ import annotations

import pytest
import torch

from omnistream.errors import ConfigError
from omnistream.synth import speak_answer
from omnistream.train.codec import FRAME, N_MELS, ResidualVQ
from omnistream.train.parts import fresh_model
from omnistream.train.vq_recovery import centroids_from_codes, decoded_features, recover_vq


def test_the_centroids_come_back_from_features_and_their_codes():
    gen = torch.Generator().manual_seed(0)
    levels, size, dim, frames = 3, 16, 8, 4000
    scale = torch.tensor([3.0, 0.3, 0.03])[:, None, None]       # each level finer than the one before
    truth = torch.randn(levels, size, dim, generator=gen) * scale
    truth[1:] -= truth[1:].mean(1, keepdim=True)        # residual k-means leaves the finer levels zero-mean
    mean, std = torch.randn(dim, generator=gen), torch.rand(dim, generator=gen) + 0.5
    codes = torch.randint(0, size, (levels, frames), generator=gen)
    features = mean + std * sum(truth[q][codes[q]] for q in range(levels))

    vq = centroids_from_codes(features, codes, size, mean, std)

    assert vq.centroids.shape == (levels, size, dim)
    torch.testing.assert_close(vq.centroids[0], truth[0], atol=0.08, rtol=0)
    torch.testing.assert_close(vq.centroids[1], truth[1], atol=0.02, rtol=0)
    again = vq.encode(features)
    agreement = [float((again[q] == codes[q]).float().mean()) for q in range(levels)]
    assert agreement[:2] == [1.0, 1.0] and agreement[2] > 0.9    # the finest level is as fine as the errors


def test_unseen_codes_keep_a_zero_centroid():
    codes = torch.tensor([[0, 0, 2, 2]])
    features = torch.tensor([[1.0], [1.0], [-1.0], [-1.0]])
    vq = centroids_from_codes(features, codes, 4, torch.zeros(1), torch.ones(1))
    assert vq.centroids[0, :, 0].tolist() == [1.0, 0.0, -1.0, 0.0]


def test_recover_vq_decodes_every_sequence_and_reports_its_round_trip(tiny_assets):
    code2wav = fresh_model(tiny_assets, seed=1).code2wav.eval()
    cfg = code2wav.config
    gen = torch.Generator().manual_seed(1)
    spoken = [torch.randint(0, cfg.codebook_size, (cfg.num_quantizers, f), generator=gen) for f in (3, 5)]
    assert decoded_features(code2wav, spoken[0]).shape == (3, 4 * N_MELS)

    vq, agreement = recover_vq(code2wav, spoken, [speak_answer("The circle is red.", "ethan")])

    assert isinstance(vq, ResidualVQ) and vq.centroids.shape == (cfg.num_quantizers, cfg.codebook_size, 4 * N_MELS)
    assert len(agreement) == cfg.num_quantizers and all(0.0 <= a <= 1.0 for a in agreement)
    assert vq.encode(decoded_features(code2wav, spoken[1])).shape == (cfg.num_quantizers, 5)


def test_recover_vq_names_what_it_cannot_use(tiny_assets):
    code2wav = fresh_model(tiny_assets, seed=1).code2wav
    reference = [speak_answer("Yes.", "chelsie")]
    with pytest.raises(ConfigError, match="code sequences"):
        recover_vq(code2wav, [torch.zeros(code2wav.config.num_quantizers + 1, 4, dtype=torch.long)], reference)
    with pytest.raises(ConfigError, match="at least one"):
        recover_vq(code2wav, [], reference)
    with pytest.raises(ConfigError, match="reference speech"):
        recover_vq(code2wav, [torch.zeros(code2wav.config.num_quantizers, 4, dtype=torch.long)], [])
    assert code2wav.total_upsample == FRAME
