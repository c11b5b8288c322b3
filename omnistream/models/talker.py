"""The Talker: an MoE decoder over codec frames, fed by the thinker, emitting codebook 0 (qwen3-omni-spec §2.4, §1.1).

Module tree = checkpoint keys under `talker.`:
    text_projection.linear_fc{1,2}     hidden_projection.linear_fc{1,2}     (ResizeMLP: fc1 → SiLU → fc2)
    model.codec_embedding   model.layers.{i}   model.norm   codec_head   code_predictor.*

Pure steps for the engine:
    project_text(E) / project_hidden(H)           thinker states → talker width (prompt and text track)
    forward(inputs_embeds, position_ids | rotary)  → final-norm hidden [B, T, C] (the code predictor's input)
    compute_logits(hidden)                         → codec logits [.., vocab] (codebook 0 + special ids)
    frame_embedding(codes [B, Q])                  → the next step's codec input (16 embeddings summed)
The decode input of step k is frame_embedding(frame k−1) + text track k (trailing text, else tts_pad);
`build_talker_prompt` builds the prefill from the thinker's states (spec §1.1).

Every talker layer is MoE with a sigmoid-gated shared expert: the reference's talker layer replaces its
MLP with the shared-expert MoE unconditionally (mlp_only_layers / decoder_sparse_step are not consulted).
Numerics as the thinker: RMSNorm in fp32, TM-RoPE tables in fp32 cast to the activation dtype, router
softmax in fp32.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from omnistream.config import OmniConfig, TalkerConfig, TextDecoderConfig
from omnistream.errors import OmniInputError, RequestError
from omnistream.models.code_predictor import CodePredictor
from omnistream.nn.attention import Attention
from omnistream.nn.decoder_layer import DecoderLayer
from omnistream.nn.kv_cache import KVCache
from omnistream.nn.moe import SparseMoe
from omnistream.nn.norm import RMSNorm
from omnistream.nn.rope import RotaryEmbedding


class ResizeMLP(nn.Module):
    """Thinker width → talker width: linear_fc2(SiLU(linear_fc1(x))), both with bias."""

    def __init__(self, in_size: int, hidden_size: int, out_size: int) -> None:
        super().__init__()
        self.linear_fc1 = nn.Linear(in_size, hidden_size, bias=True)
        self.linear_fc2 = nn.Linear(hidden_size, out_size, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear_fc2(F.silu(self.linear_fc1(x)))


def _talker_layer(cfg: TextDecoderConfig) -> DecoderLayer:
    attention = Attention(cfg.hidden_size, cfg.num_attention_heads, cfg.num_key_value_heads, cfg.head_dim,
                          qk_norm=True, rms_norm_eps=cfg.rms_norm_eps, bias=cfg.attention_bias)
    moe = SparseMoe(cfg.hidden_size, cfg.moe_intermediate_size, cfg.num_experts, cfg.num_experts_per_tok,
                    cfg.norm_topk_prob, cfg.shared_expert_intermediate_size)
    return DecoderLayer(cfg.hidden_size, attention, moe, cfg.rms_norm_eps)


class TalkerModel(nn.Module):
    """`talker.model`: codec embedding, MoE decoder layers, final norm."""

    def __init__(self, cfg: TextDecoderConfig) -> None:
        super().__init__()
        self.codec_embedding = nn.Embedding(cfg.vocab_size, cfg.hidden_size)
        self.layers = nn.ModuleList(_talker_layer(cfg) for _ in range(cfg.num_hidden_layers))
        self.norm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)


class Talker(nn.Module):
    """Projections from the thinker, the MoE codec decoder, codec_head and the code predictor."""

    def __init__(self, cfg: TalkerConfig) -> None:
        super().__init__()
        self.config = cfg
        text = cfg.text_config
        # The ResizeMLPs' inner width is the talker text_config's intermediate_size (2048, spec §2.4).
        self.text_projection = ResizeMLP(cfg.thinker_hidden_size, text.intermediate_size, text.hidden_size)
        self.hidden_projection = ResizeMLP(cfg.thinker_hidden_size, text.intermediate_size, text.hidden_size)
        self.model = TalkerModel(text)
        self.codec_head = nn.Linear(text.hidden_size, text.vocab_size, bias=False)  # not tied (spec §7.2-3)
        self.code_predictor = CodePredictor(cfg.code_predictor_config)
        self.rotary = RotaryEmbedding(text.head_dim, text.rope_theta, text.mrope_section, text.mrope_interleaved)

    # ---------------------------------------------------------------- inputs
    def project_text(self, thinker_embeds: torch.Tensor) -> torch.Tensor:
        """Thinker layer-0 embeddings E [.., D] → [.., C] (text positions and the text track)."""
        return self.text_projection(thinker_embeds)

    def project_hidden(self, thinker_hidden: torch.Tensor) -> torch.Tensor:
        """Thinker accept-layer hidden states H [.., D] → [.., C] (user-turn audio/image/video positions)."""
        return self.hidden_projection(thinker_hidden)

    def frame_embedding(self, codes: torch.Tensor) -> torch.Tensor:
        """codes [B, Q] of one frame → Σ of its Q codebook embeddings [B, C] (spec §2.4).

        Code 0 through the talker's codec_embedding, code q ≥ 1 through code_predictor.model.codec_embedding[q−1];
        summed over a stacked dimension as the reference does, so the rounding matches.
        """
        parts = [self.model.codec_embedding(codes[:, 0])]
        parts += [self.code_predictor.embed_code(codes[:, q], q) for q in range(1, codes.shape[1])]
        return torch.stack(parts, dim=1).sum(dim=1)

    # ---------------------------------------------------------------- decoder
    def rotary_tables(self, position_ids: torch.Tensor, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
        """position_ids [3, B, T] (TM-RoPE, float allowed) or [B, T] (same id on all axes) → cos, sin [B, T, D]."""
        if position_ids.ndim == 2 and self.rotary.mrope_section is not None:
            position_ids = position_ids.unsqueeze(0).expand(3, -1, -1)
        return self.rotary(position_ids, dtype)

    def forward(self, inputs_embeds: torch.Tensor, position_ids: torch.Tensor | None = None, *,
                rotary: tuple[torch.Tensor, torch.Tensor] | None = None, cache: KVCache | None = None,
                slots: torch.Tensor | None = None, cache_positions: torch.Tensor | None = None,
                kv_len: int | None = None) -> torch.Tensor:
        """inputs_embeds [B, T, C] with position_ids ([3, B, T] or [B, T]) or precomputed rotary (cos, sin)
        → hidden after the final norm [B, T, C]. Cache arguments as in nn.attention.Attention.forward."""
        if rotary is None:
            if position_ids is None:
                raise ValueError("give position_ids or rotary")
            rotary = self.rotary_tables(position_ids, inputs_embeds.dtype)
        cos, sin = rotary
        hidden = inputs_embeds
        for i, layer in enumerate(self.model.layers):
            hidden = layer(hidden, cos, sin, cache.layer(i) if cache is not None else None, slots,
                           cache_positions, kv_len)
        return self.model.norm(hidden)

    def compute_logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """[.., C] → codec logits [.., vocab]."""
        return self.codec_head(hidden)

    def new_cache(self, num_slots: int, max_len: int, dtype: torch.dtype | None = None,
                  device: torch.device | str | None = None) -> KVCache:
        """A KV cache sized for the talker decoder."""
        return KVCache.for_decoder(self.config.text_config, num_slots, max_len, self.codec_head.weight, dtype, device)


# ------------------------------------------------------------------------------------- prompt (spec §1.1)
@dataclass(frozen=True)
class TalkerPromptIds:
    """The ids the talker prompt is assembled from, all read from config.json."""
    im_start: int
    user: int
    assistant: int
    multimodal: tuple[int, ...]  # audio / image / video placeholder ids: these take hidden_projection(H)
    tts_pad: int                 # the talker's position-id token for the 9 header positions
    codec_nothink: int
    codec_think_bos: int
    codec_think_eos: int
    codec_pad: int
    codec_bos: int
    speakers: dict[str, int]

    @classmethod
    def from_config(cls, cfg: OmniConfig) -> TalkerPromptIds:
        if cfg.talker_config is None:
            raise OmniInputError("this checkpoint has no talker (enable_audio_output is false)", param="talker_config")
        talker, thinker = cfg.talker_config, cfg.thinker_config
        return cls(cfg.im_start_token_id, cfg.user_token_id, cfg.assistant_token_id,
                   (thinker.audio_token_id, thinker.image_token_id, thinker.video_token_id), cfg.tts_pad_token_id,
                   talker.codec_nothink_id, talker.codec_think_bos_id, talker.codec_think_eos_id,
                   talker.codec_pad_id, talker.codec_bos_id, dict(talker.speaker_id))

    def speaker_id(self, speaker: str) -> int:
        """Codec id of a voice, case-insensitive as the reference (`speaker.lower()`)."""
        try:
            return self.speakers[speaker.lower()]
        except KeyError:
            raise RequestError(f"unknown speaker {speaker!r}; this checkpoint has {sorted(self.speakers)}",
                               param="speaker") from None


@dataclass(frozen=True)
class TalkerPrompt:
    """The talker's prefill and what its decode steps need from the prompt."""
    inputs_embeds: torch.Tensor   # [T', C]: user turns, then the 9-position assistant header
    input_ids: torch.Tensor       # [T']: thinker ids of the user turns, then tts_pad × 9 (for TM-RoPE positions)
    user_positions: torch.Tensor  # [T' − 9]: where the user-turn tokens sit in the thinker prompt
    trailing_text: torch.Tensor   # [N, C]: text track already known (prompt tokens after the header; usually N = 0)
    tts_pad_embed: torch.Tensor   # [C]: text track once the text has run out
    tts_eos_embed: torch.Tensor   # [C]: text track right after the last text token, once


def user_turn_positions(input_ids: torch.Tensor, ids: TalkerPromptIds) -> torch.Tensor:
    """Indices of tokens in user turns: those whose nearest `<|im_start|>` at or before them is followed by
    `user` — the whole `<|im_start|>user … <|im_end|>\n` segment (tokens before any `<|im_start|>` are judged
    by the token at index 1, as the reference does). System and assistant turns are dropped."""
    T = input_ids.shape[0]
    index = torch.arange(T, device=input_ids.device)
    starts = torch.where(input_ids == ids.im_start, index, torch.full_like(index, -1))
    previous_start = torch.cummax(starts, dim=0).values.clamp_min(0)
    role = input_ids[(previous_start + 1).clamp_max(T - 1)]
    return index[role == ids.user]


def _assistant_start(input_ids: torch.Tensor, ids: TalkerPromptIds) -> int:
    hits = ((input_ids[:-1] == ids.im_start) & (input_ids[1:] == ids.assistant)).nonzero().flatten()
    if hits.numel() == 0:
        raise OmniInputError("the prompt has no '<|im_start|>assistant' turn for the talker to answer in",
                             param="input_ids")
    return int(hits[-1])


def build_talker_prompt(talker: Talker, input_ids: torch.Tensor, thinker_embeds: torch.Tensor,
                        thinker_hidden: torch.Tensor, first_token_embed: torch.Tensor,
                        special_embeds: torch.Tensor, ids: TalkerPromptIds, speaker: str) -> TalkerPrompt:
    """Assemble the talker prefill exactly as the reference's generate() does (spec §1.1), for one request.

    input_ids [T]: the thinker prompt. thinker_embeds [T, D]: the thinker's layer-0 inputs (after the media
    scatter). thinker_hidden [T, D]: the thinker's hidden state at accept_hidden_layer. first_token_embed [D]:
    the thinker's embedding of its first generated token. special_embeds [3, D]: the thinker's embeddings of
    tts_bos, tts_eos, tts_pad (in that order).
    Each later generated token g_k (k ≥ 1) joins the text track as talker.project_text(E[g_k]); after the
    last one comes tts_eos_embed once, then tts_pad_embed.
    """
    speaker_id = ids.speaker_id(speaker)
    tts_bos, tts_eos, tts_pad = talker.project_text(special_embeds).unbind(0)  # [C] each

    user = user_turn_positions(input_ids, ids)
    user_ids = input_ids[user]
    is_media = torch.isin(user_ids, torch.tensor(ids.multimodal, device=input_ids.device))
    user_embeds = talker.project_text(thinker_embeds[user])  # [T_user, C]
    if bool(is_media.any()):  # media placeholders take the accept-layer hidden state instead
        media = talker.project_hidden(thinker_hidden[user][is_media]).to(user_embeds.dtype)
        user_embeds = user_embeds.index_put((is_media,), media)

    # Header: <|im_start|> assistant \n, then the first text token, each over its codec-track id (spec §1.1).
    start = _assistant_start(input_ids, ids)
    span = talker.project_text(torch.cat([thinker_embeds[start:], first_token_embed[None]]))  # [≥4, C]
    text_track = torch.cat([span[:3], tts_pad.expand(4, -1), tts_bos[None], span[3:4]])  # [9, C]
    codec_ids = torch.tensor([ids.codec_nothink, ids.codec_think_bos, ids.codec_think_eos, speaker_id,
                              ids.codec_pad, ids.codec_bos], device=input_ids.device)
    codec_track = torch.cat([text_track.new_zeros(3, text_track.shape[1]),
                             talker.model.codec_embedding(codec_ids).to(text_track.dtype)])
    header = text_track + codec_track

    return TalkerPrompt(
        inputs_embeds=torch.cat([user_embeds, header]),
        input_ids=torch.cat([user_ids, torch.full((9,), ids.tts_pad, dtype=input_ids.dtype,
                                                  device=input_ids.device)]),
        user_positions=user, trailing_text=span[4:], tts_pad_embed=tts_pad, tts_eos_embed=tts_eos)
