"""Code2Wav: codec frames (Q codebooks at 12.5 Hz) → 24 kHz waveform, one-shot or streamed (qwen3-omni-spec §2.6).

    codes [B, Q, F] → code_embedding (one table, index = code + codebook_size·q), mean over Q → [B, F, C]
      → pre_transformer: causal sliding-window (72) decoder layers with layer scales, final RMSNorm
      → upsample: 2 × (CausalConvTranspose1d k=s=2, ConvNeXtBlock)                    ×4 in time
      → decoder: CausalConv1d k7, 4 × DecoderBlock(rate 8, 5, 4, 3), SnakeBeta, CausalConv1d k7 → 1 channel
      → clamp to [−1, 1]                                                                ×480 in time

Numerics follow the reference: RMSNorm statistics in fp32 (eps 1e-5), RoPE θ 1e4 over positions 0..F−1 of
the decoded sequence, cos/sin built in fp32 and cast; everything else in the activation dtype.

Streaming (`Code2WavState`, `Code2WavStream`). Everything in the model is causal, so the waveform of the
first F frames is a prefix of the waveform of any longer sequence. A stream therefore emits, after each
push, exactly the samples one-shot decoding of all frames so far would give, and nothing is lost at push
boundaries (unlike the reference's `chunked_decode`, spec §7.2-7). What a stream remembers:

* per transformer layer, the keys/values of the last `sliding_window − 1` frames (71): a query sees
  keys i−71..i, so older frames can never matter again;
* per causal conv, its last (k−1)·d input samples; per decoder transposed conv, its last input frame.

For the real model that is 8 × 71 × 2 × 1024 K/V values (≈1.16 M) plus ≈134 k conv-tail values, ≈2.6 MB
per stream in bf16; the K/V buffer is allocated for 2 × 72 frames (≈4.7 MB bf16) so pushes of up to 73
frames never reallocate. Re-decoding a left context instead would need 71 frames per transformer layer (568 for 8
layers) to be exact, far more work per push than carrying this state.

Latency: after F frames have arrived, `num_samples(F)` = total_upsample·F − held samples are final
(1920·F − 555 for the real model). The 555 held-back samples of the newest frame are the ones each
kernel-2r transposed conv can only finish once the next frame has arrived: frame 1 yields 1365 samples
(56.9 ms at 24 kHz), every later frame 1920 (80 ms). One-shot decoding never produces those last 555
samples either, so `flush()` returns nothing.

Index → role tables (checkpoint keys):

    upsample.{i}.0   CausalConvTranspose1d(C, C, k=r_i, s=r_i), r = upsampling_ratios
    upsample.{i}.1   ConvNeXtBlock(C)
    decoder.0        CausalConv1d(C → decoder_dim, k7)
    decoder.{1..n}   DecoderBlock i−1, n = len(upsample_rates)
    decoder.{n+1}    SnakeBeta(decoder_dim / 2ⁿ)
    decoder.{n+2}    CausalConv1d(decoder_dim / 2ⁿ → 1, k7)
    DecoderBlock.block.0     SnakeBeta(c_in)
    DecoderBlock.block.1     CausalConvTranspose1d(c_in → c_in/2, k=2r, s=r)
    DecoderBlock.block.2..4  ResidualUnit(c_in/2, dilation 1, 3, 9)
"""
from __future__ import annotations

import torch
from torch import nn

from omnistream.config import Code2WavConfig
from omnistream.errors import OmniInputError
from omnistream.nn.activations import SnakeBeta
from omnistream.nn.attention import Attention
from omnistream.nn.conv import CausalConv1d, CausalConvTranspose1d, ConvNeXtBlock, StreamState
from omnistream.nn.kv_cache import LayerKVCache
from omnistream.nn.mlp import SwiGLU
from omnistream.nn.norm import RMSNorm
from omnistream.nn.rope import RotaryEmbedding


class LayerScale(nn.Module):
    """Per-channel scale of a residual branch (checkpoint key `scale`)."""

    def __init__(self, channels: int, initial_scale: float) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.full((channels,), initial_scale))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.scale * x


class Code2WavTransformerLayer(nn.Module):
    """h = x + s_a ⊙ Attn(N(x)); y = h + s_m ⊙ MLP(N(h)) — no QK-norm, causal sliding window."""

    def __init__(self, cfg: Code2WavConfig) -> None:
        super().__init__()
        self.input_layernorm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
        self.self_attn = Attention(cfg.hidden_size, cfg.num_attention_heads, cfg.num_key_value_heads, cfg.head_dim,
                                   qk_norm=False, bias=cfg.attention_bias, sliding_window=cfg.sliding_window)
        self.self_attn_layer_scale = LayerScale(cfg.hidden_size, cfg.layer_scale_initial_scale)
        self.post_attention_layernorm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
        self.mlp = SwiGLU(cfg.hidden_size, cfg.intermediate_size)
        self.mlp_layer_scale = LayerScale(cfg.hidden_size, cfg.layer_scale_initial_scale)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, cache: LayerKVCache | None = None,
                cache_positions: torch.Tensor | None = None, kv_len: int | None = None) -> torch.Tensor:
        # x: [B, F, C]
        attn = self.self_attn(self.input_layernorm(x), cos, sin, cache, None, cache_positions, kv_len)
        h = x + self.self_attn_layer_scale(attn)
        return h + self.mlp_layer_scale(self.mlp(self.post_attention_layernorm(h)))


class Code2WavTransformer(nn.Module):
    """The pre-transformer over frames (`pre_transformer.layers`, `pre_transformer.norm`)."""

    def __init__(self, cfg: Code2WavConfig) -> None:
        super().__init__()
        self.layers = nn.ModuleList(Code2WavTransformerLayer(cfg) for _ in range(cfg.num_hidden_layers))
        self.norm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
        self.rotary = RotaryEmbedding(cfg.head_dim, cfg.rope_theta)
        self.sliding_window = cfg.sliding_window

    def forward(self, x: torch.Tensor, state: Code2WavState | None = None) -> torch.Tensor:
        """x [B, F, C] → [B, F, C]. With a state, x holds the frames after the ones already decoded."""
        B, F, _ = x.shape
        start = 0 if state is None else state.num_frames
        positions = torch.arange(start, start + F, device=x.device).expand(B, F)  # absolute frame index
        cos, sin = self.rotary(positions, x.dtype)
        if state is None:
            for layer in self.layers:
                x = layer(x, cos, sin)
            return self.norm(x)
        held = self._prepare_window(state, x)
        cache_positions = (held + torch.arange(F, device=x.device)).expand(B, F)  # rows of the window buffer
        for layer, cache in zip(self.layers, state.kv):
            x = layer(x, cos, sin, cache, cache_positions, held + F)
        self._slide_window(state, held + F)
        state.num_frames += F
        return self.norm(x)

    def _prepare_window(self, state: Code2WavState, x: torch.Tensor) -> int:
        """Make room after the held keys/values for x's frames; return how many frames are held.

        Buffer row j holds frame (num_frames − held + j), so buffer rows differ exactly as frame indices do
        and the attention's causal + sliding-window mask over rows is the mask over frames.
        """
        held = min(state.num_frames, self.sliding_window - 1)
        need = held + x.shape[1]
        if state.kv and state.kv[0].max_len >= need:
            return held
        attn = self.layers[0].self_attn
        shape = (x.shape[0], attn.num_kv_heads, max(need, 2 * self.sliding_window), attn.head_dim)
        grown = []
        for old in state.kv or [None] * len(self.layers):
            k, v = x.new_zeros(shape), x.new_zeros(shape)
            if old is not None:
                k[:, :, :held], v[:, :, :held] = old.k[:, :, :held], old.v[:, :, :held]
            grown.append(LayerKVCache(k, v))
        state.kv = grown
        return held

    def _slide_window(self, state: Code2WavState, used: int) -> None:
        """Keep only the last sliding_window − 1 frames' keys/values, moved to the buffer's start."""
        keep = self.sliding_window - 1
        if used <= keep:
            return
        for cache in state.kv:
            cache.k[:, :, :keep] = cache.k[:, :, used - keep: used].clone()
            cache.v[:, :, :keep] = cache.v[:, :, used - keep: used].clone()


class ResidualUnit(nn.Module):
    """x + conv2(act2(conv1(act1(x)))), conv1 k7 dilated, conv2 k1."""

    def __init__(self, dim: int, dilation: int) -> None:
        super().__init__()
        self.act1 = SnakeBeta(dim)
        self.conv1 = CausalConv1d(dim, dim, kernel_size=7, dilation=dilation)
        self.act2 = SnakeBeta(dim)
        self.conv2 = CausalConv1d(dim, dim, kernel_size=1)

    def forward(self, x: torch.Tensor, state: StreamState | None = None) -> torch.Tensor:
        return x + self.conv2(self.act2(self.conv1(self.act1(x), state)), state)


class DecoderBlock(nn.Module):
    """SnakeBeta → ×rate transposed conv halving channels → residual units (dilation 1, 3, 9)."""

    def __init__(self, in_dim: int, rate: int) -> None:
        super().__init__()
        out_dim = in_dim // 2
        self.block = nn.ModuleList([
            SnakeBeta(in_dim),
            CausalConvTranspose1d(in_dim, out_dim, kernel_size=2 * rate, stride=rate),
            *(ResidualUnit(out_dim, dilation) for dilation in (1, 3, 9)),
        ])

    def forward(self, x: torch.Tensor, state: StreamState | None = None) -> torch.Tensor:
        activation, upsample, *residual_units = self.block
        x = upsample(activation(x), state)
        for unit in residual_units:
            x = unit(x, state)
        return x


class Code2Wav(nn.Module):
    """Codec decoder; `forward` decodes all frames at once, `forward(codes, state)` continues a stream."""

    def __init__(self, cfg: Code2WavConfig) -> None:
        super().__init__()
        self.config = cfg
        C = cfg.hidden_size
        self.code_embedding = nn.Embedding(cfg.codebook_size * cfg.num_quantizers, C)
        self.pre_transformer = Code2WavTransformer(cfg)
        self.upsample = nn.ModuleList(
            nn.ModuleList([CausalConvTranspose1d(C, C, ratio, ratio), ConvNeXtBlock(C)])
            for ratio in cfg.upsampling_ratios)
        channels = [cfg.decoder_dim // 2 ** i for i in range(len(cfg.upsample_rates) + 1)]
        self.decoder = nn.ModuleList([
            CausalConv1d(C, cfg.decoder_dim, kernel_size=7),
            *(DecoderBlock(channels[i], rate) for i, rate in enumerate(cfg.upsample_rates)),
            SnakeBeta(channels[-1]),
            CausalConv1d(channels[-1], 1, kernel_size=7),
        ])

    @property
    def total_upsample(self) -> int:
        return self.config.total_upsample

    def num_samples(self, num_frames: int) -> int:
        """Samples one-shot decoding of `num_frames` frames yields (1920·F − 555 for the real model)."""
        length = num_frames
        transposed = [m for m in self.modules() if isinstance(m, CausalConvTranspose1d)]
        for conv in transposed:  # modules() visits them in signal order: upsample, then decoder blocks
            length = max(0, (length - conv.lookahead) * conv.stride)
        return length

    def embed(self, codes: torch.Tensor) -> torch.Tensor:
        """codes [B, Q, F] → mean of the Q codebook embeddings [B, F, C]."""
        cfg = self.config
        offsets = torch.arange(cfg.num_quantizers, device=codes.device).view(1, -1, 1) * cfg.codebook_size
        return self.code_embedding(codes + offsets).mean(dim=1)

    def forward(self, codes: torch.Tensor, state: Code2WavState | None = None) -> torch.Tensor:
        """codes [B, Q, F] (each code < codebook_size) → wav [B, 1, N] in [−1, 1].

        Without a state N = num_samples(F). With a state, the samples that became final with these frames.
        """
        if codes.ndim != 3 or codes.shape[1] != self.config.num_quantizers:
            raise OmniInputError(f"codes must be [B, {self.config.num_quantizers}, F], got {list(codes.shape)}",
                                 param="codes")
        convs = None if state is None else state.convs
        hidden = self.pre_transformer(self.embed(codes), state).transpose(1, 2)  # [B, C, F]
        for upsample, convnext in self.upsample:
            hidden = convnext(upsample(hidden, convs), convs)  # [B, C, F·Πr]
        first, *blocks, activation, last = self.decoder
        wav = first(hidden, convs)
        for block in blocks:
            wav = block(wav, convs)
        return last(activation(wav), convs).clamp(min=-1.0, max=1.0)

    def start_stream(self, batch_size: int = 1) -> Code2WavStream:
        return Code2WavStream(self, batch_size)


class Code2WavState:
    """One stream's memory (batch rows advance together): conv tails, attention window, frames decoded."""

    def __init__(self) -> None:
        self.convs = StreamState()
        self.kv: list[LayerKVCache] = []  # per transformer layer, [B, G, window buffer, D]
        self.num_frames = 0

    def num_bytes(self) -> int:
        return self.convs.num_bytes() + sum(c.k.nbytes + c.v.nbytes for c in self.kv)


class Code2WavStream:
    """Decode frames as they arrive; the pushes concatenated equal one-shot decoding of all frames.

        stream = model.start_stream()
        for codes in frames:              # codes [Q, f] (or [B, Q, f] for B rows in lockstep)
            play(stream.push(codes))      # [n] (or [B, 1, n]) new samples
        stream.flush()                    # nothing left: one-shot never emits the held tail either
    """

    def __init__(self, model: Code2Wav, batch_size: int = 1) -> None:
        self.model = model
        self.batch_size = batch_size
        self.state = Code2WavState()
        self.num_samples = 0  # samples emitted so far
        self.is_closed = False
        self._batched = False  # whether pushes use [B, Q, f]; flush answers in the same shape

    @property
    def num_frames(self) -> int:
        return self.state.num_frames

    @torch.no_grad()
    def push(self, codes: torch.Tensor) -> torch.Tensor:
        """codes [Q, f] → samples [n]; codes [B, Q, f] → [B, 1, n]. n = num_samples(total) − emitted so far."""
        if self.is_closed:
            raise OmniInputError("push() after flush(): the stream is closed", param="codes")
        batched = self._batched = codes.ndim == 3
        codes = codes if batched else codes.unsqueeze(0)
        if codes.shape[0] != self.batch_size:
            raise OmniInputError(f"stream has {self.batch_size} rows, codes have {codes.shape[0]}", param="codes")
        wav = self.model(codes, self.state)  # [B, 1, n]
        self.num_samples += wav.shape[-1]
        return wav if batched else wav[0, 0]

    def flush(self) -> torch.Tensor:
        """Close the stream and free its memory. Returns no samples (see the module docstring)."""
        self.is_closed = True
        self.state = Code2WavState()
        weight = self.model.code_embedding.weight
        shape = (self.batch_size, 1, 0) if self._batched else (0,)
        return torch.zeros(shape, dtype=weight.dtype, device=weight.device)
