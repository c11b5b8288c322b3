"""2-D vision rotary against independent formulas: the spec's frequencies and complex multiplication."""
import pytest
import torch

from omnistream.nn.vision_rope import apply_vision_rope, vision_inverse_frequencies, vision_rope_tables


def test_inverse_frequencies_follow_spec():
    # spec §2.3: inv_freq_j = 10000^(−2j/36), j = 0..17, for head_dim 72
    inv = vision_inverse_frequencies(72)
    expected = torch.tensor([10000.0 ** (-2 * j / 36) for j in range(18)], dtype=torch.float64)
    assert inv.dtype == torch.float32
    torch.testing.assert_close(inv.double(), expected, rtol=1e-6, atol=0)


def test_head_dim_must_split_in_four():
    with pytest.raises(ValueError, match="divisible by 4"):
        vision_inverse_frequencies(70)


def _complex_rotate(x: torch.Tensor, angles: torch.Tensor) -> torch.Tensor:
    """Pairs (i, i + D/2) as complex numbers, multiplied by e^{i·angle_i}; angles [N, D/2]."""
    half = x.shape[-1] // 2
    z = torch.complex(x[..., :half], x[..., half:]) * torch.polar(torch.ones_like(angles), angles)[:, None, :]
    return torch.cat((z.real, z.imag), dim=-1)


def test_rotation_equals_complex_multiplication_by_row_then_col_angles():
    D = 16
    positions = torch.tensor([[0, 0], [0, 3], [2, 1], [7, 5], [31, 12]])
    inv = vision_inverse_frequencies(D).double()
    # Angles i < D/4 come from the row, the next D/4 from the column.
    angles = torch.cat([positions[:, :1].double() * inv, positions[:, 1:].double() * inv], dim=-1)  # [N, D/2]
    x = torch.randn(len(positions), 3, D, dtype=torch.float64)
    cos, sin = vision_rope_tables(positions, vision_inverse_frequencies(D))
    assert cos.dtype == torch.float32 and cos.shape == (len(positions), D)
    torch.testing.assert_close(apply_vision_rope(x, cos.double(), sin.double()), _complex_rotate(x, angles),
                               rtol=1e-5, atol=1e-5)


def test_scores_depend_only_on_the_2d_offset():
    D = 8
    q, k = torch.randn(1, 1, D), torch.randn(1, 1, D)
    inv = vision_inverse_frequencies(D)

    def score(pq, pk):
        cq, sq = vision_rope_tables(torch.tensor([pq]), inv)
        ck, sk = vision_rope_tables(torch.tensor([pk]), inv)
        return (apply_vision_rope(q, cq, sq) * apply_vision_rope(k, ck, sk)).sum()

    base = score((1, 2), (4, 0))
    torch.testing.assert_close(score((6, 9), (9, 7)), base, rtol=1e-4, atol=1e-5)
    assert not torch.allclose(score((1, 2), (0, 4)), base)  # rows and columns are different axes


def test_half_precision_inputs_keep_their_dtype_and_rotate_accurately():
    D = 16
    positions = torch.tensor([[3, 5], [40, 17]])
    inv = vision_inverse_frequencies(D)
    cos, sin = vision_rope_tables(positions, inv)
    x = torch.randn(2, 4, D).to(torch.bfloat16)
    out = apply_vision_rope(x, cos, sin)
    assert out.dtype == torch.bfloat16
    angles = torch.cat([positions[:, :1].double() * inv.double(), positions[:, 1:].double() * inv.double()], -1)
    # Rotated in fp32 and rounded once: within one bf16 rounding of the exact rotation.
    torch.testing.assert_close(out.double(), _complex_rotate(x.double(), angles), rtol=2 ** -8, atol=1e-2)
