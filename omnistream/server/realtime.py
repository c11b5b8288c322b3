"""WS /v1/realtime: one `RealtimeConnection` per WebSocket, speaking OpenAI's Realtime protocol.

Dialect, fixed per connection and never mixed: beta when the client says so (`OpenAI-Beta: realtime=v1`
header, `openai-beta.realtime-v1` subprotocol or `?dialect=beta`), GA otherwise. A client that gave no hint
and whose first event is a flat (beta-shaped) `session.update` is switched to beta at that point — only the
opening `session.created` was GA-shaped by then (see docs/serving.md).

A receive loop applies client events in order; a sender task writes server events in order; responses run as
tasks (one at a time per conversation). Server VAD ends turns, interrupts an answer when the user speaks over
it (the engine request is aborted at once), and starts the answer speculatively at the first pause so the
audio prefill is done by the time the silence confirms the turn end (a changed turn discards it).
"""
from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import Any

import numpy as np
from starlette.websockets import WebSocket, WebSocketDisconnect

from omnistream.server.audio_codecs import StreamResampler
from omnistream.server.engine_client import EngineClient
from omnistream.server.errors import APIError, from_exception, unsupported
from omnistream.server.realtime_conversation import (
    VAD_RATE, Conversation, Item, Part, new_id, parse_item, render_item, to_messages, truncate,
)
from omnistream.server.realtime_input import InputAudioBuffer, parse_event, pcm16_payload
from omnistream.server.realtime_response import NAMES, ResponsePlan, ResponseRunner
from omnistream.server.realtime_session import SessionConfig, apply_update, looks_beta, render_session, \
    response_config
from omnistream.server.settings import ServerSettings
from omnistream.server.vad import VADEvent, shared_model

logger = logging.getLogger(__name__)
MIN_COMMIT_MS = 100
def requested_dialect(ws: WebSocket) -> str | None:
    explicit = ws.query_params.get("dialect")
    if explicit in ("ga", "beta"):
        return explicit
    if "realtime=v1" in ws.headers.get("openai-beta", ""):
        return "beta"
    protocols = [p.strip() for p in ws.headers.get("sec-websocket-protocol", "").split(",")]
    return "beta" if "openai-beta.realtime-v1" in protocols else None


class RealtimeConnection:
    def __init__(self, ws: WebSocket, client: EngineClient, settings: ServerSettings) -> None:
        self.ws, self.client, self.settings = ws, client, settings
        self.hint = requested_dialect(ws)
        self.dialect = self.hint or "ga"
        self.dialect_fixed = self.hint is not None
        self.session_id = new_id("sess")
        self.expires_at = int(time.time()) + 3600
        info = client.info
        rate = ws.query_params.get("input_sample_rate", "24000")
        self.config = SessionConfig(voice=info.default_voice or "", model=info.name,
                                    input_rate=int(rate) if rate in ("16000", "24000") else 24000,
                                    output_modalities=("audio",) if info.has_speech else ("text",))
        self.session_version = 0
        self.conversation = Conversation(settings.realtime_max_items)
        self.buffer = InputAudioBuffer(self.config.input_rate, settings.realtime_max_buffer_s, shared_model(),
                                       self.config.turn_detection)
        self.outbox: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()
        self.response: ResponseRunner | None = None
        self.speculative: tuple[ResponseRunner, int] | None = None       # (held runner, turn end sample)
        self.turn_item_id: str | None = None
        self.turn_start = 0

    # ------------------------------------------------------------------------------------------ lifecycle
    async def run(self) -> None:
        model = self.ws.query_params.get("model")
        offered = [p.strip() for p in self.ws.headers.get("sec-websocket-protocol", "").split(",") if p.strip()]
        await self.ws.accept(subprotocol="realtime" if "realtime" in offered else None)
        metrics = self.client.metrics
        metrics.realtime_connections += 1
        sender = asyncio.create_task(self._send_loop())
        try:
            if model is not None and model not in self.client.info.names:
                self.emit_error(APIError(404, f"The model '{model}' does not exist; this server serves "
                                              f"'{self.client.info.name}'.", param="model", code="model_not_found"))
                return
            self.emit({"type": "session.created", "session": self._session()})
            if self.dialect == "beta":
                self.emit({"type": "conversation.created",
                           "conversation": {"id": "conv_default", "object": "realtime.conversation"}})
            await self._receive_loop()
        finally:
            await self._shutdown(sender)
            metrics.realtime_connections -= 1
            metrics.count_request("/v1/realtime", 101)

    async def _shutdown(self, sender: asyncio.Task) -> None:
        await self._discard_speculation()
        if self.response is not None:
            await self.response.cancel("client_cancelled")
        self.outbox.put_nowait(None)
        try:
            await asyncio.wait_for(sender, timeout=5)
        except (asyncio.TimeoutError, Exception):  # noqa: BLE001 - the socket may be gone already
            sender.cancel()
        try:
            await self.ws.close()
        except Exception:  # noqa: BLE001
            pass

    async def _send_loop(self) -> None:
        while (event := await self.outbox.get()) is not None:
            try:
                await self.ws.send_text(json.dumps(event, separators=(",", ":")))
            except Exception:  # noqa: BLE001 - the client went away; the receive loop notices
                return

    def emit(self, event: dict[str, Any]) -> None:
        self.outbox.put_nowait({"event_id": new_id("event"), **event})

    def emit_error(self, error: APIError, client_event_id: str | None = None) -> None:
        self.emit({"type": "error", "error": {**error.fields(), "event_id": client_event_id}})

    async def _receive_loop(self) -> None:
        while True:
            try:
                message = await self.ws.receive()
            except WebSocketDisconnect:
                return
            if message["type"] == "websocket.disconnect":
                return
            event_id = None
            try:
                event = parse_event(message)
                event_id = event.get("event_id") if isinstance(event.get("event_id"), str) else None
                await self._dispatch(event)
            except APIError as error:
                self.emit_error(error, event_id)
            except Exception as error:  # noqa: BLE001 - one bad event must not end the session
                self.emit_error(from_exception(error), event_id)

    # ------------------------------------------------------------------------------------------ dispatch
    async def _dispatch(self, event: dict[str, Any]) -> None:
        kind = event["type"]
        handler = _HANDLERS.get(kind)
        if handler is None:
            if kind in ("output_audio_buffer.clear", "transcription_session.update"):
                raise unsupported("type", f"'{kind}' is not available over this WebSocket")
            raise APIError(400, f"Invalid value: '{kind}'. Supported event types: {', '.join(sorted(_HANDLERS))}.",
                           param="type", code="invalid_value")
        if not self.dialect_fixed:
            self._settle_dialect(event)
        await handler(self, event)

    def _settle_dialect(self, event: dict[str, Any]) -> None:
        session = event.get("session")
        if event["type"] == "session.update" and isinstance(session, dict) and looks_beta(session):
            self.dialect = "beta"
        self.dialect_fixed = True

    def _session(self) -> dict[str, Any]:
        return render_session(self.config, self.dialect, self.session_id, self.expires_at)

    async def on_session_update(self, event: dict[str, Any]) -> None:
        session = event.get("session")
        model = session.get("model") if isinstance(session, dict) else None
        if model is not None and model not in self.client.info.names:
            raise APIError(400, f"Invalid value for 'session.model': this server serves '{self.client.info.name}', "
                                f"not {model!r}.", param="session.model", code="model_not_found")
        config = apply_update(self.config, event.get("session"), self.dialect, self.client.info.voices)
        if config.speaks and not self.client.info.has_speech:
            raise APIError(400, "This model answers in text only; output modalities must be [\"text\"].",
                           param="session.output_modalities", code="audio_not_supported")
        self.config = config
        self.buffer.configure(self.config.input_rate, self.config.turn_detection)
        self.session_version += 1
        await self._discard_speculation()
        self.emit({"type": "session.updated", "session": self._session()})

    # ------------------------------------------------------------------------------------------ input audio
    async def on_append(self, event: dict[str, Any]) -> None:
        data = pcm16_payload(event.get("audio"), "audio")
        for vad_event in self.buffer.append(data):
            await self._on_vad(vad_event)

    async def on_commit(self, _: dict[str, Any]) -> None:
        samples = self.buffer.commit_all()
        ms = samples.size * 1000 // VAD_RATE
        if ms < MIN_COMMIT_MS:
            raise APIError(400, f"Error committing input audio buffer: buffer too small. Expected at least "
                                f"{MIN_COMMIT_MS}ms of audio, but buffer only has {ms}ms of audio.",
                           param=None, code="input_audio_buffer_commit_empty")
        await self._discard_speculation()
        self._commit_turn(self.turn_item_id or new_id("item"), samples)

    async def on_clear(self, _: dict[str, Any]) -> None:
        self.buffer.clear()
        self.turn_item_id = None
        await self._discard_speculation()
        self.emit({"type": "input_audio_buffer.cleared"})

    async def _on_vad(self, vad: VADEvent) -> None:
        td = self.config.turn_detection
        if vad.kind == "speech_started":
            self.turn_item_id, self.turn_start = new_id("item"), vad.sample
            self.emit({"type": "input_audio_buffer.speech_started", "audio_start_ms": vad.sample * 1000 // VAD_RATE,
                       "item_id": self.turn_item_id})
            await self._discard_speculation()
            if td is not None and td.interrupt_response and self.response is not None and self.response.active:
                await self.response.cancel("turn_detected")          # barge-in
        elif vad.kind == "speech_paused" and td is not None and td.create_response \
                and self.settings.realtime_early_prefill:
            await self._speculate(vad.sample)
        elif vad.kind == "speech_resumed":
            await self._discard_speculation()
        elif vad.kind == "speech_stopped":
            item_id = self.turn_item_id or new_id("item")
            self.emit({"type": "input_audio_buffer.speech_stopped", "audio_end_ms": vad.sample * 1000 // VAD_RATE,
                       "item_id": item_id})
            samples = self.buffer.take(self.turn_start, vad.sample)
            self.buffer.drop_before(vad.sample)
            adopted = self._adoptable(vad.sample)
            self._commit_turn(item_id, samples)
            if td is not None and td.create_response:
                await self._respond_to_turn(adopted)

    def _commit_turn(self, item_id: str, samples: Any) -> None:
        item = Item(item_id, "user", [Part("audio", audio=samples)])
        previous = self.conversation.insert(item)
        self.turn_item_id = None
        self.emit({"type": "input_audio_buffer.committed", "previous_item_id": previous, "item_id": item_id})
        self._announce_item(item, previous)

    def _announce_item(self, item: Item, previous: str | None) -> None:
        rendered = render_item(item, self.dialect)
        self.emit({"type": NAMES[self.dialect]["item_created"], "previous_item_id": previous, "item": rendered})
        if self.dialect == "ga":
            self.emit({"type": "conversation.item.done", "previous_item_id": previous, "item": rendered})

    # ------------------------------------------------------------------------------------------ speculation
    async def _speculate(self, end: int) -> None:
        if self.response is not None and self.response.active:
            return
        await self._discard_speculation()
        pending = Item(self.turn_item_id or "pending", "user",
                       [Part("audio", audio=self.buffer.take(self.turn_start, end))])
        plan = self._plan(self.config, self.conversation.items + [pending])
        runner = self._runner(plan, held=True)
        runner.start()
        self.speculative = (runner, end)
        self.client.metrics.speculative["started"] += 1

    def _adoptable(self, end: int) -> ResponseRunner | None:
        """The held answer, if it was computed from exactly the turn being committed and nothing else changed."""
        if self.speculative is None:
            return None
        runner, spec_end = self.speculative
        plan = runner.plan
        if spec_end == end and plan.conversation_version == self.conversation.version \
                and plan.session_version == self.session_version and runner.active:
            self.speculative = None
            self.client.metrics.speculative["adopted"] += 1
            return runner
        return None

    async def _discard_speculation(self) -> None:
        if self.speculative is not None:
            runner, _ = self.speculative
            self.speculative = None
            self.client.metrics.speculative["discarded"] += 1
            await runner.cancel("turn_changed")

    async def _respond_to_turn(self, adopted: ResponseRunner | None) -> None:
        await self._discard_speculation()
        if self.response is not None and self.response.active:
            if adopted is not None:
                await adopted.cancel("turn_changed")
            return
        if adopted is not None:
            self.response = adopted
            adopted.release(self.dialect)
            return
        self._start(self._plan(self.config, self.conversation.items))

    # ------------------------------------------------------------------------------------------ responses
    def _plan(self, config: SessionConfig, items: list[Item], in_conversation: bool = True,
              metadata: dict[str, Any] | None = None) -> ResponsePlan:
        params = self.client.sampling_params(temperature=config.temperature, max_new_tokens=config.max_output_tokens,
                                             voice=config.voice if config.speaks else None,
                                             return_audio=config.speaks)
        return ResponsePlan(messages=to_messages(items, config.instructions), params=params, speaks=config.speaks,
                            voice=config.voice, temperature=config.temperature,
                            max_output_tokens=config.max_output_tokens, in_conversation=in_conversation,
                            metadata=metadata, conversation_version=self.conversation.version,
                            session_version=self.session_version)

    def _runner(self, plan: ResponsePlan, held: bool = False) -> ResponseRunner:
        return ResponseRunner(self.client, plan, self.dialect, self.emit, self.conversation.insert, held=held)

    def _start(self, plan: ResponsePlan) -> None:
        if not any(m["role"] == "user" for m in plan.messages):
            raise APIError(400, "The conversation has no user input to respond to.", param=None,
                           code="conversation_empty")
        self.response = self._runner(plan)
        self.response.start()

    async def on_response_create(self, event: dict[str, Any]) -> None:
        if self.response is not None and self.response.active:
            raise APIError(400, f"Conversation already has an active response in progress: {self.response.id}. "
                                "Wait until the response is finished before creating a new one.",
                           param=None, code="conversation_already_has_active_response")
        await self._discard_speculation()
        config, options = response_config(self.config, event.get("response"), self.dialect,
                                          self.client.info.voices)
        if config.speaks and not self.client.info.has_speech:
            raise APIError(400, "This model answers in text only.", param="response", code="audio_not_supported")
        items = self.conversation.items
        if options.input is not None:
            rate, resample = self.config.input_rate, self._resample
            items = [parse_item(raw, self.dialect, rate, resample) for raw in options.input]
        self._start(self._plan(config, items, options.conversation != "none", options.metadata))

    async def on_response_cancel(self, event: dict[str, Any]) -> None:
        wanted = event.get("response_id")
        active = self.response if self.response is not None and self.response.active else None
        if active is None or (wanted is not None and wanted != active.id):
            raise APIError(400, "Cancellation failed: no active response found.", param="response_id",
                           code="response_cancel_not_active")
        await active.cancel("client_cancelled")

    # ------------------------------------------------------------------------------------------ items
    @staticmethod
    def _resample(samples: np.ndarray, rate: int) -> np.ndarray:
        resampler = StreamResampler(rate, VAD_RATE)
        return np.concatenate([resampler.push(samples), resampler.flush()])

    async def on_item_create(self, event: dict[str, Any]) -> None:
        item = parse_item(event.get("item"), self.dialect, self.config.input_rate, self._resample)
        previous = self.conversation.insert(item, event.get("previous_item_id"))
        await self._discard_speculation()
        self._announce_item(item, previous)

    async def on_item_truncate(self, event: dict[str, Any]) -> None:
        item = self.conversation.find(event.get("item_id"))
        await self._stop_response_on(item.id)
        truncate(item, event.get("content_index", 0), event.get("audio_end_ms"), self.client.info.sample_rate)
        self.conversation.touch()
        self.emit({"type": "conversation.item.truncated", "item_id": item.id,
                   "content_index": event.get("content_index", 0), "audio_end_ms": event["audio_end_ms"]})

    async def on_item_delete(self, event: dict[str, Any]) -> None:
        item = self.conversation.find(event.get("item_id"))
        await self._stop_response_on(item.id)
        self.conversation.delete(item.id)
        self.emit({"type": "conversation.item.deleted", "item_id": item.id})

    async def on_item_retrieve(self, event: dict[str, Any]) -> None:
        item = self.conversation.find(event.get("item_id"))
        self.emit({"type": "conversation.item.retrieved", "item": render_item(item, self.dialect)})

    async def _stop_response_on(self, item_id: str) -> None:
        if self.response is not None and self.response.active and self.response.item.id == item_id:
            await self.response.cancel("client_cancelled")


_HANDLERS = {
    "session.update": RealtimeConnection.on_session_update,
    "input_audio_buffer.append": RealtimeConnection.on_append,
    "input_audio_buffer.commit": RealtimeConnection.on_commit,
    "input_audio_buffer.clear": RealtimeConnection.on_clear,
    "conversation.item.create": RealtimeConnection.on_item_create,
    "conversation.item.truncate": RealtimeConnection.on_item_truncate,
    "conversation.item.delete": RealtimeConnection.on_item_delete,
    "conversation.item.retrieve": RealtimeConnection.on_item_retrieve,
    "response.create": RealtimeConnection.on_response_create,
    "response.cancel": RealtimeConnection.on_response_cancel,
}
