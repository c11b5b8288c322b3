"""Rotary tables against independent formulas: complex multiplication and the spec §3.1 axis rule."""
import math

import pytest
import torch

from omnistream.nn.rope import RotaryEmbedding, apply_rotary, inverse_frequencies, mrope_axes


def _complex_rotate(x: torch.Tensor, angles: torch.Tensor) -> torch.Tensor:
    """Rotate-half pairs (j, j + D/2) as complex numbers x_j + i·x_{j+D/2} times e^{i·angle_j}."""
    half = x.shape[-1] // 2
    z = torch.complex(x[..., :half], x[..., half:]) * torch.polar(torch.ones_like(angles), angles)
    return torch.cat((z.real, z.imag), dim=-1)


def test_inverse_frequencies_formula():
    inv = inverse_frequencies(128, 1e6)
    expected = torch.tensor([1e6 ** (-2 * j / 128) for j in range(64)], dtype=torch.float64)
    torch.testing.assert_close(inv.double(), expected, rtol=1e-6, atol=0)


def test_1d_rope_equals_complex_multiplication():
    D, theta = 16, 1e4
    rope = RotaryEmbedding(D, theta)
    pos = torch.tensor([[0, 1, 5, 17, 300]])
    cos, sin = rope(pos, torch.float64)
    q, k = torch.randn(1, 3, 5, D, dtype=torch.float64), torch.randn(1, 2, 5, D, dtype=torch.float64)
    rq, rk = apply_rotary(q, k, cos, sin)
    angles = pos.double()[0, :, None] * torch.tensor([theta ** (-2 * j / D) for j in range(D // 2)],
                                                     dtype=torch.float64)
    torch.testing.assert_close(rq, _complex_rotate(q, angles), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(rk, _complex_rotate(k, angles), rtol=1e-5, atol=1e-5)


def test_interleaved_axes_follow_spec_rule():
    axes = mrope_axes((24, 20, 20), interleaved=True).tolist()
    for j in range(64):
        expected = 2 if (j % 3 == 2 and j < 60) else 1 if (j % 3 == 1 and j < 60) else 0
        assert axes[j] == expected, j
    assert axes.count(0) == 24 and axes.count(1) == 20 and axes.count(2) == 20


def test_contiguous_axes():
    assert mrope_axes((2, 1, 1), interleaved=False).tolist() == [0, 0, 1, 2]


@pytest.mark.parametrize("section", [(24, 20, 20), (2, 1, 1), (4, 2, 2)])
def test_tm_rope_angles_use_each_frequencys_axis(section):
    D, theta = 2 * sum(section), 1e6
    rope = RotaryEmbedding(D, theta, section, interleaved=True)
    pos = torch.stack([torch.tensor([[0.0, 3.0, 10.5]]), torch.tensor([[0.0, 7.0, 11.0]]),
                       torch.tensor([[0.0, 2.0, 12.0]])])  # [3, B=1, T=3], fractional T allowed
    cos, sin = rope(pos, torch.float32)
    inv = inverse_frequencies(D, theta).double()
    for t in range(3):
        for j in range(D // 2):
            axis = 2 if (j % 3 == 2 and j < 3 * section[2]) else 1 if (j % 3 == 1 and j < 3 * section[1]) else 0
            angle = float(pos[axis, 0, t]) * float(inv[j])
            for col in (j, j + D // 2):
                assert math.isclose(cos[0, t, col].item(), math.cos(angle), abs_tol=2e-6)
                assert math.isclose(sin[0, t, col].item(), math.sin(angle), abs_tol=2e-6)


def test_tm_rope_with_equal_axes_is_1d_rope():
    D = 16
    pos = torch.arange(9).view(1, 9)
    one_d = RotaryEmbedding(D, 1e6)(pos, torch.float32)
    three = RotaryEmbedding(D, 1e6, (4, 2, 2))(pos.expand(3, 1, 9), torch.float32)
    torch.testing.assert_close(three, one_d, rtol=0, atol=0)


def test_tables_cast_to_activation_dtype():
    cos, sin = RotaryEmbedding(8, 1e6, (2, 1, 1))(torch.zeros(3, 2, 4), torch.bfloat16)
    assert cos.dtype == sin.dtype == torch.bfloat16 and cos.shape == (2, 4, 8)
