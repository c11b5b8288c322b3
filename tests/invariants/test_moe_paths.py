"""The MoE decode path (gather selected experts) and prefill path (group by expert) give the same result."""
from __future__ import annotations

import pytest
import torch

from omnistream.nn.moe import SparseMoe


def _moe(experts: int, top_k: int, shared: int, hidden: int = 32, inter: int = 24, dtype=torch.float32) -> SparseMoe:
    moe = SparseMoe(hidden, inter, experts, top_k, norm_topk_prob=True, shared_expert_intermediate_size=shared)
    with torch.no_grad():
        moe.gate.weight.normal_(0, 4 / hidden ** 0.5)
    return moe.to(dtype).eval()


@pytest.mark.parametrize("experts,top_k,shared", [(4, 2, 0), (8, 2, 0), (128, 8, 0), (16, 6, 48)])
@pytest.mark.parametrize("tokens", [1, 3, 17, 64])
@torch.no_grad()
def test_decode_path_equals_prefill_path_fp32(experts, top_k, shared, tokens):
    moe = _moe(experts, top_k, shared)
    x = torch.randn(tokens, 32)
    decode, prefill, auto = moe(x, path="decode"), moe(x, path="prefill"), moe(x)
    torch.testing.assert_close(decode, prefill, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(auto, prefill, rtol=1e-6, atol=1e-6)


@torch.no_grad()
def test_paths_agree_in_bf16():
    moe = _moe(128, 8, 0, dtype=torch.bfloat16)
    x = torch.randn(2, 5, 32, dtype=torch.bfloat16)
    decode, prefill = moe(x, path="decode"), moe(x, path="prefill")
    assert decode.dtype == prefill.dtype == torch.bfloat16
    scale = prefill.float().abs().max()
    assert (decode.float() - prefill.float()).abs().max() <= 2e-2 * scale


@torch.no_grad()
def test_many_tokens_on_one_expert():
    """Routing every token to the same experts (a degenerate router) still matches."""
    moe = _moe(8, 2, 0)
    moe.gate.weight.zero_()
    moe.gate.weight[3, 0] = moe.gate.weight[5, 0] = 10.0
    x = torch.randn(40, 32).abs()
    _, ids = moe.route(x)
    assert set(ids.flatten().tolist()) == {3, 5}
    torch.testing.assert_close(moe(x, path="decode"), moe(x, path="prefill"), rtol=1e-6, atol=1e-6)
