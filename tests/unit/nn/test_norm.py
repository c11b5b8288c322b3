"""RMSNorm against the independent formula: L2-normalise × √d × weight."""
import torch

from omnistream.nn.norm import RMSNorm


def test_rmsnorm_matches_l2_normalise_times_sqrt_d():
    d = 24
    norm = RMSNorm(d, eps=0.0)
    with torch.no_grad():
        norm.weight.copy_(torch.randn(d))
    x = torch.randn(3, 5, d)
    # statistics are always fp32 inside (spec §2), so compare fp32 output with a float64 formula
    expected = torch.nn.functional.normalize(x.double(), dim=-1) * d ** 0.5 * norm.weight.double()
    torch.testing.assert_close(norm(x).double(), expected, rtol=1e-6, atol=1e-6)


def test_rmsnorm_eps_and_low_precision_order():
    """bf16 input: statistics in fp32, cast back to bf16, then the weight multiply (spec §2)."""
    d, eps = 16, 1e-6
    norm = RMSNorm(d, eps).to(torch.bfloat16)
    with torch.no_grad():
        norm.weight.copy_(torch.randn(d))
    x = (torch.randn(4, d) * 3).to(torch.bfloat16)
    x32 = x.float()
    expected = norm.weight * (x32 / torch.sqrt((x32 ** 2).mean(-1, keepdim=True) + eps)).to(torch.bfloat16)
    out = norm(x)
    assert out.dtype == torch.bfloat16
    torch.testing.assert_close(out, expected, rtol=0, atol=0)
