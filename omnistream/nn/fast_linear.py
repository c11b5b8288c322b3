"""Linear layers that take the native bf16 GEMV for inputs of a few rows (decode steps) on CPU.

`linear(x, weight, bias)` is `F.linear` except where `omnistream.kernels.gemv` applies (a few bf16 rows on a
CPU with AVX-512-BF16 and a compiler, no autograd); there it streams the weight at close to memory bandwidth
instead of the 7-10 GB/s of torch's bf16 GEMM on one core. Results agree with `F.linear` to bf16 rounding (both
accumulate in fp32; the summation order differs). Under torch.compile the kernel is reached through the
custom op `omnistream::linear_bf16` (opaque to the compiler), so a compiled model keeps it; on this project's
CPU the compiled code predictor still measured slower than eager (docs/performance.md), so compiling stays
opt-in.

`use_fast_linears(module)` turns every `nn.Linear` under a module into a `FastLinear` in place — the same
object, parameters and state_dict, only its `forward` changes — so a loaded model picks up the kernel without
its classes knowing. The MoE experts call `linear` directly (nn/moe.py).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from omnistream.kernels import gemv


@torch.library.custom_op("omnistream::linear_bf16", mutates_args=())
def _linear_op(x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """What compiled graphs call: the GEMV when it applies to this call's rows, else torch's GEMM."""
    return gemv.gemv_bf16(x, weight) if gemv.usable(x, weight) else F.linear(x, weight)


@_linear_op.register_fake
def _(x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    return x.new_empty((*x.shape[:-1], weight.shape[0]))


def _compiled_native(x: torch.Tensor, weight: torch.Tensor) -> bool:
    """Inside a torch.compile trace: route through the custom op? (row count is checked when it runs)"""
    return (torch.compiler.is_compiling() and x.dtype == torch.bfloat16 and weight.dtype == torch.bfloat16
            and x.device.type == "cpu" and weight.device.type == "cpu" and weight.is_contiguous()
            and not (torch.is_grad_enabled() and (x.requires_grad or weight.requires_grad)) and gemv.available())


def linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    if gemv.usable(x, weight):
        return _native(x, weight, bias)
    if _compiled_native(x, weight):
        return _through_op(x, weight, bias)
    return F.linear(x, weight, bias)


def _through_op(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    out = torch.ops.omnistream.linear_bf16(x, weight)
    return out if bias is None else out + bias


def _native(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    out = gemv.gemv_bf16(x, weight)
    return out if bias is None else out + bias


class FastLinear(nn.Linear):
    """`nn.Linear` whose forward goes through `linear` (same parameters, same results up to bf16 rounding).

    `pack_for_batches` adds a second copy of the weight in oneDNN's blocked layout for inputs of more rows
    than the GEMV takes: torch's bf16 GEMM otherwise re-lays the weight out inside every call, which for a
    decode batch (8 rows against the 623 MB lm_head of Qwen3-Omni) halves its speed. The copy is a snapshot
    for inference: it is dropped if the weight is modified (its version counter moves).
    """

    packed: torch.Tensor | None = None
    _packed_version: tuple[int, int] | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if gemv.usable(x, self.weight):
            return _native(x, self.weight, self.bias)
        if _compiled_native(x, self.weight):
            return _through_op(x, self.weight, self.bias)
        if self.packed is not None and self._packed_applies(x):
            return torch.ops.mkldnn._linear_pointwise(x.contiguous(), self.packed, self.bias, "none", [], "")
        return F.linear(x, self.weight, self.bias)

    def pack_for_batches(self, rows: int = 8) -> bool:
        """Keep a oneDNN-blocked copy of the weight tuned for `rows`-row inputs; False where unsupported."""
        weight = self.weight
        if not (weight.dtype == torch.bfloat16 and weight.device.type == "cpu"
                and torch.backends.mkldnn.is_available()
                and hasattr(torch.ops.mkldnn, "_reorder_linear_weight")):
            return False
        self.packed = torch.ops.mkldnn._reorder_linear_weight(weight.detach().contiguous(), rows)
        self._packed_version = (weight.data_ptr(), weight._version)
        return True

    def _packed_applies(self, x: torch.Tensor) -> bool:
        weight = self.weight
        if self._packed_version != (weight.data_ptr(), weight._version):
            self.packed = None                                   # the weight changed: the snapshot is stale
            return False
        return (x.dtype == torch.bfloat16 and x.device.type == "cpu" and not torch.compiler.is_compiling()
                and not (torch.is_grad_enabled() and (x.requires_grad or weight.requires_grad)))


def use_fast_linears(module: nn.Module) -> int:
    """Re-class each plain `nn.Linear` under `module` as a `FastLinear`; returns how many changed."""
    changed = 0
    for child in module.modules():
        if type(child) is nn.Linear:
            child.__class__ = FastLinear
            changed += 1
    return changed
