"""Fresh weights for a model built from a config (training from nothing).

Modules built outside `params_on_meta` get torch's default init for nn.Linear/Embedding, but stacked expert
tensors, norms, layer scales and SnakeBeta parameters are plain `nn.Parameter`s whose initial value is
whatever their module chose; this gives every parameter a deliberate starting value by name.
"""
from __future__ import annotations

import math

import torch
from torch import nn


@torch.no_grad()
def init_weights(model: nn.Module, seed: int = 0, std: float = 0.02) -> None:
    """Norm weights 1, biases 0, SnakeBeta log-parameters 0 (α = β = 1), layer scales small, matrices N(0, σ)
    with σ = min(std·4, 1/√fan_in) so tiny layers are neither saturated nor dead."""
    gen = torch.Generator().manual_seed(seed)
    for name, p in model.named_parameters():
        leaf = name.rsplit(".", 1)[-1]
        if leaf in ("alpha", "beta"):
            p.zero_()
        elif "layer_scale" in name or leaf == "gamma":
            p.fill_(0.1)
        elif p.ndim == 1:
            is_norm = "norm" in name or "ln" in name.rsplit(".", 2)[-2]
            p.fill_(1.0) if (is_norm and leaf == "weight") else p.zero_()
        else:
            fan_in = p.shape[-1] if p.ndim in (2, 3) and "conv" not in name else math.prod(p.shape[1:])
            sigma = min(4 * std, 1.0 / math.sqrt(max(fan_in, 1)))
            p.copy_(torch.randn(p.shape, generator=gen) * sigma)
