"""Stage 1: the speech codec — an encoder and a residual VQ (training-only, here) and the Code2Wav decoder.

Encoder: log-mel spectra of the 24 kHz waveform, four 20 ms sub-frames per 80 ms codec frame, flattened
and normalised ([F, 4·mels]). Residual VQ: Q codebooks of K centroids fitted by residual k-means on the
training corpus (each level quantises what the previous levels left). The codes index the same frame rate
and codebooks the talker predicts; Code2Wav learns codes → waveform with a multi-resolution STFT loss plus
a small waveform L1 term. Only Code2Wav ships; the encoder + RVQ are needed to make the talker's targets.
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file

logger = logging.getLogger(__name__)

SAMPLE_RATE = 24000
FRAME = 1920            # samples per codec frame (80 ms), = Code2Wav total_upsample
SUB_HOP = 480           # 20 ms sub-frames: 4 per codec frame
N_FFT = 1024
N_MELS = 40


def mel_filters(n_mels: int = N_MELS, n_fft: int = N_FFT, sr: int = SAMPLE_RATE, fmin: float = 60.0,
                fmax: float = 8000.0) -> torch.Tensor:
    """Triangular HTK-mel filters [n_mels, n_fft//2+1]."""
    def hz_to_mel(f):
        return 2595.0 * np.log10(1.0 + f / 700.0)

    def mel_to_hz(m):
        return 700.0 * (10 ** (m / 2595.0) - 1.0)

    mels = np.linspace(hz_to_mel(fmin), hz_to_mel(fmax), n_mels + 2)
    hz = mel_to_hz(mels)
    bins = np.linspace(0, sr / 2, n_fft // 2 + 1)
    fb = np.zeros((n_mels, bins.size))
    for i in range(n_mels):
        lo, mid, hi = hz[i], hz[i + 1], hz[i + 2]
        fb[i] = np.clip(np.minimum((bins - lo) / (mid - lo), (hi - bins) / (hi - mid)), 0, None)
    return torch.tensor(fb, dtype=torch.float32)


_FILTERS = mel_filters()


def pad_to_frames(wave: np.ndarray | torch.Tensor) -> torch.Tensor:
    """Zero-pad a waveform to a whole number of codec frames (at least one)."""
    wave = torch.as_tensor(wave, dtype=torch.float32).reshape(-1)
    frames = max(1, math.ceil(wave.numel() / FRAME))
    return F.pad(wave, (0, frames * FRAME - wave.numel()))


def frame_features(wave: torch.Tensor) -> torch.Tensor:
    """The encoder: waveform [N] (N = F·1920) → features [F, 4·N_MELS] (log-mel of four 20 ms sub-frames)."""
    frames = wave.numel() // FRAME
    # centre each 1024-sample window on its sub-frame so sub-frame j of frame f covers its own 20 ms
    padded = F.pad(wave[None, None], (N_FFT // 2 - SUB_HOP // 2, N_FFT // 2), mode="constant")[0, 0]
    spec = torch.stft(padded, N_FFT, SUB_HOP, window=torch.hann_window(N_FFT), center=False,
                      return_complex=True).abs()  # [bins, n]
    mel = torch.log(_FILTERS @ spec.pow(2) + 1e-5)[:, : frames * 4]  # [mels, 4F]
    return mel.T.reshape(frames, 4 * N_MELS)


@dataclass
class ResidualVQ:
    """Residual k-means codebooks: centroids [Q, K, D] over normalised features (mean/std [D])."""
    centroids: torch.Tensor
    mean: torch.Tensor
    std: torch.Tensor

    @classmethod
    def fit(cls, features: torch.Tensor, num_quantizers: int, codebook_size: int, iters: int = 25,
            seed: int = 0) -> ResidualVQ:
        gen = torch.Generator().manual_seed(seed)
        mean, std = features.mean(0), features.std(0) + 1e-3
        residual = (features - mean) / std
        books = []
        for q in range(num_quantizers):
            centroids = _kmeans(residual, codebook_size, iters, gen)
            books.append(centroids)
            residual = residual - centroids[_nearest(residual, centroids)]
            logger.info("rvq level %d: residual rms %.3f", q, residual.pow(2).mean().sqrt())
        return cls(torch.stack(books), mean, std)

    def encode(self, features: torch.Tensor) -> torch.Tensor:
        """features [F, D] → codes [Q, F]."""
        residual = (features - self.mean) / self.std
        codes = []
        for centroids in self.centroids:
            idx = _nearest(residual, centroids)
            codes.append(idx)
            residual = residual - centroids[idx]
        return torch.stack(codes)

    def save(self, path: str | Path) -> None:
        save_file({"centroids": self.centroids.contiguous(), "mean": self.mean, "std": self.std}, str(path))

    @classmethod
    def load(cls, path: str | Path) -> ResidualVQ:
        t = load_file(str(path))
        return cls(t["centroids"], t["mean"], t["std"])


def _nearest(x: torch.Tensor, centroids: torch.Tensor) -> torch.Tensor:
    d = (x * x).sum(1, keepdim=True) - 2 * x @ centroids.T + (centroids * centroids).sum(1)[None]
    return d.argmin(1)


def _kmeans(x: torch.Tensor, k: int, iters: int, gen: torch.Generator) -> torch.Tensor:
    centroids = x[torch.randperm(x.shape[0], generator=gen)[:k]].clone()
    for _ in range(iters):
        idx = _nearest(x, centroids)
        sums = torch.zeros_like(centroids).index_add_(0, idx, x)
        counts = torch.bincount(idx, minlength=k).float()[:, None]
        empty = counts[:, 0] == 0
        centroids = torch.where(empty[:, None], x[torch.randint(0, x.shape[0], (k,), generator=gen)],
                                sums / counts.clamp_min(1))
    return centroids


def encode_wave(rvq: ResidualVQ, wave: np.ndarray | torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Waveform → (codes [Q, F], the frame-padded waveform [F·1920])."""
    padded = pad_to_frames(wave)
    return rvq.encode(frame_features(padded)), padded


# ------------------------------------------------------------------------------------------ losses
def stft_loss(pred: torch.Tensor, target: torch.Tensor, sizes: tuple[int, ...] = (256, 512, 1024, 2048)
              ) -> torch.Tensor:
    """Multi-resolution STFT loss: spectral convergence + log-magnitude L1, averaged over resolutions."""
    total = pred.new_zeros(())
    for n in sizes:
        window = torch.hann_window(n, device=pred.device)
        p = torch.stft(pred, n, n // 4, window=window, return_complex=True).abs().clamp_min(1e-5)
        t = torch.stft(target, n, n // 4, window=window, return_complex=True).abs().clamp_min(1e-5)
        sc = torch.linalg.norm(t - p) / torch.linalg.norm(t).clamp_min(1e-5)
        total = total + sc + F.l1_loss(p.log(), t.log())
    return total / len(sizes)


def mel_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    window = torch.hann_window(N_FFT, device=pred.device)
    p = torch.stft(pred, N_FFT, 256, window=window, return_complex=True).abs().pow(2)
    t = torch.stft(target, N_FFT, 256, window=window, return_complex=True).abs().pow(2)
    fb = _FILTERS.to(pred.device)
    return F.l1_loss(torch.log(fb @ p + 1e-5), torch.log(fb @ t + 1e-5))


def codec_loss(code2wav: torch.nn.Module, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, float]]:
    """codes [B, Q, F], wave [B, F·1920] → MR-STFT + mel + 0.1·waveform L1 on the samples Code2Wav emits."""
    wav = code2wav(batch["codes"])[:, 0]                  # [B, N]
    target = batch["wave"][:, : wav.shape[1]]
    stft = stft_loss(wav, target)
    mel = mel_loss(wav, target)
    l1 = F.l1_loss(wav, target)
    return stft + mel + 0.1 * l1, {"stft": float(stft.detach()), "mel": float(mel.detach())}
