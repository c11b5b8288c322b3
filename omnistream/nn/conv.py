"""Causal 1-D convolutions with explicit streaming state, and the ConvNeXt block (qwen3-omni-spec §2.6).

Every module here takes `forward(x, state=None)` with x: [B, C, T].

* `state=None` is one-shot decoding, exactly the reference: a causal conv left-pads (k_eff − 1) zeros, a
  causal transposed conv trims (k − s) samples from both ends.
* With a `StreamState`, the module reads what it remembered from the previous call, prepends it, and
  stores what the next call needs. Calling it on consecutive pieces of a signal returns consecutive
  pieces of the one-shot output — no sample is lost or repeated at a boundary. The state belongs to the
  request (a `StreamState` per stream), not to the module, so one model can serve many streams.

What each module remembers:

| module                 | remembered                      | why                                              |
|------------------------|---------------------------------|--------------------------------------------------|
| CausalConv1d           | last (k−1)·d input samples      | the left padding of the next piece (zeros at t=0) |
| CausalConvTranspose1d  | last k/s − 1 input frames       | output block t needs inputs t .. t + k/s − 1     |
| ConvNeXtBlock          | its depthwise conv's tail       | the rest is pointwise in time                    |

A transposed conv with kernel 2s therefore holds back one input frame: it emits the s samples that
depend on frame t only once frame t+1 has arrived. One-shot decoding never emits them for the last
frame at all (the reference's "loss" of s samples per transposed conv).

Only stride-1 plain convolutions are supported: Code2Wav uses no other (its strided layers are the
transposed ones).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class StreamState:
    """Per-stream memory of causal modules: one tensor per module, keyed by the module object itself."""

    def __init__(self) -> None:
        self._tensors: dict[nn.Module, torch.Tensor] = {}

    def get(self, module: nn.Module) -> torch.Tensor | None:
        return self._tensors.get(module)

    def set(self, module: nn.Module, value: torch.Tensor) -> None:
        self._tensors[module] = value

    def num_bytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in self._tensors.values())


def _short_bf16_on_cpu(x: torch.Tensor, length: int) -> bool:
    """Streaming decode feeds a few frames at a time. On CPU, oneDNN's bf16 convolution over such a short time
    axis runs at ~12 GMAC/s and the transposed one takes a slow reference path (measured: 15 and 19 ms for the
    first Code2Wav convolutions on 4 frames); as an im2col / overlap-add GEMM the same products take ~2 ms.
    Long inputs and other dtypes keep torch's convolution (and fp32 stays bit-identical to the reference)."""
    return x.device.type == "cpu" and x.dtype == torch.bfloat16 and length <= _SHORT


_SHORT = 64       # output frames (plain conv) / input frames (transposed) up to which the GEMM form is used


class CausalConv1d(nn.Module):
    """Stride-1 Conv1d that only looks back: left-pads (k−1)·dilation zeros (checkpoint key `conv`)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, dilation: int = 1,
                 groups: int = 1) -> None:
        super().__init__()
        self.conv = nn.Conv1d(in_channels, out_channels, kernel_size, dilation=dilation, groups=groups)
        self.context = (kernel_size - 1) * dilation  # samples of history each output needs

    def forward(self, x: torch.Tensor, state: StreamState | None = None) -> torch.Tensor:
        # x: [B, C_in, T] -> [B, C_out, T]
        if x.shape[-1] == 0:  # nothing new (a stream call that completed no sample upstream)
            return x.new_zeros(x.shape[0], self.conv.out_channels, 0)
        if state is None or self.context == 0:
            return self._conv(F.pad(x, (self.context, 0)))
        tail = state.get(self)
        if tail is None:  # the start of the stream sees the same zeros as one-shot padding
            tail = x.new_zeros(x.shape[0], x.shape[1], self.context)
        x = torch.cat([tail, x], dim=-1)  # [B, C_in, context + T]
        state.set(self, x[..., x.shape[-1] - self.context:])
        return self._conv(x)

    def _conv(self, x: torch.Tensor) -> torch.Tensor:
        """The unpadded convolution of x [B, C_in, T + context] → [B, C_out, T]."""
        conv = self.conv
        if not _short_bf16_on_cpu(x, x.shape[-1] - self.context) or conv.groups != 1 or conv.dilation[0] != 1:
            return conv(x)
        # im2col + one GEMM: the windows [B, T, C_in·k] against the weight viewed as [C_out, C_in·k].
        k = conv.kernel_size[0]
        windows = x.unfold(-1, k, 1).transpose(1, 2).reshape(x.shape[0], -1, x.shape[1] * k)
        return F.linear(windows, conv.weight.reshape(conv.out_channels, -1), conv.bias).transpose(1, 2)


class CausalConvTranspose1d(nn.Module):
    """ConvTranspose1d (kernel a multiple of stride) trimmed by k − s at both ends (checkpoint key `conv`).

    Trimmed output block t (samples t·s .. t·s + s − 1) depends on inputs t .. t + k/s − 1, so T inputs give
    (T − k/s + 1)·s samples: with k = 2s that is (T − 1)·s, with k = s exactly T·s.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int) -> None:
        super().__init__()
        if kernel_size % stride != 0:
            raise ValueError(f"kernel_size {kernel_size} must be a multiple of stride {stride}")
        self.conv = nn.ConvTranspose1d(in_channels, out_channels, kernel_size, stride=stride)
        self.stride = stride
        self.trim = kernel_size - stride
        self.lookahead = kernel_size // stride - 1  # input frames held back between stream calls

    def forward(self, x: torch.Tensor, state: StreamState | None = None) -> torch.Tensor:
        # x: [B, C_in, T] -> [B, C_out, (T − lookahead)·s]
        if state is not None and self.lookahead > 0:
            held = state.get(self)
            if held is not None:
                x = torch.cat([held, x], dim=-1)
            state.set(self, x[..., max(0, x.shape[-1] - self.lookahead):])
        num_out = (x.shape[-1] - self.lookahead) * self.stride
        if num_out <= 0:  # not enough frames yet for a single complete block
            return x.new_zeros(x.shape[0], self.conv.out_channels, 0)
        if _short_bf16_on_cpu(x, x.shape[-1]):
            return self._as_matmul(x)
        y = self.conv(x)  # [B, C_out, (T − 1)·s + k]
        return y[..., self.trim: y.shape[-1] - self.trim]

    def _as_matmul(self, x: torch.Tensor) -> torch.Tensor:
        """The trimmed output as one GEMM plus overlap-add: input frame t adds W·x_t to output blocks
        t .. t + m − 1 (m = k / s), so trimmed block t sums Z[t − q, :, q] over q < m."""
        B, _, T = x.shape
        C, s = self.conv.out_channels, self.stride
        m = self.lookahead + 1
        z = torch.matmul(x.transpose(1, 2), self.conv.weight.view(x.shape[1], -1))   # [B, T, C·k]
        z = z.view(B, T, C, m, s)
        y = z[:, m - 1:, :, 0]                                                         # [B, T − m + 1, C, s]
        for q in range(1, m):
            y = y + z[:, m - 1 - q: T - q, :, q]
        if self.conv.bias is not None:
            y = y + self.conv.bias[:, None]
        return y.permute(0, 2, 1, 3).reshape(B, C, -1)


class ConvNeXtBlock(nn.Module):
    """Causal depthwise conv (k7) → LayerNorm → Linear ×4 → GELU → Linear → ×gamma, plus residual."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.dwconv = CausalConv1d(dim, dim, kernel_size=7, groups=dim)
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.pwconv1 = nn.Linear(dim, 4 * dim)
        self.act = nn.GELU()  # exact (erf) GELU, as the reference
        self.pwconv2 = nn.Linear(4 * dim, dim)
        self.gamma = nn.Parameter(torch.full((dim,), 1e-6))

    def forward(self, x: torch.Tensor, state: StreamState | None = None) -> torch.Tensor:
        # x: [B, C, T]
        h = self.dwconv(x, state).transpose(1, 2)  # [B, T, C]: norm and linears act on channels
        h = self.pwconv2(self.act(self.pwconv1(self.norm(h))))
        return x + (self.gamma * h).transpose(1, 2)
