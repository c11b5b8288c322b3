"""RMSNorm, the one normalisation every decoder in the model uses (spec §2 "Common numerics").

The reference normalises in fp32, casts back to the activation dtype, and only then multiplies by the
weight — so in bf16 the weight multiply happens in bf16. We keep that order to stay bit-compatible.
"""
from __future__ import annotations

import torch
from torch import nn


class RMSNorm(nn.Module):
    """y = weight · (x / sqrt(mean(x²) + eps)), statistics in fp32."""

    def __init__(self, dim: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x32 = x.float()
        normed = x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * normed.to(x.dtype)

    def extra_repr(self) -> str:
        return f"{self.weight.shape[0]}, eps={self.eps}"
