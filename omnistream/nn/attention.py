"""Causal grouped-query self-attention with optional QK-norm, sliding window and a slot-based KV cache.

Used by the thinker and talker decoders (QK-norm, spec §2.1/§2.4), the code predictor (QK-norm, §2.5) and
code2wav's pre-transformer (no QK-norm, sliding window 72, §2.6). Checkpoint names: q_proj, k_proj,
v_proj, o_proj, q_norm, k_norm.

Engine contract. Without a cache the layer is plain causal attention over `x`. With a cache, each row b of
the batch belongs to cache slot `slots[b]`; the layer first writes this step's keys/values at
(slots[b], cache_positions[b, t]) and then lets query t attend to that slot's keys at index
j ≤ cache_positions[b, t] (and j > cache_positions[b, t] − window with a sliding window). Rows may sit at
different lengths in one batch. Nothing here syncs with the host. Slots are kept apart: a row only ever
reads its own slot.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from omnistream.nn.kv_cache import LayerKVCache
from omnistream.nn.norm import RMSNorm
from omnistream.nn.rope import apply_rotary


class Attention(nn.Module):
    """GQA attention: num_heads query heads share num_kv_heads key/value heads."""

    def __init__(self, hidden_size: int, num_heads: int, num_kv_heads: int, head_dim: int, *,
                 qk_norm: bool = True, rms_norm_eps: float = 1e-6, bias: bool = False,
                 sliding_window: int | None = None) -> None:
        super().__init__()
        if num_heads % num_kv_heads:
            raise ValueError(f"{num_heads} heads are not a multiple of {num_kv_heads} kv heads")
        self.num_heads, self.num_kv_heads, self.head_dim = num_heads, num_kv_heads, head_dim
        self.sliding_window = sliding_window
        self.q_proj = nn.Linear(hidden_size, num_heads * head_dim, bias=bias)
        self.k_proj = nn.Linear(hidden_size, num_kv_heads * head_dim, bias=bias)
        self.v_proj = nn.Linear(hidden_size, num_kv_heads * head_dim, bias=bias)
        self.o_proj = nn.Linear(num_heads * head_dim, hidden_size, bias=bias)
        # QK-norm acts per head, over head_dim, before the rotary (spec §2.1).
        self.q_norm = RMSNorm(head_dim, rms_norm_eps) if qk_norm else None
        self.k_norm = RMSNorm(head_dim, rms_norm_eps) if qk_norm else None

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor,
                cache: LayerKVCache | None = None, slots: torch.Tensor | None = None,
                cache_positions: torch.Tensor | None = None, kv_len: int | None = None) -> torch.Tensor:
        """x [B, T, C], cos/sin [B, T, D]; slots [B] and cache_positions [B, T] with a cache → [B, T, C].

        `kv_len` (optional, a host int) limits attention to the first kv_len cache entries; it must exceed
        every cache position in the batch. It only saves work at decode — results are the same.
        """
        B, T, _ = x.shape
        q = self.q_proj(x).view(B, T, self.num_heads, self.head_dim)
        k = self.k_proj(x).view(B, T, self.num_kv_heads, self.head_dim)
        v = self.v_proj(x).view(B, T, self.num_kv_heads, self.head_dim)
        if self.q_norm is not None:
            q, k = self.q_norm(q), self.k_norm(k)
        q, k, v = q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)  # [B, H, T, D]
        q, k = apply_rotary(q, k, cos, sin)

        if cache is None:
            out = self._attend_uncached(q, k, v)
        else:
            if cache_positions is None:
                raise ValueError("cache_positions is required when a cache is given")
            out = self._attend_cached(q, k, v, cache, slots, cache_positions, kv_len)
        return self.o_proj(out.transpose(1, 2).reshape(B, T, self.num_heads * self.head_dim))

    def _attend_uncached(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        gqa = self.num_heads != self.num_kv_heads
        if self.sliding_window is None:
            return F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=gqa)
        idx = torch.arange(q.shape[2], device=q.device)
        return F.scaled_dot_product_attention(q, k, v, attn_mask=_window_mask(idx[:, None], idx, self.sliding_window),
                                              enable_gqa=gqa)

    def _attend_cached(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, cache: LayerKVCache,
                       slots: torch.Tensor | None, cache_positions: torch.Tensor,
                       kv_len: int | None) -> torch.Tensor:
        B = q.shape[0]
        rows = slots if slots is not None else torch.arange(B, device=q.device)
        # Advanced indices around a slice put the indexed dims first: [B, T, G, D].
        cache.k[rows[:, None], :, cache_positions] = k.transpose(1, 2)
        cache.v[rows[:, None], :, cache_positions] = v.transpose(1, 2)
        length = cache.max_len if kv_len is None else kv_len
        if slots is None:  # row b is slot b: read a view, no gather
            keys, values = cache.k[:B, :, :length], cache.v[:B, :, :length]
        else:
            keys, values = cache.k[slots, :, :length], cache.v[slots, :, :length]  # [B, G, L, D]
        key_index = torch.arange(length, device=q.device)
        mask = _window_mask(cache_positions[:, :, None], key_index, self.sliding_window)  # [B, T, L]
        return F.scaled_dot_product_attention(q, keys, values, attn_mask=mask[:, None],
                                              enable_gqa=self.num_heads != self.num_kv_heads)


def _window_mask(query_pos: torch.Tensor, key_index: torch.Tensor, window: int | None) -> torch.Tensor:
    """True where a key may be seen: key ≤ query, and key > query − window when windowed."""
    allowed = key_index <= query_pos
    if window is not None:
        allowed = allowed & (key_index > query_pos - window)
    return allowed
