"""The server's one door to the engine: prepare inputs off the event loop, stream events, abort on exit.

Every front end (chat completions, realtime, the page) goes through `EngineClient.stream`, which
1. runs the Processor (media decoding, features, tokenization) in a worker thread so the event loop keeps
   serving other clients,
2. submits to the shared async engine and yields its events (TextDelta / AudioChunk / Done / Failed),
3. aborts the engine request when the consumer stops early (client disconnect, barge-in, cancel) — the
   engine frees its cache slot before its next step.
It also counts active streams for /metrics.
"""
from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from typing import Any

from omnistream.engine.events import AudioChunk, Done, Event, Failed, TextDelta
from omnistream.engine.request import SamplingParams, new_request_id
from omnistream.engine.validation import DEFAULT_VOICE
from omnistream.server.metrics import Metrics

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ModelInfo:
    """What the server tells clients about the model it serves."""
    names: tuple[str, ...]            # the first is the canonical id; the rest are accepted aliases
    voices: tuple[str, ...]           # lower-case voice names; empty for thinker-only checkpoints
    default_voice: str | None
    has_speech: bool
    sample_rate: int = 24000
    created: int = 0

    @property
    def name(self) -> str:
        return self.names[0]


class EngineClient:
    """Streams generations from one shared engine for every connection."""

    def __init__(self, omni: Any, info: ModelInfo, metrics: Metrics) -> None:
        self.omni, self.info, self.metrics = omni, info, metrics
        self.processor = omni.processor
        self.engine = omni.async_engine()
        self.active: set[str] = set()
        metrics.engine_stats = self.engine_stats

    @classmethod
    def from_omni(cls, omni: Any, names: tuple[str, ...], metrics: Metrics | None = None, *,
                  allow_remote_media: bool = False) -> EngineClient:
        """Describe a loaded `Omni` (voices, speech) and wrap it.

        The processor's source rules are narrowed for serving: requests may never name local files, and
        remote URLs only when the operator allowed them.
        """
        limits = omni.processor.limits
        omni.processor.limits = replace(limits, allow_local_files=False, allow_remote_urls=allow_remote_media)
        voices = tuple(omni.voices)
        default = DEFAULT_VOICE if DEFAULT_VOICE in voices else (sorted(voices)[0] if voices else None)
        info = ModelInfo(names=names, voices=voices, default_voice=default, has_speech=omni.has_speech,
                         created=int(time.time()))
        return cls(omni, info, metrics or Metrics())

    def sampling_params(self, **options: Any) -> SamplingParams:
        """SamplingParams from the options a client set; unset ones take the checkpoint's defaults."""
        return self.omni.sampling_params(**options)

    def resolve_voice(self, voice: str | None) -> str | None:
        """The canonical (lower-case) voice name, or None when `voice` is unknown."""
        if voice is None:
            return self.info.default_voice
        name = voice.lower()
        return name if name in self.info.voices else None

    async def prepare(self, conversation: list[dict[str, Any]], use_audio_in_video: bool = False) -> Any:
        """Conversation → ModelInputs in a worker thread (raises OmniInputError subclasses for bad media)."""
        return await asyncio.to_thread(self.processor, conversation, use_audio_in_video=use_audio_in_video)

    async def stream(self, inputs: Any, params: SamplingParams, request_id: str | None = None,
                     ) -> AsyncIterator[Event]:
        """Events of one request. Stopping early aborts it; the final event is Done or Failed."""
        request_id = request_id or new_request_id()
        self.active.add(request_id)
        self.metrics.active_streams = len(self.active)
        recorder = _Recorder(time.perf_counter())
        finished = False
        events = self.engine.generate(inputs, params, request_id)
        try:
            async for event in events:
                recorder.see(event)
                finished = isinstance(event, (Done, Failed))
                yield event
        finally:
            await events.aclose()                 # aborts the engine request now, not when GC gets to it
            self.active.discard(request_id)
            self.metrics.active_streams = len(self.active)
            if not finished:
                self.metrics.aborted += 1
            recorder.report(self.metrics, self.info.sample_rate)

    def engine_stats(self) -> dict[str, float]:
        """Engine gauges for /metrics (read from the engine thread's state; plain ints, so no lock needed)."""
        try:
            engine = self.omni.engine
            slots = engine.accounts.thinker
            stages = {f"stage_seconds_{name}": seconds for name, seconds in list(engine.stage_seconds.items())}
            return {"queue_depth": len(engine.scheduler.waiting), "running_requests": len(engine.scheduler.running),
                    "cache_slots_free": slots.num_free, "cache_slots_total": slots.num_slots,
                    "healthy": float(bool(self.engine.is_healthy)), **stages}
        except Exception:  # noqa: BLE001 - metrics must never fail a scrape
            logger.exception("engine stats failed")
            return {}


@dataclass
class _Recorder:
    """Timing and counts of one stream, reported to Metrics when it ends."""
    start: float
    first_token: float | None = None
    first_audio: float | None = None
    last_audio: float | None = None
    audio_samples: int = 0
    done: Done | None = None

    def see(self, event: Event) -> None:
        now = time.perf_counter()
        if isinstance(event, TextDelta) and self.first_token is None:
            self.first_token = now - self.start
        elif isinstance(event, AudioChunk):
            if self.first_audio is None:
                self.first_audio = now - self.start
            self.last_audio = now - self.start
            self.audio_samples += int(event.samples.shape[0])
        elif isinstance(event, Done):
            self.done = event

    def report(self, metrics: Metrics, sample_rate: int) -> None:
        usage = self.done.usage if self.done is not None else None
        audio_s = self.audio_samples / sample_rate
        generation_s = self.last_audio if self.last_audio is not None else None
        metrics.observe_generation(
            prompt_tokens=usage.prompt_tokens if usage else 0,
            completion_tokens=usage.completion_tokens if usage else 0,
            audio_seconds=audio_s, first_token_s=self.first_token, first_audio_s=self.first_audio,
            audio_generation_s=generation_s)
