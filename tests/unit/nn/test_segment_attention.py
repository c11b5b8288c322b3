"""Segment attention against an independent formula: a float64 softmax per segment, written out by hand."""
import pytest
import torch

from omnistream.nn.segment_attention import segment_attention, segment_layout


def _per_segment_reference(q, k, v, bounds, scale):
    """softmax(q·kᵀ·scale)·v separately inside each [bounds[i], bounds[i+1]) range, float64."""
    out = torch.empty_like(q, dtype=torch.float64)
    for a, b in zip(bounds[:-1], bounds[1:]):
        qs, ks, vs = (x[a:b].double().transpose(0, 1) for x in (q, k, v))  # [H, n, D]
        weights = torch.softmax(qs @ ks.transpose(1, 2) * scale, dim=-1)
        out[a:b] = (weights @ vs).transpose(0, 1)
    return out


def _qkv(total, heads=3, dim=8):
    return (torch.randn(total, heads, dim) for _ in range(3))


@pytest.mark.parametrize("bounds, mode", [
    ([0, 11], "single"),
    ([0, 7, 14, 21], "padded, equal lengths"),
    ([0, 5, 23, 30, 49], "padded, ragged"),
    ([0, 40, 41, 42, 43, 44, 45, 46], "dense block-diagonal"),
])
def test_matches_per_segment_softmax(bounds, mode):
    q, k, v = _qkv(bounds[-1])
    layout = segment_layout(bounds)
    # The layout picks the mode the cost rule promises.
    assert (layout.gather is None and layout.dense_mask is None) == (mode == "single")
    assert (layout.dense_mask is not None) == (mode == "dense block-diagonal")
    assert (layout.key_mask is not None) == (mode == "padded, ragged")
    out = segment_attention(q, k, v, layout, scale=0.3)
    assert out.shape == q.shape and out.dtype == q.dtype
    torch.testing.assert_close(out.double(), _per_segment_reference(q, k, v, bounds, 0.3), rtol=1e-5, atol=1e-6)


def test_default_scale_is_inverse_sqrt_head_dim():
    q, k, v = _qkv(12, dim=16)
    out = segment_attention(q, k, v, segment_layout([0, 5, 12]))
    torch.testing.assert_close(out.double(), _per_segment_reference(q, k, v, [0, 5, 12], 0.25), rtol=1e-5, atol=1e-6)


def test_segments_do_not_see_each_other():
    bounds = [0, 6, 15, 19]
    q, k, v = _qkv(19)
    layout = segment_layout(bounds)
    before = segment_attention(q, k, v, layout)
    k2, v2 = k.clone(), v.clone()
    k2[6:15] += 5.0
    v2[6:15] -= 3.0
    after = segment_attention(q, k2, v2, layout)
    torch.testing.assert_close(after[:6], before[:6], rtol=0, atol=0)
    torch.testing.assert_close(after[15:], before[15:], rtol=0, atol=0)
    assert not torch.allclose(after[6:15], before[6:15])


def test_accepts_tensor_cu_seqlens():
    bounds = torch.tensor([0, 3, 10], dtype=torch.int32)
    q, k, v = _qkv(10)
    out = segment_attention(q, k, v, segment_layout(bounds))
    torch.testing.assert_close(out.double(), _per_segment_reference(q, k, v, [0, 3, 10], 8 ** -0.5),
                               rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("bounds", [[1, 4], [0, 4, 4, 9], [0, 5, 3]])
def test_rejects_bad_boundaries(bounds):
    with pytest.raises(ValueError, match="cu_seqlens"):
        segment_layout(bounds)
