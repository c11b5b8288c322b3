"""The engine loop: `step()` = schedule → thinker → talker (+ code predictor) → code2wav → events.

One step, in order (spec §1.1, §5.2):
1. thinker prefill of newly admitted requests (g0);
2. one batched thinker decode for every request still writing text (g_k);
   then the talker prefill of every speaking request whose first spoken token is now known (its prompt needs
   it): g0 itself, or after a leading `<think>…</think>` span the first token after `</think>` — the talker
   speaks the answer, never the thinking. Without a span the talker's first code, the code predictor's
   frame 0 and the first audio all come out of the prefill step;
3. one batched talker decode for every speaking request: step k consumes g_k from (2) — or tts_eos when g_k
   was the last text token, tts_pad after that — so the talker trails the thinker by zero tokens and gets
   exactly one thinker token per codec frame. This is what makes streamed speech equal to the reference,
   whose talker only starts after the thinker has finished: talker step k needs to know whether g_k is the
   final token, and that is known the moment g_k is sampled (end-of-text id, stop string, length);
4. one batched code-predictor fill of every new codebook-0 code → complete frames;
5. code2wav: each request's new frames are decoded with its own streaming state → AudioChunk events;
6. finished requests leave (Done), their cache slots were already freed.

The engine is single-threaded; `async_engine.EngineThread` drives it from a background thread.
"""
from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch

from omnistream.engine.config import EngineConfig
from omnistream.engine.defaults import GenerationDefaults
from omnistream.engine.events import AudioChunk, Done, Event, Failed, TextDelta, Usage
from omnistream.engine.kv_cache import CacheAccounts
from omnistream.engine.request import Request, RequestStatus, SamplingParams, TalkerStage, new_request_id
from omnistream.engine.scheduler import Scheduler, StepPlan
from omnistream.engine.speech import SpeechStages
from omnistream.engine.text_stream import TextStream
from omnistream.engine.thinker_runner import PrefillOutput, ThinkerRunner
from omnistream.engine.validation import resolve_request
from omnistream.errors import OmnistreamError, RequestError
from omnistream.kernels.gemv import MAX_ROWS
from omnistream.nn.fast_linear import use_fast_linears

logger = logging.getLogger(__name__)

# `_guard`'s stage functions by the names the timings are reported under.
_STAGE_NAMES = {"_prefill": "prefill", "_start_talker": "prefill", "_decode": "thinker_decode",
                "decode": "talker_decode", "_fill": "code_predictor", "_vocode": "code2wav"}


@dataclass
class _Live:
    """Per-request output state kept by the engine (text stream, timings, frames made)."""
    request: Request
    text: TextStream
    first_text: float | None = None
    first_audio: float | None = None
    audio_samples: int = 0
    codes: list[np.ndarray] = field(default_factory=list)    # frames [Q] int64, kept for Done.audio_codes


class Engine:
    """Continuous-batching engine over one OmniModel. Not thread-safe: drive it from one thread."""

    def __init__(self, model: torch.nn.Module, *, text_decoder: Callable[[], object], config: EngineConfig,
                 defaults: GenerationDefaults, token_ids: object = None,
                 think_ids: tuple[int | None, int | None] = (None, None)) -> None:
        self.model, self.config, self.defaults = model, config, defaults
        self._new_decoder = text_decoder
        self._think_open, self._think_close = think_ids
        omni = model.config
        if config.native_kernels:
            # few-row bf16 products on CPU take the native GEMV (nn/fast_linear.py; a custom op when compiled)
            use_fast_linears(model)
            if config.max_num_seqs > MAX_ROWS and not config.compile:
                # Batched decode: the lm_head dominates a step's weight traffic; a blocked copy (+1 head of
                # memory) streams it ~1.6x faster than the per-call re-layout of torch's bf16 GEMM.
                model.thinker.lm_head.pack_for_batches(config.max_num_seqs)
        text_cfg = omni.thinker_config.text_config
        self.thinker_len = config.thinker_len(text_cfg.max_position_embeddings)
        speech = model.has_speech
        talker_len = None
        if speech:
            talker_len = config.talker_len(self.thinker_len,
                                           omni.talker_config.text_config.max_position_embeddings)
        self.accounts = CacheAccounts(config.max_num_seqs, self.thinker_len, talker_len)
        self.scheduler = Scheduler(self.accounts, max_prefill_tokens=config.max_prefill_tokens,
                                   max_waiting=config.max_waiting)
        capture = omni.talker_config.accept_hidden_layer if speech else None
        self.thinker = ThinkerRunner(model.thinker, num_slots=config.max_num_seqs, max_len=self.thinker_len,
                                     eos_token_ids=defaults.eos_token_ids, capture_layer=capture,
                                     compile=config.compile)
        self.speech = SpeechStages(model, omni, token_ids, num_slots=config.max_num_seqs, max_len=talker_len,
                                   config=config) if speech else None
        self._live: dict[str, _Live] = {}
        self._talker_prompts: dict[str, PrefillOutput] = {}     # speaking requests whose talker has not started
        self._events: list[Event] = []
        self.num_steps = 0
        self.stage_seconds: dict[str, float] = {}   # cumulative wall time per stage (see _guard)

    # ------------------------------------------------------------------------------------------ requests
    def add_request(self, inputs: object, params: SamplingParams | None = None,
                    request_id: str | None = None) -> Request:
        """Validate and queue a request. Raises (RequestError, LimitExceeded, CapacityError) before any compute."""
        if request_id is not None and request_id in self._live:
            raise RequestError(f"request id {request_id!r} is already in use", param="request_id")
        request = resolve_request(self, inputs, params or self.defaults.sampling_params(),
                                  request_id or new_request_id())
        self.scheduler.add(request)
        self._live[request.request_id] = _Live(request, TextStream(
            self._new_decoder, stop=request.params.stop, think_open_id=self._think_open,
            think_close_id=self._think_close, start_thinking=self._prompt_opens_thinking(request)))
        return request

    def abort(self, request_id: str) -> list[Event]:
        """Cancel a request: its slots are free at once and it takes no further compute. Returns its Done."""
        request = self.scheduler.abort(request_id)
        if request is None:
            return []
        self._release(request)
        self._send_done(request)
        return self._take_events()

    @property
    def has_work(self) -> bool:
        return self.scheduler.has_work

    # ------------------------------------------------------------------------------------------ the step
    def step(self) -> list[Event]:
        """Advance every active request by one token / frame; returns the events this produced."""
        plan = self.scheduler.schedule()
        if plan.is_empty:
            return self._take_events()
        self.num_steps += 1
        for request in plan.prefill:
            self._guard([request], self._prefill, request)
        decode = [r for r in plan.decode if r.status is RequestStatus.RUNNING]
        if decode:
            self._guard(decode, self._decode, decode)
        if self.speech is not None:
            for request in [self._live[i].request for i in list(self._talker_prompts)]:
                self._guard([request], self._start_talker, request)
            self._speak(plan)
        for live in list(self._live.values()):
            if live.request.is_finished:
                self._send_done(live.request)
        return self._take_events()

    def _prefill(self, request: Request) -> None:
        slot = self.accounts.thinker.slot_of(request.request_id)
        speaking = request.talker_stage is TalkerStage.PENDING
        out = self.thinker.prefill(request, slot, capture=speaking)
        if speaking:
            self._talker_prompts[request.request_id] = out
        self._on_token(request, out.token)
        self._emit_text_timing(request)

    def _start_talker(self, request: Request) -> None:
        """Talker prefill once the first token to speak is known; a text that ends first has nothing to say."""
        live = self._live[request.request_id]
        start = request.speech_start
        if live.text.is_thinking or len(request.output_ids) <= start:
            if request.thinker_done:                           # ended inside the thinking span
                del self._talker_prompts[request.request_id]
                self.scheduler.finish_talker(request)
            return
        out = self._talker_prompts.pop(request.request_id)
        first = request.output_ids[start]
        if request.thinker_done and first in self._end_ids(request):
            self.scheduler.finish_talker(request)              # nothing to say: the answer is empty
            return
        out = dataclasses.replace(out, token=first)            # g0 of the speech: the answer's first token
        self.speech.prefill(request, self.accounts.talker.slot_of(request.request_id), out)
        request.talker_stage = TalkerStage.DECODING

    def _decode(self, requests: list[Request]) -> None:
        for request, token in zip(requests, self.thinker.decode(requests)):
            self._on_token(request, token)

    def _speak(self, plan: StepPlan) -> None:
        speech = self.speech
        talking = [r for r in plan.talker_decode if r.talker_stage is TalkerStage.DECODING and not r.is_finished]
        if talking:
            self._guard(talking, speech.decode, talking)
        filling = [r for r in self._speaking() if speech.has_pending_code(r.request_id)]
        if filling:
            self._guard(filling, self._fill, filling)
        for request in self._speaking():
            self._guard([request], self._vocode, request)     # flushes every frame once the talker is done
        for request in self._speaking():
            if speech.is_done(request):
                self.scheduler.finish_talker(request)
                speech.release(request.request_id)

    def _fill(self, requests: list[Request]) -> None:
        for request, frame in zip(requests, self.speech.fill_frames(requests)):
            self._live[request.request_id].codes.append(frame)

    def _vocode(self, request: Request) -> None:
        samples, first_frame, count = self.speech.vocode(request)
        if samples is None:
            return
        live = self._live[request.request_id]
        live.audio_samples += samples.shape[0]
        if live.first_audio is None:
            live.first_audio = time.perf_counter() - request.arrival_time
        self._events.append(AudioChunk(request.request_id, samples, self.speech.sample_rate, first_frame, count))

    def _speaking(self) -> list[Request]:
        return [r for r in self.scheduler.running.values() if r.talker_stage is TalkerStage.DECODING]

    # ------------------------------------------------------------------------------------------ text
    def _on_token(self, request: Request, token: int) -> None:
        request.output_ids.append(token)
        live = self._live[request.request_id]
        was_thinking = live.text.is_thinking
        self._emit_pieces(request, live.text.push(token))
        if was_thinking and not live.text.is_thinking and request.talker_stage is TalkerStage.PENDING:
            request.speech_start = len(request.output_ids)      # the talker speaks from the next token on
        reason = None
        if token in self._end_ids(request) or live.text.stopped:
            reason = "stop"
        elif len(request.output_ids) >= request.max_new_tokens:
            reason = "length"
        if reason is not None:
            self._emit_pieces(request, live.text.finish())
            self.scheduler.finish_thinker(request, reason)
            self.thinker.release(request.request_id)

    def _end_ids(self, request: Request) -> set[int]:
        return {*self.defaults.eos_token_ids, *request.params.stop_token_ids}

    def _emit_pieces(self, request: Request, pieces: list) -> None:
        for piece in pieces:
            self._events.append(TextDelta(request.request_id, piece.text, piece.token_ids, piece.is_thinking))
        self._emit_text_timing(request)

    def _emit_text_timing(self, request: Request) -> None:
        live = self._live.get(request.request_id)
        if live is not None and live.first_text is None and request.output_ids:
            live.first_text = time.perf_counter() - request.arrival_time

    def _prompt_opens_thinking(self, request: Request) -> bool:
        """True when the generation prompt already opened a <think> block (Thinking templates, spec §4.5)."""
        if self._think_open is None:
            return False
        ids = request.inputs.input_ids[0].tolist()
        if self._think_open not in ids:
            return False
        last_open = len(ids) - 1 - ids[::-1].index(self._think_open)
        return self._think_close not in ids[last_open:]

    # ------------------------------------------------------------------------------------------ endings
    def _guard(self, requests: list[Request], fn: Callable, *args: object) -> None:
        """Run one stage; an exception fails the requests it was working for, never the others. Its wall time
        adds to `stage_seconds[stage name]` (where a step's time goes: benchmarks, metrics)."""
        start = time.perf_counter()
        try:
            fn(*args)
        except Exception as error:  # noqa: BLE001 - becomes the request's Failed event
            if not isinstance(error, OmnistreamError):
                logger.exception("engine stage %s failed for %s", getattr(fn, "__name__", fn),
                                 [r.request_id for r in requests])
            for request in requests:
                if not request.is_finished:
                    self.scheduler.fail(request, error)
                    self._release(request)
                    self._events.append(Failed(request.request_id, error))
                    self._live.pop(request.request_id, None)
        finally:
            name = _STAGE_NAMES.get(getattr(fn, "__name__", ""), "other")
            self.stage_seconds[name] = self.stage_seconds.get(name, 0.0) + time.perf_counter() - start

    def _send_done(self, request: Request) -> None:
        live = self._live.get(request.request_id)
        if live is None:
            return
        if request.status is RequestStatus.ABORTED:
            self._emit_pieces(request, live.text.finish())
        codes = np.stack(live.codes, axis=1) if live.codes else None
        usage = Usage(prompt_tokens=request.num_prompt_tokens, completion_tokens=len(request.output_ids),
                      thinking_tokens=live.text.num_thinking_tokens, audio_frames=len(live.codes),
                      audio_samples=live.audio_samples)
        timings = {k: v for k, v in (("first_text", live.first_text), ("first_audio", live.first_audio))
                   if v is not None}
        self._events.append(Done(request.request_id, request.finish_reason or "stop", usage,
                                 text=live.text.answer, thinking=live.text.thinking,
                                 token_ids=tuple(request.output_ids), audio_codes=codes, timings=timings))
        self._release(request)
        del self._live[request.request_id]

    def _release(self, request: Request) -> None:
        self.thinker.release(request.request_id)
        self._talker_prompts.pop(request.request_id, None)
        if self.speech is not None:
            self.speech.release(request.request_id)

    def _take_events(self) -> list[Event]:
        events, self._events = self._events, []
        return events
