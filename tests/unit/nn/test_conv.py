"""Causal convolutions against explicit float64 formulas, and streaming == one-shot (spec §2.6)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from omnistream.nn.conv import CausalConv1d, CausalConvTranspose1d, ConvNeXtBlock, StreamState


def _randomize(module: torch.nn.Module, seed: int) -> None:
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(0.5 * torch.randn(p.shape, generator=gen))


def _causal_conv_reference(x: np.ndarray, w: np.ndarray, b: np.ndarray, dilation: int, groups: int) -> np.ndarray:
    """y[o, t] = b[o] + Σ_i Σ_j w[o, i, j] · x[g(o)·I + i, t − (k−1−j)·d], with x = 0 before t = 0."""
    c_in, t_len = x.shape
    c_out, per_group, k = w.shape
    out_per_group = c_out // groups
    y = np.zeros((c_out, t_len))
    for o in range(c_out):
        g = o // out_per_group
        for i in range(per_group):
            for j in range(k):
                shift = (k - 1 - j) * dilation
                y[o, shift:] += w[o, i, j] * x[g * per_group + i, : t_len - shift] if shift < t_len else 0.0
        y[o] += b[o]
    return y


def _transposed_reference(x: np.ndarray, w: np.ndarray, b: np.ndarray, stride: int) -> np.ndarray:
    """Overlap-add: raw[o, i·s + m] += x[c, i] · w[c, o, m]; then trim k − s from both ends."""
    c_in, t_len = x.shape
    _, c_out, k = w.shape
    raw = np.zeros((c_out, (t_len - 1) * stride + k)) + b[:, None]
    for i in range(t_len):
        raw[:, i * stride: i * stride + k] += np.einsum("c,com->om", x[:, i], w)
    trim = k - stride
    return raw[:, trim: raw.shape[1] - trim]


@pytest.mark.parametrize("kernel,dilation,groups", [(7, 1, 1), (7, 3, 1), (7, 9, 1), (1, 1, 1), (7, 1, 4)])
def test_causal_conv_matches_formula(kernel: int, dilation: int, groups: int) -> None:
    conv = CausalConv1d(4, 8 if groups == 1 else 4, kernel, dilation=dilation, groups=groups).double()
    _randomize(conv, 0)
    x = torch.randn(1, 4, 40, dtype=torch.float64)
    expected = _causal_conv_reference(x[0].numpy(), conv.conv.weight.detach().numpy(),
                                      conv.conv.bias.detach().numpy(), dilation, groups)
    np.testing.assert_allclose(conv(x)[0].detach().numpy(), expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("kernel,stride", [(2, 2), (16, 8), (10, 5), (6, 3), (3, 1)])
def test_transposed_conv_matches_formula(kernel: int, stride: int) -> None:
    conv = CausalConvTranspose1d(3, 5, kernel, stride).double()
    _randomize(conv, 1)
    x = torch.randn(1, 3, 9, dtype=torch.float64)
    y = conv(x)[0].detach().numpy()
    expected = _transposed_reference(x[0].numpy(), conv.conv.weight.detach().numpy(),
                                     conv.conv.bias.detach().numpy(), stride)
    assert y.shape[1] == (9 - (kernel // stride - 1)) * stride
    np.testing.assert_allclose(y, expected, rtol=1e-12, atol=1e-12)


def _splits(total: int, sizes: list[int]) -> list[int]:
    out, i = [], 0
    while sum(out) < total:
        out.append(min(sizes[i % len(sizes)], total - sum(out)))
        i += 1
    return out


def _stream(module: torch.nn.Module, x: torch.Tensor, sizes: list[int]) -> torch.Tensor:
    state, pieces, start = StreamState(), [], 0
    for n in _splits(x.shape[-1], sizes):
        pieces.append(module(x[..., start: start + n], state))
        start += n
    return torch.cat(pieces, dim=-1)


SPLITS = [[1], [3], [7], [2, 5, 1, 9, 4], [40]]


@pytest.mark.parametrize("sizes", SPLITS)
@pytest.mark.parametrize("make", [
    lambda: CausalConv1d(4, 6, 7, dilation=9),
    lambda: CausalConv1d(4, 6, 1),
    lambda: CausalConvTranspose1d(4, 6, 16, 8),
    lambda: CausalConvTranspose1d(4, 6, 2, 2),
    lambda: CausalConvTranspose1d(4, 6, 9, 3),
    lambda: ConvNeXtBlock(4),
], ids=["conv-dilated", "conv-k1", "transconv-k16s8", "transconv-k2s2", "transconv-k9s3", "convnext"])
def test_streaming_equals_one_shot(make, sizes: list[int]) -> None:
    torch.manual_seed(0)
    module = make().double()
    _randomize(module, 2)
    x = torch.randn(2, 4, 40, dtype=torch.float64)
    with torch.no_grad():
        one_shot = module(x)
        streamed = _stream(module, x, sizes)
    assert streamed.shape == one_shot.shape
    torch.testing.assert_close(streamed, one_shot, rtol=1e-12, atol=1e-12)


def test_transposed_conv_holds_back_one_frame() -> None:
    conv = CausalConvTranspose1d(2, 2, 10, 5)
    state = StreamState()
    with torch.no_grad():
        first = conv(torch.randn(1, 2, 1), state)
        second = conv(torch.randn(1, 2, 1), state)
    assert first.shape[-1] == 0      # block 0 needs frames 0 and 1
    assert second.shape[-1] == 5     # now it is complete
    assert state.get(conv).shape[-1] == 1


def test_convnext_zero_gamma_is_identity() -> None:
    block = ConvNeXtBlock(8)
    _randomize(block, 3)
    with torch.no_grad():
        block.gamma.zero_()
        x = torch.randn(1, 8, 12)
        torch.testing.assert_close(block(x), x)
