"""Linear layers that take the native bf16 GEMV for inputs of a few rows (decode steps) on CPU.

`linear(x, weight, bias)` is `F.linear` except where `omnistream.kernels.gemv` applies (one to four bf16 rows
on a CPU with AVX-512-BF16 and a compiler, no autograd, not under torch.compile); there it streams the weight
at close to memory bandwidth instead of the 7-10 GB/s of torch's bf16 GEMM on one core. Results agree with
`F.linear` to bf16 rounding (both accumulate in fp32; the summation order differs).

`use_fast_linears(module)` turns every `nn.Linear` under a module into a `FastLinear` in place — the same
object, parameters and state_dict, only its `forward` changes — so a loaded model picks up the kernel without
its classes knowing. The MoE experts call `linear` directly (nn/moe.py).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from omnistream.kernels import gemv


def linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    if gemv.usable(x, weight):
        out = gemv.gemv_bf16(x, weight)
        return out if bias is None else out + bias
    return F.linear(x, weight, bias)


class FastLinear(nn.Linear):
    """`nn.Linear` whose forward goes through `linear` (same parameters, same results up to bf16 rounding)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return linear(x, self.weight, self.bias)


def use_fast_linears(module: nn.Module) -> int:
    """Re-class each plain `nn.Linear` under `module` as a `FastLinear`; returns how many changed."""
    changed = 0
    for child in module.modules():
        if type(child) is nn.Linear:
            child.__class__ = FastLinear
            changed += 1
    return changed
