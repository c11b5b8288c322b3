"""The Thinker: audio encoder + vision encoder + MoE text decoder (spec §2.1–2.3).

Module tree = checkpoint keys under `thinker.`:
    audio_tower.*   visual.*   model.embed_tokens   model.layers.{i}   model.norm   lm_head

Three pure steps, so the engine can batch and cache them separately:
    embed(input_ids, media...)            → (inputs_embeds [B,T,C], visual_mask [B,T] | None, deepstack)
    forward(inputs_embeds, positions ...) → (hidden [B,T,C] after the final norm, captured hidden | None)
    compute_logits(hidden)                → [.., vocab]
"""
from __future__ import annotations

import importlib
import logging
from typing import Any

import torch
from torch import nn

from omnistream.config import TextDecoderConfig, ThinkerConfig
from omnistream.errors import OmniInputError
from omnistream.nn.decoder_layer import DecoderLayer
from omnistream.nn.kv_cache import KVCache
from omnistream.nn.norm import RMSNorm
from omnistream.nn.rope import RotaryEmbedding

logger = logging.getLogger(__name__)


def optional_class(module: str, name: str) -> Any | None:
    """A model class from a sibling module that may not exist yet; a broken module still raises."""
    try:
        return getattr(importlib.import_module(module), name)
    except ModuleNotFoundError as e:
        if e.name != module:
            raise
        return None


class ThinkerTextModel(nn.Module):
    """`thinker.model`: token embedding, decoder layers, final norm."""

    def __init__(self, cfg: TextDecoderConfig) -> None:
        super().__init__()
        self.embed_tokens = nn.Embedding(cfg.vocab_size, cfg.hidden_size)
        self.layers = nn.ModuleList(DecoderLayer.from_config(cfg, i) for i in range(cfg.num_hidden_layers))
        self.norm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)


class Thinker(nn.Module):
    """Multimodal embedding + the MoE language model + lm_head."""

    def __init__(self, cfg: ThinkerConfig) -> None:
        super().__init__()
        self.config = cfg
        text = cfg.text_config
        audio_cls = optional_class("omnistream.models.audio_encoder", "AudioEncoder")
        vision_cls = optional_class("omnistream.models.vision_encoder", "VisionEncoder")
        # Until an encoder exists the thinker is text-only for that modality; the loader is told to skip it.
        self.audio_tower = audio_cls(cfg.audio_config) if audio_cls is not None else None
        self.visual = vision_cls(cfg.vision_config) if vision_cls is not None else None
        self.model = ThinkerTextModel(text)
        self.lm_head = nn.Linear(text.hidden_size, text.vocab_size, bias=False)
        if text.mrope_section is None:
            logger.warning("thinker text_config has no mrope_section: using 1-D rotary")
        self.rotary = RotaryEmbedding(text.head_dim, text.rope_theta, text.mrope_section, text.mrope_interleaved)

    def missing_components(self) -> list[str]:
        """Checkpoint prefixes (under `thinker.`) whose module is not available in this build."""
        return [name for name in ("audio_tower", "visual") if getattr(self, name) is None]

    # ---------------------------------------------------------------- embedding
    def embed(self, input_ids: torch.Tensor, input_features: torch.Tensor | None = None,
              feature_attention_mask: torch.Tensor | None = None, pixel_values: torch.Tensor | None = None,
              image_grid_thw: torch.Tensor | None = None, pixel_values_videos: torch.Tensor | None = None,
              video_grid_thw: torch.Tensor | None = None,
              ) -> tuple[torch.Tensor, torch.Tensor | None, list[torch.Tensor]]:
        """Token embeddings with encoder outputs scattered into the placeholders (audio, image, video; spec §2.1).

        input_ids [B, T]; input_features [n_audio, mel, F] with feature_attention_mask [n_audio, F];
        pixel_values [n_patches, patch_dim] with image_grid_thw [n_images, 3]; likewise for videos.
        Returns inputs_embeds [B, T, C], visual_mask [B, T] (image ∪ video positions, None without vision) and
        the deepstack features, one [n_visual, C] per tapped vision block, in sequence order.
        """
        cfg = self.config
        embeds = self.model.embed_tokens(input_ids)  # [B, T, C]
        if input_features is not None:
            embeds = self._scatter(embeds, input_ids == cfg.audio_token_id, self._audio(input_features,
                                   feature_attention_mask), "audio")
        visual_parts = []  # (mask [B, T], deepstack list) per visual modality, image first
        for name, pixels, grid, token in (("image", pixel_values, image_grid_thw, cfg.image_token_id),
                                          ("video", pixel_values_videos, video_grid_thw, cfg.video_token_id)):
            if pixels is None:
                continue
            if grid is None:
                raise OmniInputError(f"{name} pixels given without their grid_thw", param=f"{name}_grid_thw")
            if self.visual is None:
                raise OmniInputError("this build has no vision encoder", param=name)
            tokens, deepstack = self.visual(pixels.to(embeds.dtype), grid)
            mask = input_ids == token
            embeds = self._scatter(embeds, mask, tokens, name)
            visual_parts.append((mask, deepstack))
        if not visual_parts:
            return embeds, None, []
        visual_mask = visual_parts[0][0] if len(visual_parts) == 1 else visual_parts[0][0] | visual_parts[1][0]
        return embeds, visual_mask, _joint_deepstack(visual_mask, visual_parts)

    def _audio(self, input_features: torch.Tensor, feature_attention_mask: torch.Tensor | None) -> torch.Tensor:
        if self.audio_tower is None:
            raise OmniInputError("this build has no audio encoder", param="input_features")
        if feature_attention_mask is None:
            lens = torch.full((input_features.shape[0],), input_features.shape[-1], dtype=torch.long,
                              device=input_features.device)
        else:
            lens = feature_attention_mask.sum(-1).long()
        return self.audio_tower(input_features.to(self.model.embed_tokens.weight.dtype), lens)

    @staticmethod
    def _scatter(embeds: torch.Tensor, mask: torch.Tensor, features: torch.Tensor, name: str) -> torch.Tensor:
        """Write features [n, C] into the n masked positions, row-major (= the reference's masked_scatter)."""
        n_slots, n_feats = int(mask.sum()), features.shape[0]  # host sync: prefill only
        if n_slots != n_feats:
            raise OmniInputError(f"{name}: the prompt has {n_slots} placeholder tokens but the encoder produced "
                                 f"{n_feats} features", param=name)
        return embeds.masked_scatter(mask.unsqueeze(-1), features.to(embeds.dtype))

    # ---------------------------------------------------------------- decoder
    def rotary_tables(self, position_ids: torch.Tensor, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
        """position_ids [3, B, T] (TM-RoPE, float allowed) or [B, T] → cos, sin [B, T, D]."""
        if position_ids.ndim == 2 and self.rotary.mrope_section is not None:
            position_ids = position_ids.unsqueeze(0).expand(3, -1, -1)
        return self.rotary(position_ids, dtype)

    def forward(self, inputs_embeds: torch.Tensor, position_ids: torch.Tensor | None = None, *,
                rotary: tuple[torch.Tensor, torch.Tensor] | None = None, cache: KVCache | None = None,
                slots: torch.Tensor | None = None, cache_positions: torch.Tensor | None = None,
                kv_len: int | None = None, visual_mask: torch.Tensor | None = None,
                deepstack: list[torch.Tensor] | None = None, capture_hidden_layer: int | None = None,
                ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Run the decoder. Give `position_ids` ([3, B, T] or [B, T]) or precomputed `rotary` (cos, sin).

        Deepstack feature k is added at `visual_mask` positions after decoder layer k. `capture_hidden_layer`
        = 0 returns inputs_embeds, = k ≥ 1 the output of decoder layer k−1 before any deepstack addition
        (the reference's hidden_states[k]; the talker takes k = accept_hidden_layer, spec §1.1).
        Returns (hidden after the final norm [B, T, C], captured [B, T, C] or None).
        """
        if rotary is None:
            if position_ids is None:
                raise ValueError("give position_ids or rotary")
            rotary = self.rotary_tables(position_ids, inputs_embeds.dtype)
        cos, sin = rotary
        deepstack = deepstack or []
        if deepstack and visual_mask is None:
            raise ValueError("deepstack features need visual_mask")
        hidden = inputs_embeds
        captured = inputs_embeds if capture_hidden_layer == 0 else None
        for i, layer in enumerate(self.model.layers):
            hidden = layer(hidden, cos, sin, cache.layer(i) if cache is not None else None, slots,
                           cache_positions, kv_len)
            if capture_hidden_layer == i + 1:
                captured = hidden
            if i < len(deepstack):
                hidden = hidden.masked_scatter(visual_mask.unsqueeze(-1),
                                               hidden[visual_mask] + deepstack[i].to(hidden.dtype))
        return self.model.norm(hidden), captured

    def compute_logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """[.., C] → [.., vocab] logits."""
        return self.lm_head(hidden)

    def new_cache(self, num_slots: int, max_len: int, dtype: torch.dtype | None = None,
                  device: torch.device | str | None = None) -> KVCache:
        """A KV cache sized for this decoder."""
        return KVCache.for_decoder(self.config.text_config, num_slots, max_len, self.lm_head.weight, dtype, device)


def _joint_deepstack(visual_mask: torch.Tensor,
                     parts: list[tuple[torch.Tensor, list[torch.Tensor]]]) -> list[torch.Tensor]:
    """Merge image and video deepstack features into visual-position order (image and video interleave)."""
    if len(parts) == 1:
        return list(parts[0][1])
    (image_mask, image_ds), (video_mask, video_ds) = parts
    in_image, in_video = image_mask[visual_mask], video_mask[visual_mask]  # [n_visual] each
    joint = []
    for img, vid in zip(image_ds, video_ds):
        merged = img.new_zeros(in_image.shape[0], img.shape[-1])
        merged[in_image] = img
        merged[in_video] = vid.to(img.dtype)
        joint.append(merged)
    return joint
