"""The native bf16 GEMV (omnistream/kernels) and the FastLinear layer that dispatches to it.

Results are compared with an fp32 product: both the kernel and torch's bf16 GEMM accumulate in fp32 and round
the output to bf16, so they agree to bf16 rounding, not bit for bit.
"""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from omnistream.kernels import gemv
from omnistream.nn.fast_linear import FastLinear, linear, use_fast_linears
from omnistream.nn.moe import SparseMoe

needs_kernel = pytest.mark.skipif(not gemv.available(), reason="no AVX-512-BF16 CPU or no C compiler here")
BF16_ROUNDING = 2 ** -7          # relative; one bf16 rounding of the output is 2^-9, with slack for the sum order


def _relative_error(got: torch.Tensor, want: torch.Tensor) -> float:
    return ((got.float() - want.float()).abs().max() / want.float().abs().max()).item()


@needs_kernel
@pytest.mark.parametrize("rows", [1, 2, 3, 4])
@pytest.mark.parametrize("out_features, in_features", [(1, 32), (7, 45), (33, 300), (130, 2048), (64, 777)])
def test_kernel_matches_fp32_product(rows, out_features, in_features):
    g = torch.Generator().manual_seed(rows * 1000 + in_features)
    weight = torch.randn(out_features, in_features, generator=g).to(torch.bfloat16)
    x = torch.randn(rows, in_features, generator=g).to(torch.bfloat16)
    assert gemv.usable(x, weight)
    got = gemv.gemv_bf16(x, weight)
    assert got.dtype == torch.bfloat16 and got.shape == (rows, out_features)
    assert _relative_error(got, x.float() @ weight.float().t()) < BF16_ROUNDING


@needs_kernel
def test_kernel_parallel_rows_cover_every_output():
    # Big enough to run on several threads: every output row must be written (no stale memory).
    g = torch.Generator().manual_seed(0)
    weight = torch.randn(4099, 512, generator=g).to(torch.bfloat16)
    x = torch.randn(1, 1, 512, generator=g).to(torch.bfloat16)
    got = gemv.gemv_bf16(x, weight)
    assert got.shape == (1, 1, 4099)
    want = x.float() @ weight.float().t()
    assert torch.isfinite(got).all()
    assert _relative_error(got, want) < BF16_ROUNDING


@needs_kernel
def test_linear_dispatch_and_fallbacks():
    g = torch.Generator().manual_seed(1)
    weight = torch.randn(48, 64, generator=g).to(torch.bfloat16)
    bias = torch.randn(48, generator=g).to(torch.bfloat16)
    one = torch.randn(1, 64, generator=g).to(torch.bfloat16)
    assert _relative_error(linear(one, weight, bias), F.linear(one.float(), weight.float(), bias.float())) \
        < BF16_ROUNDING
    # Outside the kernel's domain `linear` is F.linear exactly.
    many = torch.randn(9, 64, generator=g).to(torch.bfloat16)
    assert not gemv.usable(many, weight)
    assert torch.equal(linear(many, weight), F.linear(many, weight))
    fp32 = one.float()
    assert not gemv.usable(fp32, weight.float())
    assert torch.equal(linear(fp32, weight.float()), F.linear(fp32, weight.float()))
    strided = weight.t().contiguous().t()                       # same values, not row-major
    assert not gemv.usable(one, strided)
    trainable = weight.clone().requires_grad_()
    assert not gemv.usable(one, trainable)                        # autograd needs torch's op
    with torch.no_grad():
        assert gemv.usable(one, trainable)


@needs_kernel
def test_fast_linears_keep_parameters_and_results():
    torch.manual_seed(2)
    model = nn.Sequential(nn.Linear(64, 96), nn.SiLU(), nn.Linear(96, 32, bias=False)).to(torch.bfloat16)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    x = torch.randn(1, 64).to(torch.bfloat16)
    with torch.no_grad():
        want = model(x)
        assert use_fast_linears(model) == 2
        assert all(type(m) is FastLinear for m in (model[0], model[2]))
        got = model(x)
    assert model.state_dict().keys() == before.keys()
    assert all(torch.equal(model.state_dict()[k], v) for k, v in before.items())
    assert _relative_error(got, want) < 4 * BF16_ROUNDING          # two layers of bf16 rounding


@needs_kernel
def test_moe_experts_take_the_kernel_with_the_same_routing():
    torch.manual_seed(3)
    moe = SparseMoe(hidden_size=64, intermediate_size=32, num_experts=8, top_k=2, norm_topk_prob=True)
    moe = moe.to(torch.bfloat16)
    x = torch.randn(3, 64).to(torch.bfloat16)
    with torch.no_grad():
        got = moe(x)                                             # CPU eager → grouped path, kernel per expert
        want = moe.float()(x.float())
    assert _relative_error(got, want) < 4 * BF16_ROUNDING


def test_disabled_by_environment(monkeypatch):
    monkeypatch.setenv("OMNISTREAM_NATIVE_KERNELS", "0")
    gemv._library.cache_clear()
    try:
        assert not gemv.available()
        x, weight = torch.randn(1, 64).to(torch.bfloat16), torch.randn(8, 64).to(torch.bfloat16)
        assert not gemv.usable(x, weight)
        assert torch.equal(linear(x, weight), F.linear(x, weight))
    finally:
        monkeypatch.undo()
        gemv._library.cache_clear()


def test_packed_copy_for_batches_is_exact_and_dropped_when_stale():
    torch.manual_seed(4)
    layer = nn.Linear(64, 40).to(torch.bfloat16)
    use_fast_linears(layer)
    if not layer.pack_for_batches(8):
        pytest.skip("oneDNN is not available in this torch build")
    x = torch.randn(8, 64).to(torch.bfloat16)
    with torch.no_grad():
        assert torch.equal(layer(x), F.linear(x, layer.weight, layer.bias))   # same oneDNN kernel, prepacked
        layer.weight.mul_(2)                                                   # weight changed in place
        assert torch.equal(layer(x), F.linear(x, layer.weight, layer.bias))   # the stale copy is not used
    assert layer.packed is None


@needs_kernel
def test_compiled_graphs_reach_the_kernel_through_the_custom_op():
    g = torch.Generator().manual_seed(4)
    layer = nn.Linear(96, 40, bias=True).to(torch.bfloat16)
    use_fast_linears(layer)
    x = torch.randn(1, 96, generator=g).to(torch.bfloat16)
    targets = []

    def recording_backend(gm, example_inputs):
        targets.extend(node.target for node in gm.graph.nodes if node.op == "call_function")
        return gm.forward

    torch._dynamo.reset()
    with torch.no_grad():
        compiled = torch.compile(layer, backend=recording_backend)
        got = compiled(x)
        assert torch.ops.omnistream.linear_bf16 in targets                         # dynamo graph: the packet
        assert torch.equal(got, gemv.gemv_bf16(x, layer.weight) + layer.bias)    # the same kernel, bit for bit
        many = torch.randn(9, 96, generator=g).to(torch.bfloat16)                 # too many rows: torch's GEMM
        assert torch.equal(torch.ops.omnistream.linear_bf16(many, layer.weight), F.linear(many, layer.weight))
    torch._dynamo.reset()
