"""Rotary position embeddings for the text-side decoders: plain 1-D and interleaved TM-RoPE (spec §3.1).

Convention (spec §2): *rotate-half* — frequency j rotates the pair (j, j + D/2) — with cos/sin tables of
width D built as [angles, angles] in fp32 and cast to the activation dtype before use.

TM-RoPE gives each of the D/2 frequencies one of three position axes (T, H, W). Interleaved layout
(Qwen3-Omni, `mrope_section` [24, 20, 20]): frequency j belongs to H if j % 3 == 1 and j < 3·sec_H, to W if
j % 3 == 2 and j < 3·sec_W, else to T. The 2-D vision rotary lives with the vision encoder.
"""
from __future__ import annotations

import torch
from torch import nn


def inverse_frequencies(head_dim: int, theta: float) -> torch.Tensor:
    """inv_freq_j = θ^(−2j/D), j = 0..D/2−1, computed in fp32 on the CPU exactly as the reference does."""
    return 1.0 / (theta ** (torch.arange(0, head_dim, 2, dtype=torch.int64).float() / head_dim))


def mrope_axes(mrope_section: tuple[int, ...] | list[int], interleaved: bool = True) -> torch.Tensor:
    """Which position axis (0 = T, 1 = H, 2 = W) drives each of the sum(mrope_section) frequencies."""
    half = sum(mrope_section)
    axes = torch.zeros(half, dtype=torch.long)
    if interleaved:
        for axis in (1, 2):
            axes[axis:3 * mrope_section[axis]:3] = axis
    else:  # contiguous blocks (Qwen2.5-Omni style): T first, then H, then W
        axes[mrope_section[0]:mrope_section[0] + mrope_section[1]] = 1
        axes[mrope_section[0] + mrope_section[1]:] = 2
    return axes


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    """(x1, x2) → (−x2, x1) over the two halves of the last dimension."""
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat((-x2, x1), dim=-1)


def apply_rotary(q: torch.Tensor, k: torch.Tensor, cos: torch.Tensor,
                 sin: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Rotate q [B, Hq, T, D] and k [B, Hk, T, D] by cos/sin [B, T, D] (already in the activation dtype)."""
    cos, sin = cos.unsqueeze(1), sin.unsqueeze(1)  # [B, 1, T, D]: shared by every head
    return q * cos + rotate_half(q) * sin, k * cos + rotate_half(k) * sin


class RotaryEmbedding(nn.Module):
    """cos/sin tables from positions: 1-D ([B, T]) or TM-RoPE ([3, B, T]) when `mrope_section` is given.

    Holds no buffers (so building on the `meta` device and loading needs no special case); the inverse
    frequencies are computed on the CPU once and cached per device.
    """

    def __init__(self, head_dim: int, theta: float, mrope_section: tuple[int, ...] | None = None,
                 interleaved: bool = True) -> None:
        super().__init__()
        if head_dim % 2:
            raise ValueError(f"rotary head_dim must be even, got {head_dim}")
        self.head_dim, self.theta = head_dim, theta
        self.mrope_section = tuple(mrope_section) if mrope_section is not None else None
        self.interleaved = interleaved
        self._tables: dict[torch.device, tuple[torch.Tensor, torch.Tensor | None]] = {}

    def _freqs(self, device: torch.device) -> tuple[torch.Tensor, torch.Tensor | None]:
        if device not in self._tables:
            inv = inverse_frequencies(self.head_dim, self.theta).to(device)
            axes = mrope_axes(self.mrope_section, self.interleaved).to(device) if self.mrope_section else None
            self._tables[device] = (inv, axes)
        return self._tables[device]

    def forward(self, position_ids: torch.Tensor, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
        """position_ids [B, T] or [3, B, T] (float allowed, spec §3.4) → cos, sin [B, T, D] in `dtype`."""
        inv, axes = self._freqs(position_ids.device)
        pos = position_ids.float()
        if pos.ndim == 3:
            if axes is None:
                raise ValueError("3-axis position ids need a rotary built with mrope_section")
            # [3, B, T, D/2] angles, then pick each frequency's own axis → [B, T, D/2]
            angles = pos[..., None] * inv
            angles = angles.gather(0, axes.view(1, 1, 1, -1).expand(1, *angles.shape[1:])).squeeze(0)
        else:
            angles = pos[..., None] * inv  # [B, T, D/2]
        emb = torch.cat((angles, angles), dim=-1)  # rotate-half layout
        return emb.cos().to(dtype), emb.sin().to(dtype)
