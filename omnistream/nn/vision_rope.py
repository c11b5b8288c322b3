"""2-D axial rotary embedding of the vision encoder (spec §2.3 "rotary").

A patch at (row, col) gets, for j = 0..D/4−1 with inv_j = θ^(−4j/D) (θ = 10⁴; written 10000^(−2j/36)
for head_dim 72 in the spec), the angles

    [row·inv_0 … row·inv_{D/4−1}, col·inv_0 … col·inv_{D/4−1}]   (D/2 angles)

duplicated to width D and applied rotate-half style: pair (i, i + D/2) rotates by angle i. The
reference applies this rotation in fp32 whatever the activation dtype, then casts back; so do we.
"""
from __future__ import annotations

import torch

from omnistream.nn.rope import rotate_half

VISION_ROPE_THETA = 10000.0  # not in config.json: the reference's default for the "axial" rope type


def vision_inverse_frequencies(head_dim: int, theta: float = VISION_ROPE_THETA) -> torch.Tensor:
    """inv_j = θ^(−2j/(D/2)), j = 0..D/4−1, fp32 (the same frequencies serve rows and columns)."""
    if head_dim % 4:
        raise ValueError(f"2-D rotary needs head_dim divisible by 4, got {head_dim}")
    half = head_dim // 2
    return 1.0 / (theta ** (torch.arange(0, half, 2, dtype=torch.float) / half))


def vision_rope_tables(positions: torch.Tensor, inv_freq: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """positions [N, 2] (row, col) → cos, sin [N, D] in fp32, D = 4·len(inv_freq)."""
    angles = positions.float()[..., None] * inv_freq.to(positions.device)  # [N, 2, D/4]
    angles = angles.flatten(1)                                              # [N, D/2]: rows then cols
    emb = torch.cat((angles, angles), dim=-1)                               # [N, D]
    return emb.cos(), emb.sin()


def apply_vision_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate x [N, H, D] by cos/sin [N, D] in fp32; the result has x's dtype."""
    x32 = x.float()
    cos, sin = cos[:, None, :], sin[:, None, :]  # shared by every head
    return (x32 * cos + rotate_half(x32) * sin).to(x.dtype)
