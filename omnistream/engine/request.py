"""One generation request: its sampling knobs (validated at construction) and its progress through the stages.

A request moves WAITING → RUNNING (thinker decoding; the talker speaks alongside) → SPEAKING (text done,
speech still being generated) → FINISHED / ABORTED / FAILED. Only the scheduler and the engine change its
state; tensors belonging to it live in the runners, keyed by `request_id`.
"""
from __future__ import annotations

import enum
import math
import secrets
import time
from dataclasses import dataclass, field
from typing import Any

from omnistream.errors import RequestError

# Reference talker defaults (spec §5.1): generate(talker_*) and the code predictor's nested generate.
TALKER_TEMPERATURE = 0.9
TALKER_TOP_K = 50
TALKER_TOP_P = 1.0
TALKER_REPETITION_PENALTY = 1.05
TALKER_MAX_NEW_TOKENS = 4096
PREDICTOR_TOP_K = 50
PREDICTOR_TOP_P = 0.8


def _number(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise RequestError(f"{name} must be a finite number, got {value!r}", param=name)
    return float(value)


def _integer(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise RequestError(f"{name} must be an integer, got {value!r}", param=name)
    return value


def _check_stage(prefix: str, temperature: Any, top_p: Any, top_k: Any, repetition_penalty: Any) -> None:
    if _number(temperature, f"{prefix}temperature") < 0:
        raise RequestError(f"{prefix}temperature must be ≥ 0 (0 means greedy), got {temperature}",
                           param=f"{prefix}temperature")
    if not 0 < _number(top_p, f"{prefix}top_p") <= 1:
        raise RequestError(f"{prefix}top_p must be in (0, 1], got {top_p}", param=f"{prefix}top_p")
    if _integer(top_k, f"{prefix}top_k") < 0:
        raise RequestError(f"{prefix}top_k must be ≥ 0 (0 disables it), got {top_k}", param=f"{prefix}top_k")
    if _number(repetition_penalty, f"{prefix}repetition_penalty") <= 0:
        raise RequestError(f"{prefix}repetition_penalty must be > 0, got {repetition_penalty}",
                           param=f"{prefix}repetition_penalty")


@dataclass(frozen=True)
class TalkerSamplingParams:
    """Talker (codebook 0) and code-predictor (codebooks 1..Q-1) sampling; reference defaults (spec §5.1).

    `predictor_temperature=None` mirrors the talker: greedy when the talker is greedy, else 1.0 — the reference
    copies the talker's do_sample onto the predictor. The repetition penalty applies to the codes generated so
    far only (spec §7.2-13), never to the predictor.
    """
    temperature: float = TALKER_TEMPERATURE
    top_p: float = TALKER_TOP_P
    top_k: int = TALKER_TOP_K
    repetition_penalty: float = TALKER_REPETITION_PENALTY
    max_new_tokens: int = TALKER_MAX_NEW_TOKENS
    min_new_tokens: int = 0
    predictor_temperature: float | None = None
    predictor_top_p: float = PREDICTOR_TOP_P
    predictor_top_k: int = PREDICTOR_TOP_K

    def __post_init__(self) -> None:
        _check_stage("talker_", self.temperature, self.top_p, self.top_k, self.repetition_penalty)
        predictor_t = 1.0 if self.predictor_temperature is None else self.predictor_temperature
        _check_stage("predictor_", predictor_t, self.predictor_top_p, self.predictor_top_k, 1.0)
        if _integer(self.max_new_tokens, "talker_max_new_tokens") < 1:
            raise RequestError(f"talker_max_new_tokens must be ≥ 1, got {self.max_new_tokens}",
                               param="talker_max_new_tokens")
        if _integer(self.min_new_tokens, "talker_min_new_tokens") < 0:
            raise RequestError(f"talker_min_new_tokens must be ≥ 0, got {self.min_new_tokens}",
                               param="talker_min_new_tokens")

    @property
    def effective_predictor_temperature(self) -> float:
        if self.predictor_temperature is not None:
            return self.predictor_temperature
        return 0.0 if self.temperature == 0 else 1.0


@dataclass(frozen=True)
class SamplingParams:
    """What to generate for one request. Invalid values raise RequestError naming the field.

    temperature 0 means greedy; top_k 0 and top_p 1 disable those filters; repetition_penalty 1 disables it
    (when on, it covers the prompt and the generated tokens, as the reference's thinker does).
    `max_new_tokens=None` lets the engine pick its default (the checkpoint's generation config, else 1024,
    clipped to the context left). `voice=None` picks the checkpoint's default speaker; `return_audio=None`
    means "speak when the checkpoint can".
    """
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0
    repetition_penalty: float = 1.0
    max_new_tokens: int | None = None
    min_new_tokens: int = 0
    stop: tuple[str, ...] = ()
    stop_token_ids: tuple[int, ...] = ()
    seed: int | None = None
    voice: str | None = None
    return_audio: bool | None = None
    talker: TalkerSamplingParams = field(default_factory=TalkerSamplingParams)

    def __post_init__(self) -> None:
        _check_stage("", self.temperature, self.top_p, self.top_k, self.repetition_penalty)
        if self.max_new_tokens is not None and _integer(self.max_new_tokens, "max_new_tokens") < 1:
            raise RequestError(f"max_new_tokens must be ≥ 1, got {self.max_new_tokens}", param="max_new_tokens")
        if _integer(self.min_new_tokens, "min_new_tokens") < 0:
            raise RequestError(f"min_new_tokens must be ≥ 0, got {self.min_new_tokens}", param="min_new_tokens")
        stop = (self.stop,) if isinstance(self.stop, str) else tuple(self.stop)
        if any(not isinstance(s, str) or not s for s in stop):
            raise RequestError("stop must be non-empty strings", param="stop")
        object.__setattr__(self, "stop", stop)
        ids = tuple(self.stop_token_ids)
        if any(isinstance(i, bool) or not isinstance(i, int) or i < 0 for i in ids):
            raise RequestError("stop_token_ids must be non-negative integers", param="stop_token_ids")
        object.__setattr__(self, "stop_token_ids", ids)
        if self.seed is not None:
            _integer(self.seed, "seed")
        if self.voice is not None and (not isinstance(self.voice, str) or not self.voice):
            raise RequestError(f"voice must be a non-empty string, got {self.voice!r}", param="voice")
        if not isinstance(self.talker, TalkerSamplingParams):
            raise RequestError("talker must be a TalkerSamplingParams", param="talker")

    @property
    def is_greedy(self) -> bool:
        return self.temperature == 0


class RequestStatus(enum.Enum):
    WAITING = "waiting"        # queued, no cache yet
    RUNNING = "running"        # thinker prefilled and decoding (the talker may be speaking alongside)
    SPEAKING = "speaking"      # text finished, speech still being generated
    FINISHED = "finished"
    ABORTED = "aborted"
    FAILED = "failed"

    @property
    def is_final(self) -> bool:
        return self in (RequestStatus.FINISHED, RequestStatus.ABORTED, RequestStatus.FAILED)


class TalkerStage(enum.Enum):
    OFF = "off"                # no speech for this request
    PENDING = "pending"        # waits for the first token it speaks: g0, or the first after a leading thinking span
    DECODING = "decoding"
    DONE = "done"


def new_request_id() -> str:
    return "req-" + secrets.token_hex(6)


@dataclass(eq=False)
class Request:
    """A request's identity and progress. `inputs` is the processor's ModelInputs (opaque to the scheduler)."""
    request_id: str
    inputs: Any
    params: SamplingParams
    num_prompt_tokens: int
    max_new_tokens: int                     # resolved by the engine (params.max_new_tokens or its default)
    speaker_id: int | None = None           # talker codec id of the voice; None without speech
    arrival_time: float = field(default_factory=time.perf_counter)
    status: RequestStatus = RequestStatus.WAITING
    talker_stage: TalkerStage = TalkerStage.OFF
    output_ids: list[int] = field(default_factory=list)     # thinker tokens g0, g1, …
    speech_start: int = 0                   # index in output_ids of the first token the talker speaks
    thinker_done: bool = False
    finish_reason: str | None = None
    num_talker_tokens: int = 0              # codebook-0 codes sampled (incl. a final EOS)
    num_frames: int = 0                     # frames completed by the code predictor
    talker_max_new_tokens: int = 0          # resolved at admission (params, clipped to the talker's cache)
    error: BaseException | None = None

    @property
    def wants_speech(self) -> bool:
        return self.talker_stage is not TalkerStage.OFF

    @property
    def talker_active(self) -> bool:
        return self.talker_stage in (TalkerStage.PENDING, TalkerStage.DECODING)

    @property
    def is_finished(self) -> bool:
        return self.status.is_final

    @property
    def num_cache_tokens(self) -> int:
        """Thinker cache room this request reserves: prompt plus every token it may generate."""
        return self.num_prompt_tokens + self.max_new_tokens
