"""Attention against a naive float64 formula, plus the KV-cache contract (slots, ragged positions, window)."""
import math

import pytest
import torch

from omnistream.nn.attention import Attention
from omnistream.nn.kv_cache import KVCache
from omnistream.nn.rope import RotaryEmbedding


def _rms(x, w, eps):
    return w * x / torch.sqrt((x * x).mean(-1, keepdim=True) + eps)


def naive_attention(attn: Attention, x: torch.Tensor, pos: torch.Tensor, theta: float) -> torch.Tensor:
    """Loop-by-loop float64 attention: per head, per query, softmax over allowed keys (rotary as complex)."""
    B, T, _ = x.shape
    H, G, D = attn.num_heads, attn.num_kv_heads, attn.head_dim
    p = {n: t.double() for n, t in attn.state_dict().items()}
    x = x.double()
    q = (x @ p["q_proj.weight"].T).view(B, T, H, D)
    k = (x @ p["k_proj.weight"].T).view(B, T, G, D)
    v = (x @ p["v_proj.weight"].T).view(B, T, G, D)
    if attn.q_norm is not None:
        q, k = _rms(q, p["q_norm.weight"], attn.q_norm.eps), _rms(k, p["k_norm.weight"], attn.k_norm.eps)
    inv = torch.tensor([theta ** (-2 * j / D) for j in range(D // 2)], dtype=torch.float64)

    def rot(t, position):
        z = torch.complex(t[..., :D // 2], t[..., D // 2:]) * torch.polar(torch.ones(D // 2, dtype=torch.float64),
                                                                         position * inv)
        return torch.cat((z.real, z.imag), -1)

    out = torch.zeros(B, T, H, D, dtype=torch.float64)
    for b in range(B):
        for h in range(H):
            g = h // (H // G)
            for i in range(T):
                qi = rot(q[b, i, h], float(pos[b, i]))
                keys = [j for j in range(T) if pos[b, j] <= pos[b, i]
                        and (attn.sliding_window is None or pos[b, j] > pos[b, i] - attn.sliding_window)]
                scores = torch.stack([qi @ rot(k[b, j, g], float(pos[b, j])) for j in keys]) / math.sqrt(D)
                w = torch.softmax(scores, 0)
                out[b, i, h] = sum(w[n] * v[b, j, g] for n, j in enumerate(keys))
    return out.reshape(B, T, H * D) @ p["o_proj.weight"].T


def _make(qk_norm=True, window=None, heads=4, kv=2, D=8, C=20):
    attn = Attention(C, heads, kv, D, qk_norm=qk_norm, sliding_window=window)
    if qk_norm:
        with torch.no_grad():
            attn.q_norm.weight.uniform_(0.5, 1.5)
            attn.k_norm.weight.uniform_(0.5, 1.5)
    return attn.eval()


@pytest.mark.parametrize("qk_norm,window,heads,kv", [(True, None, 4, 2), (False, 3, 2, 2), (True, None, 6, 1)])
def test_uncached_matches_naive(qk_norm, window, heads, kv):
    attn, theta = _make(qk_norm, window, heads, kv), 1e4
    x = torch.randn(2, 7, 20)
    pos = torch.arange(7).expand(2, 7)
    cos, sin = RotaryEmbedding(attn.head_dim, theta)(pos, torch.float32)
    with torch.no_grad():
        out = attn(x, cos, sin)
    torch.testing.assert_close(out.double(), naive_attention(attn, x, pos, theta), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("window", [None, 3])
def test_cached_step_by_step_equals_uncached(window):
    attn, T = _make(window=window), 9
    rope = RotaryEmbedding(attn.head_dim, 1e6)
    x = torch.randn(1, T, 20)
    cos, sin = rope(torch.arange(T)[None], torch.float32)
    cache = KVCache(1, num_slots=3, kv_heads=2, max_len=16, head_dim=8).layer(0)
    slot = torch.tensor([2])
    with torch.no_grad():
        full = attn(x, cos, sin)
        # prefill 4 tokens, then one at a time
        parts = [attn(x[:, :4], cos[:, :4], sin[:, :4], cache, slot, torch.arange(4)[None])]
        for t in range(4, T):
            parts.append(attn(x[:, t:t + 1], cos[:, t:t + 1], sin[:, t:t + 1], cache, slot, torch.tensor([[t]]),
                              kv_len=t + 1 if t % 2 else None))
    torch.testing.assert_close(torch.cat(parts, 1), full, rtol=1e-5, atol=1e-5)
    assert cache.k[:2].abs().sum() == 0, "other slots must not be written"


def test_ragged_batch_decode_equals_each_row_alone():
    """Two rows at different lengths in one decode batch, in non-adjacent slots."""
    attn = _make()
    rope = RotaryEmbedding(8, 1e6)
    lengths, slots = [5, 3], torch.tensor([3, 0])
    seqs = [torch.randn(1, n + 1, 20) for n in lengths]
    cache = KVCache(1, 4, 2, 12, 8).layer(0)
    with torch.no_grad():
        alone = []
        for s in seqs:
            cos, sin = rope(torch.arange(s.shape[1])[None], torch.float32)
            alone.append(attn(s, cos, sin)[:, -1])
        for s, n, slot in zip(seqs, lengths, slots):  # prefill each row in its slot
            cos, sin = rope(torch.arange(n)[None], torch.float32)
            attn(s[:, :n], cos, sin, cache, slot[None], torch.arange(n)[None])
        step = torch.cat([s[:, -1:] for s in seqs])  # [2, 1, C]
        pos = torch.tensor([[n] for n in lengths])
        cos, sin = rope(pos, torch.float32)
        batched = attn(step, cos, sin, cache, slots, pos)
    torch.testing.assert_close(batched[:, 0], torch.cat(alone), rtol=1e-5, atol=1e-5)
