"""Whisper-style 128-bin log-mel features and audio token counts (spec §2.2, §4.1).

The reference pads every waveform of a processor call with zeros to the longest one *before* the STFT,
so the last frames of a short clip (and its per-clip max used for the 8-decade floor) depend on what it
was batched with. We do the same to match it exactly; `log_mel_features` takes the whole list.
"""
from __future__ import annotations

import functools
import math

import numpy as np
import torch

from omnistream.errors import MediaError
from omnistream.inputs.settings import PreprocessorSettings


def _hz_to_mel(freq: np.ndarray) -> np.ndarray:
    """Slaney mel scale: linear below 1 kHz (3 mels per 200 Hz), logarithmic above."""
    freq = np.asarray(freq, dtype=np.float64)
    mels = 3.0 * freq / 200.0
    log_region = freq >= 1000.0
    logstep = 27.0 / np.log(6.4)
    return np.where(log_region, 15.0 + np.log(np.maximum(freq, 1e-12) / 1000.0) * logstep, mels)


def _mel_to_hz(mels: np.ndarray) -> np.ndarray:
    mels = np.asarray(mels, dtype=np.float64)
    freq = 200.0 * mels / 3.0
    logstep = np.log(6.4) / 27.0
    return np.where(mels >= 15.0, 1000.0 * np.exp(logstep * (mels - 15.0)), freq)


@functools.lru_cache(maxsize=8)
def mel_filter_bank(n_fft: int, n_mels: int, sampling_rate: int, f_max: float | None = None) -> np.ndarray:
    """Slaney-normalised triangular mel filters, float64 [n_fft//2 + 1, n_mels] (librosa's `mel(htk=False)`)."""
    f_max = sampling_rate / 2 if f_max is None else f_max
    fft_freqs = np.linspace(0, sampling_rate // 2, n_fft // 2 + 1)
    edges = _mel_to_hz(np.linspace(_hz_to_mel(0.0), _hz_to_mel(f_max), n_mels + 2))  # [n_mels + 2]
    widths = np.diff(edges)                                                          # [n_mels + 1]
    offsets = edges[None, :] - fft_freqs[:, None]                                    # [F, n_mels + 2]
    rising = -offsets[:, :-2] / widths[:-1]
    falling = offsets[:, 2:] / widths[1:]
    filters = np.maximum(0.0, np.minimum(rising, falling))
    filters *= 2.0 / (edges[2:n_mels + 2] - edges[:n_mels])  # Slaney norm: constant energy per filter
    return filters


def log_mel_features(waveforms: list[np.ndarray],
                     settings: PreprocessorSettings) -> tuple[torch.Tensor, torch.Tensor]:
    """Mono 16 kHz waveforms → (input_features [N, mels, F] float32, feature_attention_mask [N, F] int32).

    All waveforms are zero-padded to the longest before one batched STFT (as the reference); F =
    longest // hop. Valid frames of a clip of n samples: ⌈n / hop⌉, capped at F (spec §4.1).
    """
    if not waveforms:
        raise ValueError("log_mel_features needs at least one waveform")
    hop, n_fft = settings.hop_length, settings.n_fft
    lengths = [int(w.shape[0]) for w in waveforms]
    longest = max(lengths)
    if min(lengths) == 0 or longest <= n_fft // 2:
        raise MediaError(f"audio is too short for a {n_fft}-sample STFT window", param="audio")
    batch = torch.full((len(waveforms), longest), float(settings.padding_value), dtype=torch.float32)
    for row, wave in enumerate(waveforms):
        batch[row, : wave.shape[0]] = torch.from_numpy(np.ascontiguousarray(wave, dtype=np.float32))
    if settings.dither:
        batch = batch + settings.dither * torch.randn_like(batch)

    window = torch.hann_window(n_fft)
    stft = torch.stft(batch, n_fft, hop, window=window, return_complex=True)  # [N, n_fft/2+1, F+1], centred
    power = (stft[..., :-1].abs() ** 2).contiguous()                           # last frame dropped
    filters = torch.from_numpy(mel_filter_bank(n_fft, settings.feature_size, settings.sampling_rate, 8000.0))
    mel = filters.to(torch.float32).T @ power                                  # [N, mels, F]
    log_spec = torch.clamp(mel, min=1e-10).log10()
    peak = log_spec.amax(dim=(1, 2), keepdim=True)                             # per clip, padding included
    log_spec = (torch.maximum(log_spec, peak - 8.0) + 4.0) / 4.0

    frames = log_spec.shape[-1]
    valid = torch.tensor([min(math.ceil(n / hop), frames) for n in lengths])
    mask = (torch.arange(frames)[None, :] < valid[:, None]).to(torch.int32)  # int32, as the reference
    return log_spec, mask


def audio_token_count(mel_frames: int | torch.Tensor, n_window: int = 50) -> int | torch.Tensor:
    """Audio encoder output length for `mel_frames` valid frames (spec §2.2).

    Frames are cut into chunks of 2·n_window; each chunk passes three stride-2 convolutions (three
    ceil-halvings): a full 100-frame chunk gives 13 tokens, a tail of r frames gives ⌈r/8⌉.
    Works on ints and integer tensors alike.
    """
    chunk = 2 * n_window
    full_chunk_tokens = ((((chunk - 1) // 2 + 1) - 1) // 2 + 1 - 1) // 2 + 1
    tail = mel_frames % chunk
    tail_tokens = (((tail - 1) // 2 + 1 - 1) // 2 + 1 - 1) // 2 + 1  # 0 when tail == 0
    return tail_tokens + (mel_frames // chunk) * full_chunk_tokens
