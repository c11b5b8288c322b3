"""Thinker execution: prefill one prompt into its cache slot, decode every running request in one batch.

Owns the thinker's KV cache ([num_slots, kv_heads, max_len, head_dim] per layer, allocated once), each
request's decode position state and its sampling state. Returns plain token ids; never changes a request's
status (the engine does).

Positions (spec §3.2): the prompt uses the processor's TM-RoPE ids; decode step at cache length L uses
L + rope_delta on all three axes, rope_delta = max(prompt positions) + 1 − prompt length (may be fractional
for video, so positions stay float32 as in the reference).

For speaking requests the prefill also hands back what the talker prompt needs (spec §1.1): the decoder
input embeddings E (after multimodal scatter) and the hidden state H after layer `accept_hidden_layer`.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import partial

import torch

from omnistream.engine.compile import MaybeCompiled
from omnistream.engine.request import Request
from omnistream.engine.sampling import RowSampling, TokenHistory, apply_repetition_penalty, ban_tokens, sample
from omnistream.errors import OmniInputError


@dataclass
class _Row:
    slot: int
    length: int                 # tokens written into the cache
    rope_delta: float
    sampling: RowSampling
    rng: torch.Generator
    banned_until: int           # EOS/stop ids are banned while fewer tokens than this were generated
    stop_ids: torch.Tensor


@dataclass
class PrefillOutput:
    token: int                                  # g0
    prompt_embeds: torch.Tensor | None = None   # E [T, C], speaking requests only
    prompt_hidden: torch.Tensor | None = None   # H [T, C] after layer accept_hidden_layer


def request_rng(request: Request, stream: int, device: torch.device) -> torch.Generator:
    """The request's random stream for one stage (0 thinker, 1 talker, 2 code predictor), on `device`."""
    generator = torch.Generator(device=device)
    seed = request.params.seed
    if seed is None:
        generator.seed()
    else:
        generator.manual_seed((seed * 3 + stream) % (2 ** 63))
    return generator


class ThinkerRunner:
    def __init__(self, thinker: torch.nn.Module, *, num_slots: int, max_len: int, eos_token_ids: tuple[int, ...],
                 capture_layer: int | None, compile: bool = False) -> None:
        self.thinker = thinker
        weight = thinker.lm_head.weight
        self.device, self.dtype = weight.device, weight.dtype
        self.cache = thinker.new_cache(num_slots, max_len)
        self.max_len = max_len
        self.history = TokenHistory(num_slots, weight.shape[0], self.device)
        self.eos_token_ids = eos_token_ids
        self.capture_layer = capture_layer
        self.rows: dict[str, _Row] = {}
        # On CPU the compiled step also fuses the lm_head GEMV (see _decode_step); on CUDA cuBLAS is already
        # at bandwidth for it.
        fused = partial(self._decode_step, fused_head=self.device.type == "cpu")
        self._decode_forward = MaybeCompiled(fused, compile, "thinker decode", eager=self._decode_step)

    # ------------------------------------------------------------------------------------------ prefill
    @torch.no_grad()
    def prefill(self, request: Request, slot: int, capture: bool) -> PrefillOutput:
        """Run the whole prompt of one request into `slot` and sample g0."""
        inputs = request.inputs.to(self.device, self.dtype)
        if inputs.batch_size != 1:
            raise OmniInputError("a request holds exactly one conversation", param="messages")
        ids = inputs.input_ids                                                    # [1, T]
        length = ids.shape[1]
        embeds, visual_mask, deepstack = self.thinker.embed(
            ids, inputs.input_features, inputs.feature_attention_mask, inputs.pixel_values,
            inputs.image_grid_thw, inputs.pixel_values_videos, inputs.video_grid_thw)
        positions = inputs.position_ids.float()                                   # [3, 1, T]
        hidden, captured = self.thinker(
            embeds, positions, cache=self.cache, slots=torch.tensor([slot], device=self.device),
            cache_positions=torch.arange(length, device=self.device)[None], kv_len=length,
            visual_mask=visual_mask, deepstack=deepstack,
            capture_hidden_layer=self.capture_layer if capture else None)
        params = request.params
        stop_ids = torch.tensor(sorted({*self.eos_token_ids, *params.stop_token_ids}), device=self.device)
        row = _Row(slot=slot, length=length, rope_delta=float(positions.max()) + 1 - length,
                   sampling=RowSampling(params.temperature, params.top_k, params.top_p, params.repetition_penalty),
                   rng=request_rng(request, 0, self.device), banned_until=params.min_new_tokens, stop_ids=stop_ids)
        self.rows[request.request_id] = row
        if params.repetition_penalty != 1.0:                    # the reference penalises prompt ids too
            self.history.reset(slot, ids[0])
        logits = self.thinker.compute_logits(hidden[:, -1]).float()              # [1, V]
        (token,) = self._sample(logits, [request])
        out = PrefillOutput(token)
        if capture:
            out.prompt_embeds, out.prompt_hidden = embeds[0], captured[0]
        return out

    # ------------------------------------------------------------------------------------------ decode
    @torch.no_grad()
    def decode(self, requests: list[Request]) -> list[int]:
        """Feed each request's last token; sample the next one for all of them in one batch."""
        rows = [self.rows[r.request_id] for r in requests]
        device = self.device
        tokens = torch.tensor([r.output_ids[-1] for r in requests], device=device)            # [B]
        slots = torch.tensor([row.slot for row in rows], device=device)
        lengths = torch.tensor([row.length for row in rows], device=device)                 # [B]
        deltas = torch.tensor([row.rope_delta for row in rows], dtype=torch.float32, device=device)
        positions = (lengths.float() + deltas)[None, :, None].expand(3, -1, 1)              # [3, B, 1]
        kv_len = max(row.length for row in rows) + 1
        logits = self._decode_forward(tokens, positions, slots, lengths[:, None], kv_len)   # [B, V]
        for row in rows:
            row.length += 1
        return self._sample(logits, requests)

    def _decode_step(self, tokens: torch.Tensor, positions: torch.Tensor, slots: torch.Tensor,
                     cache_positions: torch.Tensor, kv_len: int, fused_head: bool = False) -> torch.Tensor:
        embeds = self.thinker.model.embed_tokens(tokens)[:, None]                          # [B, 1, C]
        hidden, _ = self.thinker(embeds, positions, cache=self.cache, slots=slots,
                                 cache_positions=cache_positions, kv_len=kv_len)
        last = hidden[:, 0]                                                                # [B, C]
        if fused_head and last.shape[0] == 1:
            # Compiled only: the lm_head GEMV as a reduction, which inductor turns into one fp32-accumulating
            # pass over the [V, C] head — about twice the bandwidth of the bf16 GEMM kernel on CPU. The
            # logits are then not rounded to the weight dtype (the eager path rounds like the reference).
            return (self.thinker.lm_head.weight.float() * last.float()).sum(-1)[None]       # [1, V]
        return self.thinker.compute_logits(last).float()                                   # [B, V]

    # ------------------------------------------------------------------------------------------ sampling
    def _sample(self, logits: torch.Tensor, requests: list[Request]) -> list[int]:
        rows = [self.rows[r.request_id] for r in requests]
        penalised = [i for i, row in enumerate(rows) if row.sampling.repetition_penalty != 1.0]
        if penalised:
            index = torch.tensor(penalised, device=self.device)
            sub = logits.index_select(0, index)
            seen = self.history.rows(torch.tensor([rows[i].slot for i in penalised], device=self.device))
            penalty = torch.tensor([rows[i].sampling.repetition_penalty for i in penalised], device=self.device)
            logits[index] = apply_repetition_penalty(sub, seen, penalty)
        for i, (row, request) in enumerate(zip(rows, requests)):
            if len(request.output_ids) < row.banned_until:
                ban_tokens(logits, torch.tensor([i], device=self.device), row.stop_ids)
        tokens = sample(logits, [row.sampling for row in rows], [row.rng for row in rows])
        if penalised:
            self.history.add(torch.tensor([rows[i].slot for i in penalised], device=self.device),
                             tokens[torch.tensor(penalised, device=self.device)])
        return tokens.tolist()

    def release(self, request_id: str) -> None:
        self.rows.pop(request_id, None)

    def room_left(self, request_id: str) -> int:
        row = self.rows[request_id]
        return self.max_len - row.length
