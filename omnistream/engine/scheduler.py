"""Who runs in the next engine step. Pure Python: no tensors, deterministic given requests and accounts.

Continuous batching: every step decodes all requests whose text is still being written in one thinker batch,
advances every speaking request by one talker frame in one talker batch, and admits waiting requests (FIFO)
into free cache slots — they are prefilled in the same step, so they join the decode batch at the next one.
Finished and aborted requests leave between steps and give their slots back at once.

Speech cadence (spec §1.1, §5.2): talker step k consumes thinker token g_k (or tts_eos when g_k is the last
token, tts_pad after that). The engine runs the talker after the thinker inside one step, so a request
decoded by the thinker in this step also takes its talker step k in this step: one thinker token per codec
frame, and the talker never waits longer than the thinker step that produced its text.
"""
from __future__ import annotations

import logging
from collections import deque
from dataclasses import dataclass

from omnistream.engine.kv_cache import CacheAccounts
from omnistream.engine.request import Request, RequestStatus, TalkerStage
from omnistream.errors import CapacityError

logger = logging.getLogger(__name__)

TALKER_HEADER_LEN = 9   # assistant header of the talker prompt (spec §1.1)


@dataclass(frozen=True)
class StepPlan:
    """What one engine step runs, in this order: thinker prefill, thinker decode, talker prefill (for the
    prefilled requests that speak), talker decode (+ code predictor), code2wav."""
    prefill: tuple[Request, ...] = ()
    decode: tuple[Request, ...] = ()
    talker_decode: tuple[Request, ...] = ()

    @property
    def talker_prefill(self) -> tuple[Request, ...]:
        return tuple(r for r in self.prefill if r.talker_stage is TalkerStage.PENDING)

    @property
    def is_empty(self) -> bool:
        return not (self.prefill or self.decode or self.talker_decode)


class Scheduler:
    """Admission under cache capacity, continuous batching and cancellation."""

    def __init__(self, accounts: CacheAccounts, *, max_prefill_tokens: int = 8192, max_waiting: int = 1024) -> None:
        self.accounts = accounts
        self.max_prefill_tokens = max_prefill_tokens
        self.max_waiting = max_waiting
        self.waiting: deque[Request] = deque()
        self.running: dict[str, Request] = {}       # admitted and not yet final, in admission order

    # -- requests in and out ------------------------------------------------------------------------------
    def add(self, request: Request) -> None:
        """Queue a request; raises CapacityError when it can never fit or the queue is full."""
        if not self.accounts.thinker.fits(request.num_cache_tokens):
            raise CapacityError(
                f"prompt ({request.num_prompt_tokens}) + max_new_tokens ({request.max_new_tokens}) exceed the "
                f"context of {self.accounts.thinker.slot_len} tokens", param="max_new_tokens")
        if request.wants_speech and (self.accounts.talker is None
                                     or not self.accounts.talker.fits(self.talker_prompt_bound(request) + 1)):
            raise CapacityError("the talker cache cannot hold this prompt", param="return_audio")
        if len(self.waiting) >= self.max_waiting:
            raise CapacityError(f"the request queue is full ({self.max_waiting} waiting)")
        request.status = RequestStatus.WAITING
        self.waiting.append(request)

    def abort(self, request_id: str) -> Request | None:
        """Drop a request wherever it is and free its slots now; None when it is unknown or already final."""
        request = self.running.pop(request_id, None)
        if request is None:
            request = next((r for r in self.waiting if r.request_id == request_id), None)
            if request is None:
                return None
            self.waiting.remove(request)
        self.accounts.free_all(request_id)
        request.status = RequestStatus.ABORTED
        request.finish_reason = "abort"
        return request

    def finish_thinker(self, request: Request, reason: str) -> None:
        """The text is complete: give the thinker slot back; the request keeps speaking if its talker runs."""
        request.thinker_done = True
        request.finish_reason = request.finish_reason or reason
        self.accounts.thinker.free(request.request_id)
        if request.talker_active:
            request.status = RequestStatus.SPEAKING
        else:
            self._retire(request, RequestStatus.FINISHED)

    def finish_talker(self, request: Request) -> None:
        request.talker_stage = TalkerStage.DONE
        if self.accounts.talker is not None:
            self.accounts.talker.free(request.request_id)
        if request.thinker_done:
            self._retire(request, RequestStatus.FINISHED)

    def fail(self, request: Request, error: BaseException) -> None:
        request.error = error
        self.waiting = deque(r for r in self.waiting if r is not request)
        self._retire(request, RequestStatus.FAILED)

    def _retire(self, request: Request, status: RequestStatus) -> None:
        self.running.pop(request.request_id, None)
        self.accounts.free_all(request.request_id)
        request.status = status

    # -- planning -----------------------------------------------------------------------------------------
    def schedule(self) -> StepPlan:
        decode = tuple(r for r in self.running.values()
                       if r.status is RequestStatus.RUNNING and r.output_ids and not r.thinker_done)
        talker = tuple(r for r in self.running.values() if r.talker_stage is TalkerStage.DECODING)
        return StepPlan(prefill=self._admit(), decode=decode, talker_decode=talker)

    def _admit(self) -> tuple[Request, ...]:
        admitted: list[Request] = []
        budget = self.max_prefill_tokens
        while self.waiting:
            request = self.waiting[0]
            talker_tokens = self.talker_reservation(request) if request.wants_speech else None
            if not self.accounts.can_admit(request.num_cache_tokens, talker_tokens):
                break
            if admitted and request.num_prompt_tokens > budget:
                break                                   # the first admission always goes, whatever its size
            self.waiting.popleft()
            self.accounts.thinker.allocate(request.request_id, request.num_cache_tokens)
            if talker_tokens is not None:
                assert self.accounts.talker is not None
                self.accounts.talker.allocate(request.request_id, talker_tokens)
                request.talker_max_new_tokens = min(request.params.talker.max_new_tokens,
                                                    talker_tokens - self.talker_prompt_bound(request))
            budget -= request.num_prompt_tokens
            request.status = RequestStatus.RUNNING
            self.running[request.request_id] = request
            admitted.append(request)
        return tuple(admitted)

    @staticmethod
    def talker_prompt_bound(request: Request) -> int:
        """Upper bound of the talker prompt: user turns ⊆ prompt, plus the 9-position header."""
        return request.num_prompt_tokens + TALKER_HEADER_LEN

    def talker_reservation(self, request: Request) -> int:
        assert self.accounts.talker is not None
        wanted = self.talker_prompt_bound(request) + request.params.talker.max_new_tokens
        return min(wanted, self.accounts.talker.slot_len)

    # -- queries ------------------------------------------------------------------------------------------
    def get(self, request_id: str) -> Request | None:
        return self.running.get(request_id) or next((r for r in self.waiting if r.request_id == request_id), None)

    @property
    def has_work(self) -> bool:
        return bool(self.waiting or self.running)

    @property
    def num_active(self) -> int:
        return len(self.running)
