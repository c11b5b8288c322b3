"""AuT audio encoder: log-mel frames → thinker-sized audio tokens (spec §2.2).

    mel [128, F] ─ split into 1 s chunks (100 frames), zero-padded to the batch's longest chunk
      → 3 × (Conv2d k3 s2 + GELU) over (freq, time)      [n_chunks, 480, 16, 13]
      → conv_out on (channel, freq) flattened channel-major, + sinusoid positions restarting per chunk
      → keep each chunk's valid tokens, concatenate       [tokens, 1280]
      → pre-LN transformer layers, attention inside 104-token windows (8 s)
      → ln_post → proj1 → GELU → proj2                   [tokens, output_dim]

Attribute names are the checkpoint keys under `thinker.audio_tower.`.

Reference trap (spec §2.2, §7.2-9): GELU(bias) ≠ 0 in the zero padding, so the last tokens of a short tail
chunk depend on how far it was padded. We pad exactly as the reference: every chunk of the batch to the
longest chunk of the batch (100 frames whenever any audio in the batch lasts ≥ 1 s).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from omnistream.config import AudioEncoderConfig
from omnistream.errors import ConfigError, OmniInputError
from omnistream.nn.segment_attention import SegmentLayout, segment_attention, segment_layout


def conv_stem_length(frames: int) -> int:
    """Time steps left after the three stride-2, pad-1, kernel-3 convolutions: three ceiling halvings."""
    for _ in range(3):
        frames = (frames - 1) // 2 + 1
    return frames


def audio_token_count(num_frames: int, n_window: int = 50) -> int:
    """Tokens the encoder emits for `num_frames` mel frames (spec §2.2).

    With n_window 50: 13·⌊F/100⌋ + ⌈(F mod 100)/8⌉. (The reference hard-codes the 13 a full chunk gives;
    we derive it from the chunk size, which is the same number for every released checkpoint.)
    """
    chunk = 2 * n_window
    full, tail = divmod(num_frames, chunk)
    return full * conv_stem_length(chunk) + (conv_stem_length(tail) if tail else 0)


def sinusoid_table(length: int, channels: int, max_timescale: float = 10000.0) -> torch.Tensor:
    """Whisper's fixed positions [length, channels]: [sin(t·ω_i), cos(t·ω_i)], ω_i = timescale^(−i/(C/2−1)).

    Built in fp32 with the same operations as the reference, so the table is bit-identical.
    """
    if channels % 2:
        raise ValueError(f"sinusoid positions need an even width, got {channels}")
    step = math.log(max_timescale) / (channels // 2 - 1)
    inv_timescales = torch.exp(-step * torch.arange(channels // 2).float())
    angles = torch.arange(length)[:, None] * inv_timescales[None, :]
    return torch.cat([torch.sin(angles), torch.cos(angles)], dim=1)


@dataclass(frozen=True)
class AudioChunkPlan:
    """Where every 1 s chunk of a batch comes from and which of its tokens survive (host-side ints)."""
    chunk_audio: list[int]    # audio index of each chunk, in output order
    chunk_start: list[int]    # first mel frame of each chunk inside its audio
    chunk_frames: list[int]   # real frames in each chunk (≤ 2·n_window)
    chunk_tokens: list[int]   # tokens each chunk keeps after the conv stem
    padded_frames: int        # every chunk is zero-padded to this: the batch's longest chunk
    cu_seqlens: list[int]     # attention window boundaries over the concatenated tokens

    @property
    def total_tokens(self) -> int:
        return self.cu_seqlens[-1]


def plan_chunks(feature_lens: list[int], n_window: int, n_window_infer: int) -> AudioChunkPlan:
    """Chunks, padding and attention windows of a batch of audios with `feature_lens` mel frames each."""
    chunk = 2 * n_window
    audio, start, frames = [], [], []
    for b, length in enumerate(feature_lens):
        for s in range(0, length, chunk):
            audio.append(b)
            start.append(s)
            frames.append(min(chunk, length - s))
    tokens = [conv_stem_length(n) for n in frames]
    padded = max(frames)
    # Window = (n_window_infer / chunk) chunks' worth of tokens, measured on the batch's longest chunk
    # exactly as the reference does (104 tokens whenever any chunk is full).
    window = conv_stem_length(padded) * (n_window_infer // chunk)
    bounds = [0]
    for length in feature_lens:
        count = audio_token_count(length, n_window)
        for _ in range(count // window):
            bounds.append(bounds[-1] + window)
        if count % window:
            bounds.append(bounds[-1] + count % window)
    return AudioChunkPlan(audio, start, frames, tokens, padded, bounds)


class AudioAttention(nn.Module):
    """Multi-head self-attention with biased projections, bidirectional within each window."""

    def __init__(self, d_model: int, num_heads: int) -> None:
        super().__init__()
        self.num_heads, self.head_dim = num_heads, d_model // num_heads
        self.q_proj = nn.Linear(d_model, d_model)
        self.k_proj = nn.Linear(d_model, d_model)
        self.v_proj = nn.Linear(d_model, d_model)
        self.out_proj = nn.Linear(d_model, d_model)

    def forward(self, x: torch.Tensor, layout: SegmentLayout) -> torch.Tensor:
        T = x.shape[0]
        q, k, v = (proj(x).view(T, self.num_heads, self.head_dim)      # [T, H, D]
                   for proj in (self.q_proj, self.k_proj, self.v_proj))
        out = segment_attention(q, k, v, layout, scale=self.head_dim ** -0.5)
        return self.out_proj(out.reshape(T, -1))


class AudioEncoderLayer(nn.Module):
    """Pre-LN Whisper layer: x + Attn(LN(x)), then x + fc2(GELU(fc1(LN(x))))."""

    def __init__(self, cfg: AudioEncoderConfig) -> None:
        super().__init__()
        self.self_attn = AudioAttention(cfg.d_model, cfg.encoder_attention_heads)
        self.self_attn_layer_norm = nn.LayerNorm(cfg.d_model)
        self.fc1 = nn.Linear(cfg.d_model, cfg.encoder_ffn_dim)
        self.fc2 = nn.Linear(cfg.encoder_ffn_dim, cfg.d_model)
        self.final_layer_norm = nn.LayerNorm(cfg.d_model)

    def forward(self, x: torch.Tensor, layout: SegmentLayout) -> torch.Tensor:
        x = x + self.self_attn(self.self_attn_layer_norm(x), layout)
        x = x + self.fc2(F.gelu(self.fc1(self.final_layer_norm(x))))
        if x.dtype == torch.float16:  # as Whisper: keep fp16 activations finite
            limit = torch.finfo(torch.float16).max - 1000
            x = x.clamp(-limit, limit)
        return x


class AudioEncoder(nn.Module):
    """Mel spectrograms of a batch of audios → their audio tokens, concatenated in batch order."""

    def __init__(self, cfg: AudioEncoderConfig) -> None:
        super().__init__()
        if cfg.activation_function != "gelu":
            raise ConfigError(f"audio_config.activation_function {cfg.activation_function!r} is not supported "
                              "(the reference uses 'gelu')", param="thinker_config.audio_config.activation_function")
        self.cfg = cfg
        c = cfg.downsample_hidden_size
        self.conv2d1 = nn.Conv2d(1, c, 3, stride=2, padding=1)
        self.conv2d2 = nn.Conv2d(c, c, 3, stride=2, padding=1)
        self.conv2d3 = nn.Conv2d(c, c, 3, stride=2, padding=1)
        freq_bins = conv_stem_length(cfg.num_mel_bins)  # the same three halvings act on frequency
        self.conv_out = nn.Linear(c * freq_bins, cfg.d_model, bias=False)
        self.layers = nn.ModuleList(AudioEncoderLayer(cfg) for _ in range(cfg.encoder_layers))
        self.ln_post = nn.LayerNorm(cfg.d_model)
        self.proj1 = nn.Linear(cfg.d_model, cfg.d_model)
        self.proj2 = nn.Linear(cfg.d_model, cfg.output_dim)
        # Derived, not stored in the checkpoint (spec §6 "non-persistent buffers"); fp32 like the reference.
        self.register_buffer("sinusoids", sinusoid_table(cfg.max_source_positions, cfg.d_model), persistent=False)

    def forward(self, input_features: torch.Tensor, feature_lens: torch.Tensor) -> torch.Tensor:
        """input_features [B, num_mel_bins, F] (frames past feature_lens[b] are ignored), feature_lens [B]
        → [sum of audio_token_count(feature_lens[b]), output_dim]."""
        lens = self._check_inputs(input_features, feature_lens)
        plan = plan_chunks(lens, self.cfg.n_window, self.cfg.n_window_infer)
        chunks = self._gather_chunks(input_features, plan)                  # [N, mel, L]
        hidden = self._embed_chunks(chunks, plan)                           # [tokens, d_model]
        layout = segment_layout(plan.cu_seqlens, device=hidden.device)
        for layer in self.layers:
            hidden = layer(hidden, layout)
        hidden = F.gelu(self.proj1(self.ln_post(hidden)))
        return self.proj2(hidden)

    def _check_inputs(self, input_features: torch.Tensor, feature_lens: torch.Tensor) -> list[int]:
        if input_features.ndim != 3 or input_features.shape[1] != self.cfg.num_mel_bins:
            raise OmniInputError(f"input_features must be [batch, {self.cfg.num_mel_bins}, frames], "
                                 f"got {tuple(input_features.shape)}", param="input_features")
        lens = [int(n) for n in feature_lens.tolist()]  # the one host sync: chunk layout is data-dependent
        if len(lens) != input_features.shape[0]:
            raise OmniInputError(f"feature_lens has {len(lens)} entries for {input_features.shape[0]} audios",
                                 param="feature_lens")
        for b, n in enumerate(lens):
            if not 0 < n <= input_features.shape[2]:
                raise OmniInputError(f"feature_lens[{b}] = {n} is outside 1..{input_features.shape[2]} frames",
                                     param="feature_lens")
        return lens

    def _gather_chunks(self, input_features: torch.Tensor, plan: AudioChunkPlan) -> torch.Tensor:
        """All chunks of the batch as [N, mel, L], zero past each chunk's real frames (L = longest chunk)."""
        device = input_features.device
        slot = torch.arange(plan.padded_frames)
        start = torch.tensor(plan.chunk_start)[:, None]
        real = slot[None, :] < torch.tensor(plan.chunk_frames)[:, None]                    # [N, L]
        frame = torch.where(real, start + slot, 0).to(device)
        audio = torch.tensor(plan.chunk_audio, device=device)[:, None]
        # Advanced indices around the mel slice put them first: [N, L, mel].
        chunks = input_features[audio, :, frame].masked_fill(~real.to(device)[..., None], 0.0)
        return chunks.transpose(1, 2)

    def _embed_chunks(self, chunks: torch.Tensor, plan: AudioChunkPlan) -> torch.Tensor:
        """Conv stem + conv_out + per-chunk positions, then only the valid tokens [tokens, d_model]."""
        x = chunks.unsqueeze(1).to(self.conv2d1.weight.dtype)                              # [N, 1, mel, L]
        stems = []
        for part in x.split(self.cfg.conv_chunksize):  # bounds conv activation memory (spec §2.2)
            part = F.gelu(self.conv2d1(part))
            part = F.gelu(self.conv2d2(part))
            stems.append(F.gelu(self.conv2d3(part)))
        x = torch.cat(stems)                                                               # [N, c, f, t]
        n, c, f, t = x.shape
        x = self.conv_out(x.permute(0, 3, 1, 2).reshape(n, t, c * f))  # channel-major: index c·f_bins + f
        x = x + self.sinusoids[:t].to(x.dtype)                 # positions restart in every chunk
        keep = torch.arange(t)[None, :] < torch.tensor(plan.chunk_tokens)[:, None]         # [N, t]
        return x.reshape(n * t, -1)[keep.flatten().nonzero().squeeze(1).to(x.device)]
