"""bf16 convolutions on short inputs (streaming Code2Wav) take an im2col / overlap-add GEMM on CPU.

The GEMM form must give the convolution's result (to bf16 rounding, against fp32), for one-shot and streamed
inputs alike, for every kernel/stride combination Code2Wav uses; fp32 keeps torch's convolution exactly.
"""
from __future__ import annotations

import pytest
import torch

from omnistream.nn.conv import CausalConv1d, CausalConvTranspose1d, StreamState

TOLERANCE = 2 ** -6       # relative to the largest output; a few bf16 roundings through a sum of ~10^3 products


def _relative_error(got: torch.Tensor, want: torch.Tensor) -> float:
    return ((got.float() - want.float()).abs().max() / want.float().abs().max()).item()


@pytest.mark.parametrize("in_channels, out_channels, kernel", [(96, 128, 7), (32, 16, 1), (48, 48, 3)])
def test_short_conv_matches_fp32(in_channels, out_channels, kernel):
    torch.manual_seed(kernel)
    conv = CausalConv1d(in_channels, out_channels, kernel)
    x = torch.randn(2, in_channels, 19)
    with torch.no_grad():
        want = conv(x)
        conv.to(torch.bfloat16)
        got = conv(x.to(torch.bfloat16))
        state, streamed = StreamState(), []
        for start in range(0, 19, 5):
            streamed.append(conv(x[..., start:start + 5].to(torch.bfloat16), state))
    assert got.shape == want.shape
    assert _relative_error(got, want) < TOLERANCE
    assert _relative_error(torch.cat(streamed, dim=-1), want) < TOLERANCE


@pytest.mark.parametrize("kernel, stride", [(2, 2), (16, 8), (10, 5), (6, 3), (9, 3)])
def test_short_transposed_conv_matches_fp32(kernel, stride):
    torch.manual_seed(kernel * 10 + stride)
    conv = CausalConvTranspose1d(40, 24, kernel, stride)
    x = torch.randn(2, 40, 13)
    with torch.no_grad():
        want = conv(x)
        conv.to(torch.bfloat16)
        got = conv(x.to(torch.bfloat16))
        state, streamed = StreamState(), []
        for start in range(0, 13, 4):
            streamed.append(conv(x[..., start:start + 4].to(torch.bfloat16), state))
    assert got.shape == want.shape == (2, 24, (13 - kernel // stride + 1) * stride)
    assert _relative_error(got, want) < TOLERANCE
    assert _relative_error(torch.cat(streamed, dim=-1), want) < TOLERANCE


def test_fp32_keeps_torch_convolution_exactly():
    torch.manual_seed(0)
    conv = CausalConvTranspose1d(8, 4, 6, 3)
    x = torch.randn(1, 8, 7)
    with torch.no_grad():
        y = conv.conv(x)
        assert torch.equal(conv(x), y[..., 3: y.shape[-1] - 3])
