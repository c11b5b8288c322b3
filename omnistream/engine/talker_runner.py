"""Talker execution: prefill from the thinker's prompt states, batched decode steps, code-predictor fill.

Owns the talker's KV cache ([num_slots, kv_heads, max_len, head_dim] per layer), the code predictor's fixed
frame cache, per-request position/sampling state and the previous frame of every speaking request.

Text track (spec §1.1): talker step k ≥ 1 adds S[k−1] where S = the prompt's trailing text (tokens after the
assistant header, usually none) ++ E[g_1], …, E[g_{n−2}] ++ tts_eos, then tts_pad forever; g_{n−1} — the
final thinker token — is never embedded. The g are the spoken tokens: after a leading `<think>…</think>` span
(engine.py) g_0 is the first token after `</think>`, and the span is never heard. The engine calls step k only
once g_k (or the end of the text) is known, which is all S[k−1] needs.

Codes (spec §5.1): each step samples codebook 0 with the reference's talker processors (repetition penalty
over the codes generated so far, EOS banned before talker_min_new_tokens, ids [vocab−1024, vocab) suppressed
except EOS); a code that is EOS, or the last one allowed by talker_max_new_tokens, ends the speech and is not
expanded into a frame. Every other code is completed into a frame by the code predictor in one batch.

Positions (spec §3.4): the prefill uses the thinker's rope index on the talker ids (user turns keep their
media layout, the 9 header positions are text); decode step at cache length L uses L + rope_delta.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from omnistream.engine.compile import MaybeCompiled, compile_forward
from omnistream.engine.request import Request
from omnistream.engine.talker_positions import talker_prompt_positions
from omnistream.engine.sampling import RowSampling, TokenHistory, apply_repetition_penalty, ban_tokens, sample
from omnistream.engine.thinker_runner import PrefillOutput, request_rng
from omnistream.models.talker import TalkerPromptIds, build_talker_prompt

TTS_EOS, TTS_PAD = -1, -2        # text-track markers next to real thinker token ids


@dataclass
class _Row:
    slot: int
    length: int                                  # positions in the talker cache
    rope_delta: float
    trailing: torch.Tensor                       # [N, C] text track known from the prompt
    sampling: RowSampling
    predictor: RowSampling
    rng: torch.Generator
    predictor_rng: torch.Generator
    num_codes: int = 0                           # codebook-0 codes sampled so far
    last_hidden: torch.Tensor | None = None      # [C] final-norm hidden of the step that sampled `pending`
    pending: int | None = None                   # code 0 waiting for the code predictor
    last_frame: torch.Tensor | None = None       # [Q] previous frame (the next step's codec input)
    done: bool = False


class TalkerRunner:
    def __init__(self, talker: torch.nn.Module, thinker: torch.nn.Module, omni_config, token_ids, *,
                 num_slots: int, max_len: int, compile: bool = False) -> None:
        self.talker, self.thinker = talker, thinker
        self.config = omni_config.talker_config
        weight = talker.codec_head.weight
        self.device, self.dtype = weight.device, weight.dtype
        self.cache = talker.new_cache(num_slots, max_len)
        self.predictor_cache = talker.code_predictor.new_cache(num_slots)
        vocab = self.config.text_config.vocab_size
        self.history = TokenHistory(num_slots, vocab, self.device)
        self.eos = self.config.codec_eos_token_id
        suppressed = torch.zeros(vocab, dtype=torch.bool, device=self.device)
        suppressed[max(vocab - 1024, 0):] = True                # the reference's talker suppress_tokens
        suppressed[self.eos] = False
        self.suppressed = suppressed
        self.prompt_ids = TalkerPromptIds.from_config(omni_config)
        self.speaker_names = {v: k for k, v in self.config.speaker_id.items()}
        self.token_ids = token_ids
        self.thinker_config = omni_config.thinker_config
        specials = torch.tensor([omni_config.tts_bos_token_id, omni_config.tts_eos_token_id,
                                 omni_config.tts_pad_token_id], device=self.device)
        with torch.no_grad():
            self.special_embeds = thinker.model.embed_tokens(specials)         # [3, D] bos, eos, pad
            _, eos, pad = talker.project_text(self.special_embeds).unbind(0)
        self.tts_eos, self.tts_pad = eos, pad
        self.rows: dict[str, _Row] = {}
        # The code predictor runs Q−1 tiny sequential steps per frame: the first place compile pays off.
        compile_forward(talker.code_predictor, compile, "code predictor")
        self._decode_forward = MaybeCompiled(self._decode_step, compile, "talker decode")

    # ------------------------------------------------------------------------------------------ prefill
    @torch.no_grad()
    def prefill(self, request: Request, slot: int, thinker_out: PrefillOutput) -> None:
        """Build the talker prompt (spec §1.1) from the thinker's prompt states and g0, run it, sample c0_0."""
        inputs = request.inputs
        ids = inputs.input_ids[0].to(self.device)
        g0 = torch.tensor([thinker_out.token], device=self.device)
        prompt = build_talker_prompt(
            self.talker, ids, thinker_out.prompt_embeds, thinker_out.prompt_hidden,
            self.thinker.model.embed_tokens(g0)[0], self.special_embeds, self.prompt_ids,
            self.speaker_names[request.speaker_id])
        positions, delta = talker_prompt_positions(inputs, prompt.input_ids.cpu(), prompt.user_positions.cpu(),
                                                   self.token_ids, self.thinker_config, self.config)
        length = prompt.inputs_embeds.shape[0]
        hidden = self.talker(prompt.inputs_embeds[None], positions.to(self.device), cache=self.cache,
                             slots=torch.tensor([slot], device=self.device),
                             cache_positions=torch.arange(length, device=self.device)[None], kv_len=length)
        talker = request.params.talker
        row = _Row(slot=slot, length=length, rope_delta=delta, trailing=prompt.trailing_text,
                   sampling=RowSampling(talker.temperature, talker.top_k, talker.top_p, talker.repetition_penalty),
                   predictor=RowSampling(talker.effective_predictor_temperature, talker.predictor_top_k,
                                         talker.predictor_top_p),
                   rng=request_rng(request, 1, self.device),
                   predictor_rng=request_rng(request, 2, self.device))
        self.rows[request.request_id] = row
        self.history.reset(slot)
        self._sample([request], [row], hidden[:, -1])

    # ------------------------------------------------------------------------------------------ decode
    @torch.no_grad()
    def decode(self, requests: list[Request], text: list[int]) -> None:
        """One talker step for each request; text[b] is a thinker token id, TTS_EOS or TTS_PAD."""
        rows = [self.rows[r.request_id] for r in requests]
        device = self.device
        frames = torch.stack([row.last_frame for row in rows])                       # [B, Q]
        embeds = self.talker.frame_embedding(frames) + self._text_track(rows, text)  # [B, C]
        slots = torch.tensor([row.slot for row in rows], device=device)
        lengths = torch.tensor([row.length for row in rows], device=device)
        deltas = torch.tensor([row.rope_delta for row in rows], dtype=torch.float32, device=device)
        positions = (lengths.float() + deltas)[None, :, None].expand(3, -1, 1)       # [3, B, 1]
        hidden = self._decode_forward(embeds[:, None], positions, slots, lengths[:, None],
                                      max(row.length for row in rows) + 1)
        for row in rows:
            row.length += 1
        self._sample(requests, rows, hidden[:, 0])

    def _decode_step(self, embeds: torch.Tensor, positions: torch.Tensor, slots: torch.Tensor,
                     cache_positions: torch.Tensor, kv_len: int) -> torch.Tensor:
        return self.talker(embeds, positions, cache=self.cache, slots=slots, cache_positions=cache_positions,
                           kv_len=kv_len)

    def _text_track(self, rows: list[_Row], text: list[int]) -> torch.Tensor:
        """[B, C]: S[k−1] per row (see the module docstring)."""
        out = torch.empty(len(rows), self.tts_pad.shape[0], dtype=self.dtype, device=self.device)
        tokens = [(b, t) for b, t in enumerate(text) if t >= 0]
        if tokens:
            index = torch.tensor([b for b, _ in tokens], device=self.device)
            ids = torch.tensor([t for _, t in tokens], device=self.device)
            out[index] = self.talker.project_text(self.thinker.model.embed_tokens(ids)).to(self.dtype)
        for b, t in enumerate(text):
            if t == TTS_EOS:
                out[b] = self.tts_eos
            elif t == TTS_PAD:
                out[b] = self.tts_pad
            elif t < -2:                        # an entry of the prompt's own trailing text: -3 - index
                out[b] = rows[b].trailing[-3 - t]
        return out

    def text_input(self, request: Request) -> int:
        """What talker step k = num_codes consumes: a thinker id, TTS_EOS, TTS_PAD or a trailing index."""
        row = self.rows[request.request_id]
        j = row.num_codes - 1                  # index into S
        trailing = row.trailing.shape[0]
        if j < trailing:
            return -3 - j
        i = j - trailing + 1                   # spoken token g_i
        start = request.speech_start           # g_0's index in output_ids (after a thinking span)
        n = len(request.output_ids) - start
        if not request.thinker_done:
            if i > n - 1:
                raise RuntimeError("talker ran ahead of the thinker")  # the scheduler's lockstep prevents it
            return request.output_ids[start + i]
        if i < n - 1:
            return request.output_ids[start + i]
        return TTS_EOS if i == max(n - 1, 1) else TTS_PAD

    # ------------------------------------------------------------------------------------------ sampling
    def _sample(self, requests: list[Request], rows: list[_Row], hidden: torch.Tensor) -> None:
        logits = self.talker.compute_logits(hidden).float()                         # [B, V]
        slots = torch.tensor([row.slot for row in rows], device=self.device)
        penalty = torch.tensor([row.sampling.repetition_penalty for row in rows], device=self.device)
        if bool((penalty != 1.0).any()):
            apply_repetition_penalty(logits, self.history.rows(slots), penalty)
        logits.masked_fill_(self.suppressed, float("-inf"))
        banned = [b for b, (r, row) in enumerate(zip(requests, rows)) if row.num_codes < r.params.talker.min_new_tokens]
        if banned:
            ban_tokens(logits, torch.tensor(banned, device=self.device), torch.tensor([self.eos], device=self.device))
        codes = sample(logits, [row.sampling for row in rows], [row.rng for row in rows])
        self.history.add(slots, codes)
        for b, (request, row, code) in enumerate(zip(requests, rows, codes.tolist())):
            row.num_codes += 1
            if code == self.eos or row.num_codes >= request.talker_max_new_tokens:
                row.done, row.pending = True, None          # EOS, or the last code allowed: not expanded
            else:
                row.pending, row.last_hidden = code, hidden[b]

    # ------------------------------------------------------------------------------------------ frames
    def has_pending(self, request_id: str) -> bool:
        row = self.rows.get(request_id)
        return row is not None and row.pending is not None

    @torch.no_grad()
    def fill_frames(self, requests: list[Request]) -> torch.Tensor:
        """Complete every pending code 0 into a frame with the code predictor, in one batch → [B, Q]."""
        rows = [self.rows[r.request_id] for r in requests]
        code0 = torch.tensor([row.pending for row in rows], device=self.device)
        hidden = torch.stack([row.last_hidden for row in rows])                     # [B, C]

        def sample_fn(logits: torch.Tensor, step: int) -> torch.Tensor:
            return sample(logits.float(), [row.predictor for row in rows], [row.predictor_rng for row in rows])

        residual = self.talker.code_predictor.predict_frame(
            hidden, self.talker.model.codec_embedding(code0), sample_fn, self.predictor_cache)  # [B, Q-1]
        frames = torch.cat([code0[:, None], residual], dim=1)                        # [B, Q]
        for row, frame in zip(rows, frames):
            row.last_frame, row.pending, row.last_hidden = frame, None, None
        return frames

    def is_done(self, request_id: str) -> bool:
        row = self.rows.get(request_id)
        return row is None or (row.done and row.pending is None)

    def release(self, request_id: str) -> None:
        self.rows.pop(request_id, None)

