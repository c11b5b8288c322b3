"""The code predictor (MTP): fills the residual codebooks 1..Q−1 of one codec frame (qwen3-omni-spec §2.5).

Module tree = checkpoint keys under `talker.code_predictor.`:
    model.layers.{i}   model.norm   model.codec_embedding.{0..Q−2}   lm_head.{0..Q−2}
`model.codec_embedding[i]` embeds codebook i+1 and `lm_head[i]` predicts codebook i+1.

Per frame, after the talker chose code 0 at a step whose final-norm hidden state is h:

    position 0: h                                  position 1: talker.codec_embedding(c0)
    c1 = sample(lm_head[0](CP(positions 0..1)[-1]))
    position q (q = 2..Q−1): model.codec_embedding[q−2](c_{q−1});  c_q = sample(lm_head[q−1](CP(...)[-1]))

A dense decoder (QK-norm, SwiGLU) with plain 1-D RoPE over positions 0..Q−1; each frame starts from an
empty cache, so a fixed cache of Q positions per row serves every frame (it is overwritten from position 0).
Numerics as the reference: RMSNorm statistics in fp32, cos/sin built in fp32 and cast.
"""
from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from omnistream.config import CodePredictorConfig
from omnistream.nn.decoder_layer import DecoderLayer
from omnistream.nn.kv_cache import KVCache
from omnistream.nn.norm import RMSNorm
from omnistream.nn.rope import RotaryEmbedding

# sample_fn(logits [B, V], step) -> codes [B]; `step` is the lm_head index (0 predicts codebook 1).
SampleFn = Callable[[torch.Tensor, int], torch.Tensor]


def greedy(logits: torch.Tensor, step: int) -> torch.Tensor:
    """The default sample_fn: argmax over the codebook."""
    return logits.argmax(dim=-1)


class CodePredictorModel(nn.Module):
    """`code_predictor.model`: decoder layers, final norm, the residual-codebook embeddings."""

    def __init__(self, cfg: CodePredictorConfig) -> None:
        super().__init__()
        self.layers = nn.ModuleList(DecoderLayer.from_config(cfg, i) for i in range(cfg.num_hidden_layers))
        self.norm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
        self.codec_embedding = nn.ModuleList(
            nn.Embedding(cfg.vocab_size, cfg.hidden_size) for _ in range(cfg.num_code_groups - 1))


class CodePredictor(nn.Module):
    """Dense decoder + one embedding and one head per residual codebook."""

    def __init__(self, cfg: CodePredictorConfig) -> None:
        super().__init__()
        self.config = cfg
        self.model = CodePredictorModel(cfg)
        self.lm_head = nn.ModuleList(
            nn.Linear(cfg.hidden_size, cfg.vocab_size, bias=False) for _ in range(cfg.num_code_groups - 1))
        self.rotary = RotaryEmbedding(cfg.head_dim, cfg.rope_theta)
        self._rotary_tables: dict[tuple[torch.device, torch.dtype], tuple[torch.Tensor, torch.Tensor]] = {}

    @property
    def num_residual(self) -> int:
        """Codebooks this module predicts per frame (Q − 1 = 15 for the real model)."""
        return self.config.num_code_groups - 1

    def forward(self, inputs_embeds: torch.Tensor, positions: torch.Tensor, cache: KVCache | None = None,
                slots: torch.Tensor | None = None, kv_len: int | None = None) -> torch.Tensor:
        """inputs_embeds [B, T, C] at positions [B, T] → final-norm hidden [B, T, C].

        With a cache, positions double as cache rows (each frame restarts at 0).
        """
        cos, sin = self._cos_sin(positions, inputs_embeds.dtype)
        hidden = inputs_embeds
        for i, layer in enumerate(self.model.layers):
            hidden = layer(hidden, cos, sin, cache.layer(i) if cache is not None else None, slots,
                           positions if cache is not None else None, kv_len)
        return self.model.norm(hidden)

    def _cos_sin(self, positions: torch.Tensor, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
        """cos/sin [B, T, D] of positions, which here are always 0..Q−1: rows of one table per device and
        dtype, built by the same rotary (same values), instead of ~8 small ops in each of a frame's 15 steps."""
        if torch.compiler.is_compiling():
            return self.rotary(positions, dtype)
        key = (positions.device, dtype)
        if key not in self._rotary_tables:
            every = torch.arange(self.config.num_code_groups, device=positions.device)[None]
            cos, sin = self.rotary(every, dtype)
            self._rotary_tables[key] = (cos[0], sin[0])
        cos, sin = self._rotary_tables[key]
        return cos[positions], sin[positions]

    def compute_logits(self, hidden: torch.Tensor, step: int) -> torch.Tensor:
        """hidden [.., C] → logits [.., V] of lm_head[step] (codebook step + 1)."""
        return self.lm_head[step](hidden)

    def embed_code(self, codes: torch.Tensor, codebook: int) -> torch.Tensor:
        """codes [..] of residual codebook `codebook` (1..Q−1) → embeddings [.., C]."""
        return self.model.codec_embedding[codebook - 1](codes)

    def new_cache(self, num_slots: int, dtype: torch.dtype | None = None,
                  device: torch.device | str | None = None) -> KVCache:
        """A fixed cache of Q positions per slot: enough for one frame, reused for every frame."""
        cfg = self.config
        weight = self.lm_head[0].weight
        return KVCache(cfg.num_hidden_layers, num_slots, cfg.num_key_value_heads, cfg.num_code_groups,
                       cfg.head_dim, dtype or weight.dtype, device or weight.device)

    @torch.no_grad()
    def predict_frame(self, talker_hidden: torch.Tensor, code0_embed: torch.Tensor,
                      sample_fn: SampleFn = greedy, cache: KVCache | None = None) -> torch.Tensor:
        """Residual codes of one frame for B rows: talker_hidden, code0_embed [B, C] → codes [B, Q−1].

        `talker_hidden` is the talker's final-norm hidden state at the step that produced code 0, and
        `code0_embed` = talker.model.codec_embedding(code 0). `cache` (from `new_cache(B)`) may be reused
        across frames to avoid allocation; rows are cache slots 0..B−1.
        """
        B = talker_hidden.shape[0]
        cache = cache if cache is not None else self.new_cache(B, talker_hidden.dtype, talker_hidden.device)
        seq = torch.stack([talker_hidden, code0_embed.to(talker_hidden.dtype)], dim=1)  # [B, 2, C]
        positions = torch.arange(2, device=seq.device).expand(B, 2)
        hidden = self(seq, positions, cache, kv_len=2)[:, -1]  # [B, C]
        codes = [sample_fn(self.compute_logits(hidden, 0), 0)]
        for step in range(1, self.num_residual):
            embed = self.embed_code(codes[-1], step).unsqueeze(1)  # [B, 1, C]: codebook `step`
            position = torch.full((B, 1), step + 1, device=seq.device)
            hidden = self(embed, position, cache, kv_len=step + 2)[:, -1]
            codes.append(sample_fn(self.compute_logits(hidden, step), step))
        return torch.stack(codes, dim=1)
