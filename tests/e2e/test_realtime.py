"""WS /v1/realtime in both dialects, end to end: the official `openai` client (GA and beta) and raw `websockets`.

Speech comes from espeak-ng. Every server event is validated against the openai package's own pydantic
types for the connection's dialect, so shapes are checked field by field, not just by name.
"""
from __future__ import annotations

import asyncio
import base64
import json
import time

import numpy as np
import openai
import pytest
import websockets
from openai.types.beta.realtime import RealtimeServerEvent as BetaServerEvent
from openai.types.realtime import RealtimeServerEvent as GAServerEvent
import typing

from tests.serving_fixtures import API_KEY, MODEL, b64, pcm16, shared_server, speech

pytestmark = pytest.mark.timeout(300)


def _by_type(union) -> dict[str, type]:
    """The SDK's server-event union as {event type: pydantic class}."""
    members = typing.get_args(typing.get_args(union)[0])
    return {typing.get_args(m.model_fields["type"].annotation)[0]: m for m in members}


EVENT_TYPES = {"ga": _by_type(GAServerEvent), "beta": _by_type(BetaServerEvent)}
GA_ONLY = {"response.output_audio.delta", "response.output_audio_transcript.delta", "conversation.item.added",
           "response.output_text.delta"}
BETA_ONLY = {"response.audio.delta", "response.audio_transcript.delta", "conversation.item.created",
             "response.text.delta", "conversation.created"}


@pytest.fixture(scope="module")
def server():
    return shared_server()


def silence(seconds: float, rate: int = 24000) -> np.ndarray:
    return np.zeros(int(seconds * rate), np.float32)


class Session:
    """A connection (official client or raw socket) that validates every event it receives."""

    def __init__(self, dialect: str, send, recv) -> None:
        self.dialect, self._send, self._recv = dialect, send, recv
        self.events: list[dict] = []
        self.unchecked: set[str] = set()        # event types a test knowingly takes outside the SDK schema

    async def send(self, event: dict) -> None:
        await self._send(event)

    async def recv(self, timeout: float = 60) -> dict:
        event = json.loads(await asyncio.wait_for(self._recv(), timeout))
        model = EVENT_TYPES[self.dialect].get(event["type"])
        assert model is not None, f"{event['type']} is not a {self.dialect} server event"
        if event["type"] not in self.unchecked:
            model.model_validate(event)                        # the shape OpenAI's SDK expects
        foreign = BETA_ONLY if self.dialect == "ga" else GA_ONLY
        assert event["type"] not in foreign, f"{event['type']} in a {self.dialect} session"
        self.events.append(event)
        return event

    async def until(self, kind: str, timeout: float = 60) -> dict:
        while True:
            event = await self.recv(timeout)
            if event["type"] == kind:
                return event
            assert event["type"] != "error", event

    async def say(self, samples: np.ndarray, chunk_ms: int = 100, rate: int = 24000) -> None:
        data = pcm16(samples)
        step = rate * chunk_ms // 1000 * 2
        for i in range(0, len(data), step):
            await self.send({"type": "input_audio_buffer.append", "audio": b64(data[i:i + step])})


def types(events: list[dict]) -> list[str]:
    return [e["type"] for e in events]


def official_client(server) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=server.api_url, api_key=API_KEY, max_retries=0,
                              websocket_base_url=server.ws_url.removesuffix("/realtime"))


def raw_session(conn, dialect: str) -> Session:
    async def send(event: dict) -> None:
        await conn.send(json.dumps(event))
    return Session(dialect, send, conn.recv)


def client_session(conn, dialect: str) -> Session:
    """The official client's connection: it serialises events itself; we read the raw JSON to validate it."""
    return Session(dialect, conn.send, conn.recv_bytes)


async def wait_idle(server, timeout: float = 5.0) -> None:
    """The engine holds no request: every generation finished or was aborted."""
    deadline = time.time() + timeout
    while server.omni.engine.scheduler.has_work:
        assert time.time() < deadline, "the engine still has work"
        await asyncio.sleep(0.01)


def test_ga_voice_turn_with_official_client(server):
    async def run():
        async with official_client(server).realtime.connect(model=MODEL) as conn:
            s = client_session(conn, "ga")
            created = await s.recv()
            assert created["type"] == "session.created" and created["session"]["type"] == "realtime"
            await s.send({"type": "session.update", "session": {
                "type": "realtime", "max_output_tokens": 6, "audio": {"output": {"voice": "chelsie"}}}})
            updated = await s.until("session.updated")
            assert updated["session"]["audio"]["output"]["voice"] == "chelsie"
            before = server.client.metrics.speculative["adopted"]
            await s.say(np.concatenate([silence(0.6), speech("What color is the circle?"), silence(1.0)]))
            done = await s.until("response.done")
            return s, done, server.client.metrics.speculative["adopted"] - before

    s, done, adopted = asyncio.run(run())
    order = types(s.events)
    expected = ["input_audio_buffer.speech_started", "input_audio_buffer.speech_stopped",
                "input_audio_buffer.committed", "conversation.item.added", "conversation.item.done",
                "response.created", "response.output_item.added", "conversation.item.added",
                "response.content_part.added", "response.output_audio.delta", "response.output_audio.done",
                "response.output_audio_transcript.done", "response.content_part.done",
                "response.output_item.done", "conversation.item.done", "response.done"]
    positions = [order.index(kind, order.index(expected[i - 1]) if i else 0) for i, kind in enumerate(expected)]
    assert positions == sorted(positions), order
    started = next(e for e in s.events if e["type"] == "input_audio_buffer.speech_started")
    stopped = next(e for e in s.events if e["type"] == "input_audio_buffer.speech_stopped")
    assert 100 <= started["audio_start_ms"] <= 600 and stopped["audio_end_ms"] > started["audio_start_ms"] + 800
    assert started["item_id"] == stopped["item_id"]
    audio = b"".join(base64.b64decode(e["delta"]) for e in s.events if e["type"] == "response.output_audio.delta")
    assert len(audio) > 2 * 2400
    transcript = "".join(e["delta"] for e in s.events if e["type"] == "response.output_audio_transcript.delta")
    final = next(e for e in s.events if e["type"] == "response.output_audio_transcript.done")
    assert final["transcript"] == transcript
    response = done["response"]
    assert response["status"] == "incomplete" and response["status_details"]["reason"] == "max_output_tokens"
    assert response["output"][0]["content"][0] == {"type": "output_audio", "transcript": transcript}
    assert response["usage"]["output_token_details"]["text_tokens"] == 6
    assert adopted == 1                                   # the answer was prefilled during the closing silence


def test_pause_and_resume_inside_one_append(server):
    """A short pause starts a held answer; speech resuming in the same append discards it unseen."""
    async def run():
        async with official_client(server).realtime.connect(model=MODEL) as conn:
            s = client_session(conn, "ga")
            await s.recv()
            await s.send({"type": "session.update", "session": {"type": "realtime", "max_output_tokens": 4}})
            await s.until("session.updated")
            before = dict(server.client.metrics.speculative)
            words = speech("Hello there.")
            turn = np.concatenate([silence(0.4), words, silence(0.3), words, silence(1.0)])
            cut = int((0.4 + 0.3) * 24000) + len(words)
            lo, hi = cut - int(0.35 * 24000), cut + int(0.6 * 24000)   # the whole pause in one append
            await s.say(turn[:lo])
            await s.send({"type": "input_audio_buffer.append", "audio": b64(pcm16(turn[lo:hi]))})
            await s.say(turn[hi:])
            done = await s.until("response.done")
            after = server.client.metrics.speculative
            return s, done, {k: after[k] - before[k] for k in after}

    s, done, speculative = asyncio.run(run())
    assert speculative["discarded"] >= 1 and speculative["adopted"] == 1, speculative
    assert types(s.events).count("response.created") == 1 and done["response"]["status"] == "incomplete"
    assert types(s.events).count("input_audio_buffer.speech_started") == 1


def test_beta_dialect_with_official_client(server):
    async def run():
        async with official_client(server).beta.realtime.connect(model=MODEL) as conn:
            s = client_session(conn, "beta")
            assert (await s.recv())["type"] == "session.created"
            assert (await s.recv())["type"] == "conversation.created"
            await s.send({"type": "session.update", "session": {
                "modalities": ["text", "audio"], "voice": "aiden", "turn_detection": None, "temperature": 0,
                "max_response_output_tokens": 5}})
            session = (await s.until("session.updated"))["session"]
            assert session["voice"] == "aiden" and session["turn_detection"] is None
            await s.send({"type": "conversation.item.create", "item": {
                "type": "message", "role": "user", "content": [{"type": "input_text", "text": "Hello world!"}]}})
            created = await s.until("conversation.item.created")
            assert created["item"]["content"] == [{"type": "input_text", "text": "Hello world!"}]
            await s.send({"type": "response.create"})
            spoken = await s.until("response.done")
            await s.send({"type": "response.create", "response": {"modalities": ["text"]}})
            written = await s.until("response.done")
            return s, spoken, written

    s, spoken, written = asyncio.run(run())
    kinds = set(types(s.events))
    assert {"response.audio.delta", "response.audio_transcript.delta", "response.audio.done",
            "response.text.delta", "response.text.done", "conversation.item.created"} <= kinds
    assert spoken["response"]["modalities"] == ["text", "audio"] and spoken["response"]["voice"] == "aiden"
    assert written["response"]["output"][0]["content"][0]["type"] == "text"
    text = "".join(e["delta"] for e in s.events if e["type"] == "response.text.delta")
    assert written["response"]["output"][0]["content"][0]["text"] == text


def test_dialect_follows_the_first_event_without_a_hint(server):
    async def run():
        headers = {"Authorization": f"Bearer {API_KEY}"}
        async with websockets.connect(server.ws_url + f"?model={MODEL}", additional_headers=headers) as ws:
            s = raw_session(ws, "ga")
            assert (await s.recv())["session"]["type"] == "realtime"          # GA until the client says otherwise
            await ws.send(json.dumps({"type": "session.update", "session": {"voice": "ethan", "modalities": ["text"]}}))
            s.dialect = "beta"
            session = (await s.until("session.updated"))["session"]
            assert session["modalities"] == ["text"] and "type" not in session
            async with websockets.connect(server.ws_url + "?dialect=ga", additional_headers=headers) as ga:
                g = raw_session(ga, "ga")
                await g.recv()
                await ga.send(json.dumps({"type": "session.update", "session": {"voice": "ethan"}}))
                error = await g.recv()
                assert error["type"] == "error" and error["error"]["param"] == "session.type"

    asyncio.run(run())


def test_sixteen_khz_input_and_manual_commit(server):
    async def run():
        async with official_client(server).realtime.connect(model=MODEL) as conn:
            s = client_session(conn, "ga")
            s.unchecked.add("session.updated")      # 16 kHz input is our extension; the SDK types only 24000
            await s.recv()
            await s.send({"type": "session.update", "session": {
                "type": "realtime", "output_modalities": ["text"], "max_output_tokens": 3,
                "audio": {"input": {"format": {"type": "audio/pcm", "rate": 16000}, "turn_detection": None}}}})
            session = (await s.until("session.updated"))["session"]
            assert session["audio"]["input"]["format"]["rate"] == 16000
            assert session["audio"]["input"]["turn_detection"] is None
            await s.say(speech("Hello there", rate=16000), rate=16000)
            await s.send({"type": "input_audio_buffer.commit"})
            committed = await s.until("input_audio_buffer.committed")
            await s.send({"type": "input_audio_buffer.append", "audio": b64(pcm16(silence(0.2, 16000)))})
            await s.send({"type": "input_audio_buffer.clear"})
            await s.until("input_audio_buffer.cleared")
            await s.send({"type": "response.create"})
            return s, committed, await s.until("response.done")

    s, committed, done = asyncio.run(run())
    assert "input_audio_buffer.speech_started" not in types(s.events)          # VAD off: nothing automatic
    assert done["response"]["status"] == "incomplete" and done["response"]["output_modalities"] == ["text"]
    assert any(e["type"] == "response.output_text.delta" for e in s.events)
    assert committed["item_id"]


def deltas(s: Session, kind: str, item_id: str) -> list[dict]:
    name = {"audio": "response.output_audio.delta", "transcript": "response.output_audio_transcript.delta"}[kind]
    return [e for e in s.events if e["type"] == name and e["item_id"] == item_id]


def heard(s: Session, item_id: str) -> int:
    """Milliseconds of an item's audio received so far."""
    samples = sum(len(base64.b64decode(e["delta"])) // 2 for e in deltas(s, "audio", item_id))
    return samples * 1000 // 24000


def test_barge_in_truncate_and_second_turn(server):
    """Speaking over the answer cancels it at once; truncate keeps what was heard; turn 2 sees exactly that."""
    async def run():
        async with official_client(server).realtime.connect(model=MODEL) as conn:
            s = client_session(conn, "ga")
            await s.recv()
            await s.send({"type": "session.update", "session": {
                "type": "realtime", "max_output_tokens": 300, "temperature": 0}})
            await s.until("session.updated")
            await s.say(np.concatenate([silence(0.4), speech("Tell me a long story."), silence(1.0)]))
            answer_item = (await s.until("response.output_audio.delta"))["item_id"]
            while heard(s, answer_item) < 480 and len(deltas(s, "transcript", answer_item)) < 30:
                await s.recv()                                # let some of the answer play first
            interruption = speech("Stop, what color is the square?")
            await s.say(interruption[:len(interruption) // 2])      # the user starts talking over the answer
            cancelled = await s.until("response.done")
            await wait_idle(server)
            heard_ms = heard(s, answer_item) // 2             # the client had played half of what arrived
            await s.send({"type": "conversation.item.truncate", "item_id": answer_item, "content_index": 0,
                          "audio_end_ms": heard_ms})
            truncated = await s.until("conversation.item.truncated")
            await s.say(np.concatenate([interruption[len(interruption) // 2:], silence(1.0)]))
            await s.send({"type": "conversation.item.retrieve", "item_id": answer_item})
            kept = (await s.until("conversation.item.retrieved"))["item"]["content"][0]["transcript"]
            second = await s.until("response.done")           # the barge-in turn gets its own answer
            await s.send({"type": "conversation.item.delete", "item_id": answer_item})
            await s.until("conversation.item.deleted")
            await s.send({"type": "conversation.item.delete", "item_id": second["response"]["output"][0]["id"]})
            await s.until("conversation.item.deleted")
            await s.send({"type": "response.create", "response": {"max_output_tokens": 1}})
            third = await s.until("response.done")
            return s, answer_item, cancelled, truncated, kept, second, third, heard_ms

    s, item, cancelled, truncated, kept, second, third, heard_ms = asyncio.run(run())
    order = types(s.events)
    barge = order.index("input_audio_buffer.speech_started", order.index("response.output_audio.delta"))
    late = [e for e in s.events[barge:] if e.get("item_id") == item and e["type"].endswith(".delta")]
    assert late == []                                     # no delta of the interrupted answer after barge-in
    assert cancelled["response"]["status"] == "cancelled"
    assert cancelled["response"]["status_details"]["reason"] == "turn_detected"
    full = cancelled["response"]["output"][0]["content"][0]["transcript"]
    assert truncated["audio_end_ms"] == heard_ms and full.startswith(kept) and len(kept) <= len(full)
    # Turn 2 was conditioned on exactly the kept transcript: removing that item removes its tokens.
    processor = shared_server().omni.processor
    with_it = [{"role": "user", "content": "x"}, {"role": "assistant", "content": kept},
               {"role": "user", "content": "y"}]
    without = [with_it[0], with_it[2]]
    n = lambda conv: int(processor(conv).input_ids.shape[1])  # noqa: E731
    second_item = second["response"]["output"][0]
    with_both = second["response"]["usage"]["input_tokens"]
    assert second_item["status"] in ("completed", "incomplete")
    assert kept, "the test answer should have started speaking before the barge-in"
    expected = n(with_it) - n(without)
    assert with_both - third["response"]["usage"]["input_tokens"] == expected
