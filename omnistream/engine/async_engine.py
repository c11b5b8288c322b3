"""The engine on a background thread, with per-request event sinks; sync and asyncio front ends on top.

`EngineThread` owns one `Engine`: commands (add, abort) go in through a queue and are applied between steps,
so the engine is only ever touched by its own thread; events come out through a per-request sink
(`queue.Queue.put` for the sync API, `loop.call_soon_threadsafe` for asyncio). An exception inside a stage
fails only the requests it was working for (the engine's guards); an exception that escapes a step fails
every request and marks the engine unhealthy, and later submissions are refused.

    engine = AsyncEngine(EngineThread(Engine(...)))
    async for event in engine.generate(inputs, params):   # TextDelta / AudioChunk / Done / Failed
        ...
    await engine.abort(request_id)        # or just stop iterating: the request is aborted for you
"""
from __future__ import annotations

import asyncio
import logging
import queue
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import Future
from typing import Any

from omnistream.engine.engine import Engine
from omnistream.engine.events import Done, Event, Failed
from omnistream.engine.request import SamplingParams
from omnistream.errors import OmnistreamError

logger = logging.getLogger(__name__)

Sink = Callable[[Event], None]


class EngineUnhealthy(OmnistreamError):
    """The engine thread hit an unrecoverable error or was closed."""


def _is_final(event: Event) -> bool:
    return isinstance(event, (Done, Failed))


class EngineThread:
    """Runs `engine.step()` in a loop on a daemon thread while there is work; sleeps otherwise."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._commands: queue.SimpleQueue[tuple[str, Any, Future | None]] = queue.SimpleQueue()
        self._sinks: dict[str, Sink] = {}
        self._wake = threading.Event()
        self._closed = False
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="omnistream-engine", daemon=True)
        self._thread.start()

    # ------------------------------------------------------------------------------------------ API
    def submit(self, inputs: Any, params: SamplingParams | None, sink: Sink, request_id: str | None = None) -> str:
        """Queue a request; validation errors raise here, before any compute. Returns the request id."""
        self.check_health()
        future: Future = Future()
        self._command("add", (inputs, params, sink, request_id), future)
        return future.result()

    def abort(self, request_id: str) -> None:
        """Cancel a request (no-op when it already finished). Its slot is free before the next step."""
        if not self._closed:
            self._command("abort", request_id, None)

    def close(self, timeout: float = 10.0) -> None:
        if self._closed:
            return
        self._closed = True
        self._wake.set()
        self._thread.join(timeout)

    @property
    def is_healthy(self) -> bool:
        return self.error is None and not self._closed and self._thread.is_alive()

    def check_health(self) -> None:
        if self.error is not None:
            raise EngineUnhealthy(f"the engine failed: {type(self.error).__name__}: {self.error}")
        if self._closed or not self._thread.is_alive():
            raise EngineUnhealthy("the engine is closed")

    def stream(self, inputs: Any, params: SamplingParams | None = None, request_id: str | None = None,
               ) -> Iterator[Event]:
        """Blocking iterator over one request's events; closing it early aborts the request.

        The request is submitted (and validated) now, not at the first `next()`.
        """
        events: queue.Queue[Event] = queue.Queue()
        rid = self.submit(inputs, params, events.put, request_id)
        return self._iterate(rid, events)

    def _iterate(self, rid: str, events: queue.Queue[Event]) -> Iterator[Event]:
        finished = False
        try:
            while not finished:
                event = events.get()
                finished = _is_final(event)
                yield event
        finally:
            if not finished:
                self.abort(rid)

    # ------------------------------------------------------------------------------------------ thread
    def _command(self, kind: str, payload: Any, future: Future | None) -> None:
        self._commands.put((kind, payload, future))
        self._wake.set()

    def _run(self) -> None:
        while not self._closed:
            self._apply_commands()
            if not self.engine.has_work:
                self._wake.wait()
                self._wake.clear()
                continue
            try:
                events = self.engine.step()
            except BaseException as error:  # noqa: BLE001 - the loop must survive to report it
                self._fail_everything(error)
                continue
            self._dispatch(events)
        self._fail_everything(EngineUnhealthy("the engine was closed"), fatal=False)

    def _apply_commands(self) -> None:
        while True:
            try:
                kind, payload, future = self._commands.get_nowait()
            except queue.Empty:
                return
            if kind == "add":
                inputs, params, sink, request_id = payload
                try:
                    self.check_health()
                    request = self.engine.add_request(inputs, params, request_id)
                except BaseException as error:  # noqa: BLE001 - handed back to the submitter
                    future.set_exception(error)
                    continue
                self._sinks[request.request_id] = sink
                future.set_result(request.request_id)
            elif kind == "abort":
                self._dispatch(self.engine.abort(payload))

    def _dispatch(self, events: list[Event]) -> None:
        for event in events:
            sink = self._sinks.get(event.request_id)
            if sink is None:
                continue
            if _is_final(event):
                del self._sinks[event.request_id]
            try:
                sink(event)
            except Exception:  # noqa: BLE001 - a broken consumer must not stop the engine
                logger.exception("event sink for %s failed", event.request_id)

    def _fail_everything(self, error: BaseException, fatal: bool = True) -> None:
        if fatal:
            logger.exception("engine step failed; failing all requests", exc_info=error)
            self.error = error
        for request_id in list(self._sinks):
            try:
                self.engine.abort(request_id)
            except Exception:  # noqa: BLE001 - the engine is already broken
                pass
            self._dispatch([Failed(request_id, error)])
        while not self._commands.empty():
            kind, _, future = self._commands.get_nowait()
            if future is not None:
                future.set_exception(EngineUnhealthy(str(error)))


class AsyncEngine:
    """asyncio front end over an EngineThread (for servers)."""

    def __init__(self, thread: EngineThread) -> None:
        self.thread = thread

    async def generate(self, inputs: Any, params: SamplingParams | None = None,
                       request_id: str | None = None) -> AsyncIterator[Event]:
        """Events of one request; leaving the loop early (or a client disconnect) aborts it."""
        loop = asyncio.get_running_loop()
        events: asyncio.Queue[Event] = asyncio.Queue()

        def sink(event: Event) -> None:
            loop.call_soon_threadsafe(events.put_nowait, event)

        rid = await loop.run_in_executor(None, self.thread.submit, inputs, params, sink, request_id)
        finished = False
        try:
            while not finished:
                event = await events.get()
                finished = _is_final(event)
                yield event
        finally:
            if not finished:
                self.thread.abort(rid)

    async def abort(self, request_id: str) -> None:
        self.thread.abort(request_id)

    @property
    def is_healthy(self) -> bool:
        return self.thread.is_healthy

    def check_health(self) -> None:
        self.thread.check_health()
