"""One realtime response: engine events → the dialect's response events, with cancel and speculative start.

Event order (both dialects; names differ, see `NAMES`): response.created → response.output_item.added →
conversation.item.added (GA) / .created (beta) → response.content_part.added → text or audio + transcript
deltas → their .done → response.content_part.done → response.output_item.done → conversation.item.done (GA)
→ response.done. A cancelled or failed response still closes every open part, with status "cancelled" /
"failed", so clients never wait for a .done that will not come.

A response may start *held*: the engine already works on it (prefill of the user's audio while the VAD waits
to confirm the end of the turn) but nothing is sent until `release()`; a held response that is discarded sends
nothing at all.
"""
from __future__ import annotations

import asyncio
import base64
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from omnistream.engine.events import AudioChunk, Done, Failed, TextDelta
from omnistream.engine.request import SamplingParams
from omnistream.server.audio_codecs import float_to_pcm16
from omnistream.server.engine_client import EngineClient
from omnistream.server.errors import from_exception
from omnistream.server.realtime_conversation import Item, Part, new_id, render_item

logger = logging.getLogger(__name__)

NAMES = {
    "ga": {"text_delta": "response.output_text.delta", "text_done": "response.output_text.done",
           "audio_delta": "response.output_audio.delta", "audio_done": "response.output_audio.done",
           "transcript_delta": "response.output_audio_transcript.delta",
           "transcript_done": "response.output_audio_transcript.done", "item_created": "conversation.item.added"},
    "beta": {"text_delta": "response.text.delta", "text_done": "response.text.done",
             "audio_delta": "response.audio.delta", "audio_done": "response.audio.done",
             "transcript_delta": "response.audio_transcript.delta",
             "transcript_done": "response.audio_transcript.done", "item_created": "conversation.item.created"},
}


@dataclass
class ResponsePlan:
    """Everything a response needs, fixed when it is created."""
    messages: list[dict[str, Any]]
    params: SamplingParams
    speaks: bool
    voice: str
    temperature: float
    max_output_tokens: int | None
    in_conversation: bool = True              # False for response.create with conversation "none"
    metadata: dict[str, Any] | None = None
    conversation_version: int = 0             # speculative answers are kept only if nothing changed since
    session_version: int = 0


@dataclass
class _Progress:
    status: str = "in_progress"
    reason: str | None = None
    error: dict[str, Any] | None = None
    usage: dict[str, Any] | None = None
    deltas: int = 0
    pieces: list[tuple[str, int]] = field(default_factory=list)


class ResponseRunner:
    def __init__(self, client: EngineClient, plan: ResponsePlan, dialect: str, emit: Callable[[dict], None],
                 add_item: Callable[[Item], str | None], *, held: bool = False) -> None:
        self.client, self.plan, self.dialect, self.emit = client, plan, dialect, emit
        self.add_item = add_item
        self.id = new_id("resp")
        self.item = Item(new_id("item"), "assistant",
                         [Part("audio" if plan.speaks else "text")], status="in_progress")
        self.progress = _Progress()
        self.released = asyncio.Event()
        self.cancel_reason: str | None = None
        self.opened = False                     # response.created was sent
        self.task: asyncio.Task | None = None
        if not held:
            self.released.set()

    # ------------------------------------------------------------------------------------------ control
    def start(self) -> None:
        self.task = asyncio.create_task(self._run(), name=self.id)

    def release(self, dialect: str | None = None) -> None:
        self.dialect = dialect or self.dialect
        self.released.set()

    async def cancel(self, reason: str) -> None:
        """Stop generating (the engine request is aborted) and wait until the closing events are out."""
        if self.task is None or self.task.done():
            return
        self.cancel_reason = reason
        self.task.cancel()
        # Wait for the task, not for `finished`: a task cancelled before it ever ran never runs `_run` at all.
        await asyncio.wait({self.task})

    @property
    def active(self) -> bool:
        return self.task is not None and not self.task.done()

    # ------------------------------------------------------------------------------------------ run
    async def _run(self) -> None:
        events = None
        try:
            inputs = await self.client.prepare(self.plan.messages)
            events = self.client.stream(inputs, self.plan.params)
            first = await anext(events)             # submits: a held answer prefills while it waits
            await self.released.wait()
            self._open()
            self._on_event(first)
            async for event in events:
                self._on_event(event)
        except asyncio.CancelledError:
            self.progress.status = "cancelled"
            if self.cancel_reason is None:
                raise
        except Exception as error:  # noqa: BLE001 - reported to the client as a failed response
            mapped = from_exception(error)
            self.progress.status = "failed"
            self.progress.error = {"type": mapped.type, "code": mapped.code, "message": mapped.message}
            if self.released.is_set():
                self.emit({"type": "error", "error": mapped.fields()})
        finally:
            if events is not None:
                await events.aclose()               # aborts the engine request when it is still running
            if self.released.is_set() and self.opened:
                self._close()
            elif self.released.is_set():
                self._bare_close()

    def _open(self) -> None:
        names = NAMES[self.dialect]
        self.opened = True
        self.emit({"type": "response.created", "response": self.render(status="in_progress", output=[])})
        self.emit({"type": "response.output_item.added", "response_id": self.id, "output_index": 0,
                   "item": render_item(self.item, self.dialect)})
        if self.plan.in_conversation:
            previous = self.add_item(self.item)
            self.emit({"type": names["item_created"], "previous_item_id": previous,
                       "item": render_item(self.item, self.dialect)})
        part = {"type": "audio", "transcript": ""} if self.plan.speaks else {"type": "text", "text": ""}
        self.emit({"type": "response.content_part.added", **self._where(), "part": part})

    def _where(self) -> dict[str, Any]:
        return {"response_id": self.id, "item_id": self.item.id, "output_index": 0, "content_index": 0}

    def _on_event(self, event: Any) -> None:
        names, part = NAMES[self.dialect], self.item.parts[0]
        if isinstance(event, TextDelta) and not event.is_thinking:
            part.pieces.append((event.text, len(event.token_ids)))
            part.text += event.text
            if event.text:
                kind = "transcript_delta" if self.plan.speaks else "text_delta"
                self.emit({"type": names[kind], **self._where(), "delta": event.text})
        elif isinstance(event, AudioChunk) and self.plan.speaks and event.samples.size:
            part.audio_samples += int(event.samples.size)
            if event.num_frames and not part.frame_samples:
                part.frame_samples = int(event.samples.size) // event.num_frames
            self.emit({"type": names["audio_delta"], **self._where(),
                       "delta": base64.b64encode(float_to_pcm16(event.samples)).decode()})
        elif isinstance(event, Done):
            self.progress.status = "incomplete" if event.finish_reason == "length" else "completed"
            self.progress.reason = "max_output_tokens" if event.finish_reason == "length" else None
            self.progress.usage = _usage(event)
        elif isinstance(event, Failed):
            raise event.error

    def _close(self) -> None:
        """The closing events, in order, for whatever state the response ended in."""
        names, part, status = NAMES[self.dialect], self.item.parts[0], self.progress.status
        if status == "in_progress":
            status = self.progress.status = "cancelled" if self.cancel_reason else "failed"
        self.item.status = "completed" if status == "completed" else "incomplete"
        if self.plan.speaks:
            self.emit({"type": names["audio_done"], **self._where()})
            self.emit({"type": names["transcript_done"], **self._where(), "transcript": part.text})
            done_part = {"type": "audio", "transcript": part.text}
        else:
            self.emit({"type": names["text_done"], **self._where(), "text": part.text})
            done_part = {"type": "text", "text": part.text}
        self.emit({"type": "response.content_part.done", **self._where(), "part": done_part})
        item = render_item(self.item, self.dialect)
        self.emit({"type": "response.output_item.done", "response_id": self.id, "output_index": 0, "item": item})
        if self.plan.in_conversation and self.dialect == "ga":
            self.emit({"type": "conversation.item.done", "item": item})
        self.emit({"type": "response.done", "response": self.render(status=status, output=[item])})

    def _bare_close(self) -> None:
        """A response that ended before it produced anything (cancelled early, bad input): created + done."""
        status = self.progress.status
        if status == "in_progress":
            status = self.progress.status = "cancelled" if self.cancel_reason else "failed"
        self.emit({"type": "response.created", "response": self.render(status="in_progress", output=[])})
        self.emit({"type": "response.done", "response": self.render(status=status, output=[])})

    # ------------------------------------------------------------------------------------------ shapes
    def render(self, status: str, output: list[dict[str, Any]]) -> dict[str, Any]:
        details = None
        if status == "cancelled":
            details = {"type": "cancelled", "reason": self.cancel_reason}
        elif status == "incomplete":
            details = {"type": "incomplete", "reason": self.progress.reason}
        elif status == "failed":
            details = {"type": "failed", "error": self.progress.error}
        tokens: int | str = self.plan.max_output_tokens if self.plan.max_output_tokens is not None else "inf"
        common = {"id": self.id, "object": "realtime.response", "status": status, "status_details": details,
                  "output": output, "conversation_id": "conv_default" if self.plan.in_conversation else None,
                  "usage": self.progress.usage if status != "in_progress" else None,
                  "metadata": self.plan.metadata}
        modalities = ["audio"] if self.plan.speaks else ["text"]
        if self.dialect == "ga":
            return {**common, "output_modalities": modalities, "max_output_tokens": tokens,
                    "audio": {"output": {"format": {"type": "audio/pcm", "rate": 24000}, "voice": self.plan.voice}}}
        return {**common, "modalities": ["text", "audio"] if self.plan.speaks else ["text"],
                "voice": self.plan.voice, "output_audio_format": "pcm16", "temperature": self.plan.temperature,
                "max_output_tokens": tokens}


def _usage(done: Done) -> dict[str, Any]:
    u = done.usage
    output = u.completion_tokens + u.audio_frames
    return {"total_tokens": u.prompt_tokens + output, "input_tokens": u.prompt_tokens, "output_tokens": output,
            "input_token_details": {"cached_tokens": 0},
            "output_token_details": {"text_tokens": u.completion_tokens, "audio_tokens": u.audio_frames}}
