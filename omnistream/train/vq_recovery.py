"""A residual VQ read back from a trained Code2Wav: espeak-ng targets for the talker again, when its VQ is lost.

The codec's encoder is a fixed feature map (codec.frame_features) and its VQ is residual k-means over those
features, so each centroid is the mean of what its code stood for. Code2Wav learnt to turn codes back into the
speech they came from, so what a code stood for can be heard again: decode code sequences the model spoke, take
the features of what comes out, and set every level's centroid to the mean residual of the frames carrying that
code, level by level (the update residual k-means makes, with the assignments given instead of searched).

Measured on the built-in model (fourteenth session; 1,877 recorded answers, 43,545 frames): re-encoding the
decoded speech gives back 90% of the first level's codes; espeak-ng answers encoded with the recovered VQ and
decoded by the shipped Code2Wav are heard by the recogniser at 2.6% WER, against 2.0% for espeak-ng's own audio.
A talker that had spoken the recording's dialect for rounds 4-7 did not speak better for 30 minutes on these codes
(recipes/continue.py, round 8), so they are a way back to espeak-ng targets, not yet a better talker.
"""
from __future__ import annotations

import logging
from collections.abc import Iterable

import numpy as np
import torch
import torch.nn.functional as F

from omnistream.errors import ConfigError
from omnistream.train.codec import FRAME, ResidualVQ, frame_features, pad_to_frames

logger = logging.getLogger(__name__)


@torch.no_grad()
def decoded_features(code2wav: torch.nn.Module, codes: torch.Tensor) -> torch.Tensor:
    """codes [Q, F] → encoder features [F, D] of what Code2Wav makes of them (its tail padded to F frames)."""
    if code2wav.total_upsample != FRAME:
        raise ConfigError(f"Code2Wav makes {code2wav.total_upsample} samples per frame; the codec's encoder reads "
                          f"{FRAME}", param="code2wav")
    frames = codes.shape[1]
    wave = code2wav(codes[None].long())[0, 0]
    return frame_features(F.pad(wave, (0, frames * FRAME - wave.numel())))


def centroids_from_codes(features: torch.Tensor, codes: torch.Tensor, codebook_size: int, mean: torch.Tensor,
                         std: torch.Tensor) -> ResidualVQ:
    """features [N, D] with their codes [Q, N] → the residual VQ whose levels those codes index.

    A code no frame carries keeps a zero centroid (it quantises nothing away) and is logged."""
    residual = (features - mean) / std
    books = []
    for level, assigned in enumerate(codes):
        sums = torch.zeros(codebook_size, residual.shape[1]).index_add_(0, assigned, residual)
        counts = torch.bincount(assigned, minlength=codebook_size)
        centroids = sums / counts.clamp_min(1)[:, None]
        books.append(centroids)
        residual = residual - centroids[assigned]
        logger.info("level %d: %d of %d codes seen, residual rms %.3f", level, int((counts > 0).sum()),
                    codebook_size, float(residual.pow(2).mean().sqrt()))
    return ResidualVQ(torch.stack(books), mean, std)


def recover_vq(code2wav: torch.nn.Module, spoken: Iterable[torch.Tensor],
               reference: Iterable[np.ndarray]) -> tuple[ResidualVQ, list[float]]:
    """The VQ behind `code2wav`'s codes, from code sequences it decodes (`spoken`, each [Q, F]) and waveforms of
    the speech the codec was trained on (`reference`, 24 kHz: the feature normalisation). Also returns, per
    level, the share of codes that re-encoding the decoded speech gives back."""
    cfg = code2wav.config
    features, codes = [], []
    for sequence in spoken:
        if sequence.ndim != 2 or sequence.shape[0] != cfg.num_quantizers or sequence.shape[1] == 0:
            raise ConfigError(f"code sequences must be [{cfg.num_quantizers}, F>0], got {list(sequence.shape)}",
                              param="spoken")
        features.append(decoded_features(code2wav, sequence))
        codes.append(sequence.long())
    if not features:
        raise ConfigError("recover_vq needs at least one code sequence", param="spoken")
    refs = [frame_features(pad_to_frames(w)) for w in reference]
    if not refs:
        raise ConfigError("recover_vq needs reference speech for the feature normalisation", param="reference")
    ref = torch.cat(refs)
    mean, std = ref.mean(0), ref.std(0) + 1e-3             # as ResidualVQ.fit normalises its corpus
    x, c = torch.cat(features), torch.cat(codes, 1)
    vq = centroids_from_codes(x, c, cfg.codebook_size, mean, std)
    agreement = (vq.encode(x) == c).float().mean(1).tolist()
    logger.info("recovered a %d-level VQ from %d frames; re-encoding gives back %s of the codes", len(c),
                x.shape[0], ", ".join(f"{a:.0%}" for a in agreement))
    return vq, agreement
