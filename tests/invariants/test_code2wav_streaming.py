"""Streaming Code2Wav == one-shot Code2Wav, sample for sample, none lost at push boundaries (spec §2.6, §7.2-7).

The equality is exact in exact arithmetic (every part of the model is causal), so it is checked in float64
to 1e-10. In float32 the two paths differ only by rounding; that is checked against float32's own error
(one-shot fp32 vs one-shot fp64) on the same model.
"""
from __future__ import annotations

import math

import pytest
import torch

from omnistream.config import Code2WavConfig, OmniConfig
from omnistream.errors import OmniInputError
from omnistream.models.code2wav import Code2Wav, Code2WavState
from tests.reference import tiny_config


def _config(sliding_window: int, layers: int = 2) -> Code2WavConfig:
    return OmniConfig.from_dict(tiny_config(code2wav_layers=layers, sliding_window=sliding_window)).code2wav_config


@torch.no_grad()
def _model(cfg: Code2WavConfig, seed: int = 0) -> Code2Wav:
    """Random weights (α, β, layer scales, norms all non-trivial), output calibrated to std ≈ 0.3 before the clamp."""
    model = Code2Wav(cfg).eval()
    gen = torch.Generator().manual_seed(seed)
    for name, p in model.named_parameters():
        if name.endswith(("alpha", "beta")):
            p.copy_(0.1 * torch.randn(p.shape, generator=gen))
        elif "scale" in name or name.endswith("gamma"):
            p.copy_(0.3 + 0.1 * torch.rand(p.shape, generator=gen))
        elif p.ndim == 1:
            base = 1.0 if "norm" in name and name.endswith("weight") else 0.0
            p.copy_(base + 0.05 * torch.randn(p.shape, generator=gen))
        else:
            # Residual units' second conv at 0.3 keeps the signal O(1) through the blocks, as in a trained
            # decoder; at full gain it grows ~10× per block and float32 rounding grows with it.
            gain = 0.3 if name.endswith("conv2.conv.weight") else 1.0
            p.copy_(gain * torch.randn(p.shape, generator=gen) / math.sqrt(math.prod(p.shape[1:])))
    calibrate_output(model, _codes(cfg, 1, 16, seed=seed + 100))
    return model


@torch.no_grad()
def calibrate_output(model: torch.nn.Module, codes: torch.Tensor, target_std: float = 0.3) -> None:
    """Scale the last conv (linear) so the pre-clamp waveform has `target_std`: a signal the clamp barely touches.

    Random decoders grow the signal block by block (SnakeBeta adds sin², residual units add up); unscaled,
    almost every sample would sit at ±1 and a waveform comparison would prove little.
    """
    last = model.decoder[-1]
    captured = []
    handle = last.register_forward_hook(lambda module, args, out: captured.append(out))
    model(codes)
    handle.remove()
    factor = target_std / captured[0].std().item()
    last.conv.weight.mul_(factor)
    last.conv.bias.mul_(factor)


def _codes(cfg: Code2WavConfig, batch: int, frames: int, seed: int = 1) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.randint(0, cfg.codebook_size, (batch, cfg.num_quantizers, frames), generator=gen)


def _stream(model: Code2Wav, codes: torch.Tensor, sizes: list[int]) -> tuple[torch.Tensor, list[int]]:
    stream = model.start_stream(codes.shape[0] if codes.ndim == 3 else 1)
    pieces, counts, start = [], [], 0
    for n in sizes:
        piece = stream.push(codes[..., start: start + n])
        pieces.append(piece)
        counts.append(piece.shape[-1])
        start += n
    pieces.append(stream.flush())
    return torch.cat(pieces, dim=-1), counts


def _split(total: int, size: int) -> list[int]:
    return [min(size, total - s) for s in range(0, total, size)]


def _random_split(total: int, seed: int) -> list[int]:
    gen = torch.Generator().manual_seed(seed)
    sizes = []
    while sum(sizes) < total:
        sizes.append(min(int(torch.randint(1, 8, (1,), generator=gen)), total - sum(sizes)))
    return sizes


@pytest.fixture(scope="module")
def small_window():
    cfg = _config(sliding_window=4)  # slides after 3 frames: exercises the window buffer moving many times
    return cfg, _model(cfg).double(), _codes(cfg, 2, 13)


@pytest.mark.parametrize("sizes", ["1", "3", "7", "random0", "random1", "all"])
def test_stream_equals_one_shot_float64(small_window, sizes: str) -> None:
    cfg, model, codes = small_window
    F = codes.shape[-1]
    split = {"all": [F]}.get(sizes) or (_random_split(F, int(sizes[-1])) if sizes.startswith("random")
                                        else _split(F, int(sizes)))
    with torch.no_grad():
        one_shot = model(codes)
    streamed, counts = _stream(model, codes, split)
    assert streamed.shape == one_shot.shape == (2, 1, model.num_samples(F))
    torch.testing.assert_close(streamed, one_shot, rtol=1e-10, atol=1e-10)
    # Latency: after f frames exactly num_samples(f) samples are out, the one-shot length of those frames.
    done = [sum(split[: i + 1]) for i in range(len(split))]
    assert [sum(counts[: i + 1]) for i in range(len(counts))] == [model.num_samples(f) for f in done]


def test_stream_with_real_window_float32() -> None:
    """Window 72, 80 frames (past the window) arriving at random, in float32, against float32's own error."""
    cfg = _config(sliding_window=72, layers=1)
    model = _model(cfg, seed=3)
    codes = _codes(cfg, 1, 80, seed=4)
    with torch.no_grad():
        one_shot = model(codes)
        float_error = (one_shot.double() - model.double()(codes)).abs().max().item()
        model.float()
    assert 0.1 < one_shot.std() and (one_shot.abs() >= 1).float().mean() < 0.05  # a real, unclipped signal
    streamed, _ = _stream(model, codes[0], _random_split(80, 5))
    assert streamed.shape == one_shot[0, 0].shape
    error = (streamed - one_shot[0, 0]).abs().max().item()
    assert error <= max(4 * float_error, 1e-6) and error < 1e-5, (error, float_error)


@pytest.mark.parametrize("size", [1, 3, 7, 0])
def test_transformer_window_72_float32(size: int) -> None:
    """The pre-transformer alone over 100 frames: the K/V window slides and the positions keep counting."""
    cfg = _config(sliding_window=72, layers=2)
    model = _model(cfg, seed=5)
    x = model.embed(_codes(cfg, 2, 100, seed=6))
    split = _random_split(100, 7) if size == 0 else _split(100, size)
    state = Code2WavState()
    with torch.no_grad():
        one_shot = model.pre_transformer(x)
        pieces, start = [], 0
        for n in split:
            pieces.append(model.pre_transformer(x[:, start: start + n], state))
            start += n
    assert state.num_frames == 100 and state.kv[0].k.shape[2] >= 71
    torch.testing.assert_close(torch.cat(pieces, dim=1), one_shot, rtol=1e-5, atol=1e-5 * one_shot.abs().max().item())


def test_output_length_and_latency_formula() -> None:
    model = Code2Wav(_config(sliding_window=72, layers=1))
    # spec §2.6: ((((4n−1)·8−1)·5−1)·4−1)·3 = 1920·n − 555 for rates (8, 5, 4, 3) after a ×4 upsampler
    assert [model.num_samples(n) for n in (1, 2, 11, 300)] == [1920 * n - 555 for n in (1, 2, 11, 300)]
    assert model.total_upsample == 1920


def test_stream_rejects_bad_input() -> None:
    cfg = _config(sliding_window=72, layers=1)
    model = Code2Wav(cfg).eval()
    stream = model.start_stream()
    with pytest.raises(OmniInputError):
        stream.push(torch.zeros(cfg.num_quantizers + 1, 2, dtype=torch.long))
    assert stream.push(torch.zeros(cfg.num_quantizers, 0, dtype=torch.long)).shape == (0,)
    stream.flush()
    with pytest.raises(OmniInputError):
        stream.push(torch.zeros(cfg.num_quantizers, 1, dtype=torch.long))
