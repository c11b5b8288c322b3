"""SparseMoe against a naive per-token formula; both execution paths; shared expert."""
import pytest
import torch
import torch.nn.functional as F

from omnistream.nn.moe import SparseMoe


def naive_moe(moe: SparseMoe, x: torch.Tensor) -> torch.Tensor:
    """Per token: fp32 softmax over all experts, top-k, renorm, weighted sum of the chosen SwiGLUs (float64)."""
    p = {n: t.double() for n, t in moe.state_dict().items()}
    out = torch.zeros(x.shape, dtype=torch.float64)
    I = p["experts.down_proj"].shape[-1]
    for n, tok in enumerate(x.double()):
        probs = torch.softmax(tok @ p["gate.weight"].T, 0)
        top = torch.topk(probs, moe.top_k)
        w = top.values / top.values.sum() if moe.norm_topk_prob else top.values
        for weight, e in zip(w, top.indices.tolist()):
            gu = p["experts.gate_up_proj"][e] @ tok
            out[n] += weight * (p["experts.down_proj"][e] @ (F.silu(gu[:I]) * gu[I:]))
        if moe.shared_expert is not None:
            s = p["shared_expert.down_proj.weight"] @ (F.silu(p["shared_expert.gate_proj.weight"] @ tok)
                                                      * (p["shared_expert.up_proj.weight"] @ tok))
            out[n] += torch.sigmoid(p["shared_expert_gate.weight"] @ tok) * s
    return out


def _moe(experts=8, top_k=2, norm=True, shared=0):
    moe = SparseMoe(16, 12, experts, top_k, norm, shared).eval()
    with torch.no_grad():
        moe.gate.weight.mul_(8)  # well-separated routing
    return moe


@pytest.mark.parametrize("experts,top_k,norm,shared", [(8, 2, True, 0), (4, 1, False, 0), (16, 6, True, 24)])
@pytest.mark.parametrize("path", ["decode", "prefill", None])
def test_paths_match_naive(experts, top_k, norm, shared, path):
    moe = _moe(experts, top_k, norm, shared)
    x = torch.randn(2, 5, 16)
    with torch.no_grad():
        out = moe(x, path=path)
    torch.testing.assert_close(out.double(), naive_moe(moe, x.view(-1, 16)).view(2, 5, 16), rtol=1e-5, atol=1e-5)


def test_path_choice_by_tokens_times_k():
    """Off the CPU (here: tensors on `meta`) the gather path serves N·K ≤ E; eager CPU always groups."""
    moe = _moe(experts=8, top_k=2)
    assert moe.choose_path(torch.empty(4, 16, device="meta")) == "decode"    # 4·2 = 8 ≤ 8
    assert moe.choose_path(torch.empty(5, 16, device="meta")) == "prefill"   # 10 > 8
    assert moe.choose_path(torch.empty(1, 16)) == "prefill"
    calls = []
    moe.decode_path = lambda *a: calls.append("decode") or torch.zeros(a[0].shape)
    moe.prefill_path = lambda *a: calls.append("prefill") or torch.zeros(a[0].shape)
    with torch.no_grad():
        moe(torch.randn(1, 1, 16))
    assert calls == ["prefill"]


@pytest.mark.parametrize("path", ["decode", "prefill"])
def test_decode_path_reads_only_selected_experts(path):
    """Poison every unselected expert with NaN: neither path may touch them."""
    moe = _moe(experts=8, top_k=2)
    x = torch.randn(1, 16)
    with torch.no_grad():
        expected = moe(x, path=path)
        _, ids = moe.route(x)
        unused = sorted(set(range(8)) - set(ids.flatten().tolist()))
        moe.experts.gate_up_proj[unused] = float("nan")
        moe.experts.down_proj[unused] = float("nan")
        out = moe(x, path=path)
    assert torch.isfinite(out).all()
    torch.testing.assert_close(out, expected, rtol=0, atol=0)


def test_bf16_routing_weights_cast_back():
    moe = _moe().to(torch.bfloat16)
    w, ids = moe.route(torch.randn(3, 16, dtype=torch.bfloat16))
    assert w.dtype == torch.bfloat16 and ids.shape == (3, 2)
    torch.testing.assert_close(w.float().sum(-1), torch.ones(3), rtol=0, atol=1e-2)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_one_token_shortcut_is_the_grouped_path_bit_for_bit(dtype):
    """Decode at batch 1 skips the grouping bookkeeping; results must not move by a single bit."""
    torch.manual_seed(7)
    moe = SparseMoe(64, 32, 16, 4, True).to(dtype)
    for _ in range(4):
        x = torch.randn(1, 64).to(dtype)
        with torch.no_grad():
            weights, ids = moe.route(x)
            order = torch.argsort(ids.reshape(-1), stable=True)        # the general algorithm, spelled out
            outputs = [moe.experts.run(int(e), x) for e in ids.reshape(-1)[order]]
            y = torch.cat(outputs) * weights.reshape(-1)[order].unsqueeze(-1)
            want = torch.zeros_like(x).index_add_(0, order // ids.shape[1], y)
            assert torch.equal(moe.prefill_path(x, weights, ids), want)
