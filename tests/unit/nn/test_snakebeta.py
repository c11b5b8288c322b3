"""SnakeBeta against its formula y = x + sin²(x·e^α) / (e^β + 1e-9), in float64 (spec §2.6)."""
from __future__ import annotations

import numpy as np
import torch

from omnistream.nn.activations import SnakeBeta


def test_snakebeta_matches_formula() -> None:
    act = SnakeBeta(5).double()
    rng = np.random.default_rng(0)
    alpha, beta = rng.normal(0, 0.5, 5), rng.normal(0, 0.5, 5)
    with torch.no_grad():
        act.alpha.copy_(torch.from_numpy(alpha))
        act.beta.copy_(torch.from_numpy(beta))
    x = rng.normal(0, 2, (3, 5, 17))
    expected = x + np.sin(x * np.exp(alpha)[None, :, None]) ** 2 / (np.exp(beta)[None, :, None] + 1e-9)
    y = act(torch.from_numpy(x)).detach().numpy()
    np.testing.assert_allclose(y, expected, rtol=1e-13, atol=1e-13)


def test_snakebeta_init_and_zero_input() -> None:
    act = SnakeBeta(4)
    assert torch.equal(act.alpha, torch.zeros(4)) and torch.equal(act.beta, torch.zeros(4))
    x = torch.zeros(2, 4, 3)
    assert torch.equal(act(x), x)  # sin(0) = 0: zero is a fixed point
    x = torch.full((1, 4, 1), torch.pi)
    torch.testing.assert_close(act(x), x, atol=1e-6, rtol=0)  # sin²(π·1) = 0 with α = 0


def test_in_place_inference_is_bit_identical_to_the_reference_order() -> None:
    # The reference's expression, op by op in the activation dtype; inference runs it in place on one buffer.
    g = torch.Generator().manual_seed(0)
    for dtype in (torch.bfloat16, torch.float32):
        act = SnakeBeta(48).to(dtype)
        with torch.no_grad():
            act.alpha.copy_(torch.randn(48, generator=g) * 0.3)
            act.beta.copy_(torch.randn(48, generator=g) * 0.3)
        x = (torch.randn(2, 48, 301, generator=g) * 3).to(dtype)
        alpha, beta = torch.exp(act.alpha)[None, :, None], torch.exp(act.beta)[None, :, None]
        reference = x + (1.0 / (beta + 1e-9)) * torch.sin(x * alpha).pow(2)
        with torch.no_grad():
            assert torch.equal(act(x), reference)
        trained = act(x)                                       # autograd on: the out-of-place form, same values
        assert trained.requires_grad and torch.equal(trained.detach(), reference.detach())
        trained.float().sum().backward()
        assert act.alpha.grad is not None and torch.isfinite(act.alpha.grad).all()
