"""The pre-norm decoder layer shared by the thinker, the talker and the code predictor (spec §2.1, §2.4, §2.5).

    h = x + self_attn(input_layernorm(x))
    y = h + mlp(post_attention_layernorm(h))        mlp = SparseMoe or SwiGLU

Checkpoint names: input_layernorm, self_attn.{q,k,v,o}_proj, self_attn.{q,k}_norm, post_attention_layernorm,
mlp.* (see nn/moe.py and nn/mlp.py). Code2wav's layer adds layer scales and lives with code2wav.
"""
from __future__ import annotations

from typing import Any

import torch
from torch import nn

from omnistream.nn.attention import Attention
from omnistream.nn.kv_cache import LayerKVCache
from omnistream.nn.mlp import SwiGLU
from omnistream.nn.moe import SparseMoe
from omnistream.nn.norm import RMSNorm


class DecoderLayer(nn.Module):
    """Attention + (MoE or dense) MLP, each behind an RMSNorm and a residual."""

    def __init__(self, hidden_size: int, attention: Attention, mlp: nn.Module, rms_norm_eps: float) -> None:
        super().__init__()
        self.input_layernorm = RMSNorm(hidden_size, rms_norm_eps)
        self.self_attn = attention
        self.post_attention_layernorm = RMSNorm(hidden_size, rms_norm_eps)
        self.mlp = mlp

    @classmethod
    def from_config(cls, cfg: Any, layer_index: int) -> DecoderLayer:
        """Build from a TextDecoderConfig (MoE per `is_moe_layer`) or a CodePredictorConfig (always dense)."""
        attention = Attention(cfg.hidden_size, cfg.num_attention_heads, cfg.num_key_value_heads, cfg.head_dim,
                              qk_norm=True, rms_norm_eps=cfg.rms_norm_eps, bias=cfg.attention_bias)
        mlp: nn.Module
        if hasattr(cfg, "is_moe_layer") and cfg.num_experts > 0 and cfg.is_moe_layer(layer_index):
            mlp = SparseMoe(cfg.hidden_size, cfg.moe_intermediate_size, cfg.num_experts, cfg.num_experts_per_tok,
                            cfg.norm_topk_prob, cfg.shared_expert_intermediate_size)
        else:
            mlp = SwiGLU(cfg.hidden_size, cfg.intermediate_size)
        return cls(cfg.hidden_size, attention, mlp, cfg.rms_norm_eps)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, cache: LayerKVCache | None = None,
                slots: torch.Tensor | None = None, cache_positions: torch.Tensor | None = None,
                kv_len: int | None = None) -> torch.Tensor:
        """x [B, T, C] → [B, T, C]; cache arguments as in Attention.forward."""
        h = x + self.self_attn(self.input_layernorm(x), cos, sin, cache, slots, cache_positions, kv_len)
        return h + self.mlp(self.post_attention_layernorm(h))
