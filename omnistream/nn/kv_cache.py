"""Preallocated key/value cache: one [num_slots, kv_heads, max_len, head_dim] pair per layer.

A *slot* is one sequence's row of the cache; a continuous-batching engine hands each request a slot and
passes `slots` + `cache_positions` to the attention layers. The cache itself keeps no lengths — the
engine does the accounting (house style: the cache manager keeps accounts, runners own tensors).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class LayerKVCache:
    """One layer's keys and values, each [num_slots, kv_heads, max_len, head_dim]."""
    k: torch.Tensor
    v: torch.Tensor

    @property
    def max_len(self) -> int:
        return self.k.shape[2]

    @property
    def num_slots(self) -> int:
        return self.k.shape[0]


class KVCache:
    """All layers' caches, allocated once (zeros, so unwritten entries are finite)."""

    def __init__(self, num_layers: int, num_slots: int, kv_heads: int, max_len: int, head_dim: int,
                 dtype: torch.dtype = torch.float32, device: torch.device | str | None = None) -> None:
        shape = (num_slots, kv_heads, max_len, head_dim)
        self.layers = [LayerKVCache(torch.zeros(shape, dtype=dtype, device=device),
                                    torch.zeros(shape, dtype=dtype, device=device))
                       for _ in range(num_layers)]
        self.num_slots = num_slots
        self.max_len = max_len

    @classmethod
    def for_decoder(cls, cfg, num_slots: int, max_len: int, like: torch.Tensor,
                    dtype: torch.dtype | None = None, device: torch.device | str | None = None) -> KVCache:
        """A cache sized for a decoder config (num_hidden_layers, num_key_value_heads, head_dim); dtype and
        device default to those of `like` (one of the decoder's weights)."""
        return cls(cfg.num_hidden_layers, num_slots, cfg.num_key_value_heads, max_len, cfg.head_dim,
                   dtype or like.dtype, device or like.device)

    def layer(self, index: int) -> LayerKVCache:
        return self.layers[index]

    def __len__(self) -> int:
        return len(self.layers)

    def nbytes(self) -> int:
        return sum(c.k.nbytes + c.v.nbytes for c in self.layers)
