"""Bad input gets an OpenAI-shaped error (4xx over HTTP, an `error` event over the WebSocket), never a crash,
and the server keeps serving everyone else: every test ends by checking a good request still works.
"""
from __future__ import annotations

import asyncio
import json

import httpx
import pytest
import websockets

from tests.serving_fixtures import API_KEY, MAX_BODY, MODEL, b64, shared_server, wav_bytes

pytestmark = pytest.mark.timeout(300)
AUTH = {"Authorization": f"Bearer {API_KEY}"}


@pytest.fixture(scope="module")
def server():
    return shared_server()


@pytest.fixture(scope="module")
def http(server):
    with httpx.Client(base_url=server.base_url, headers=AUTH, timeout=120) as client:
        yield client


def chat(http: httpx.Client, **fields) -> httpx.Response:
    body = {"model": MODEL, "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 2, **fields}
    return http.post("/v1/chat/completions", json=body)


def error_of(response: httpx.Response, status: int) -> dict:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"message", "type", "param", "code"}
    assert body["error"]["message"]
    return body["error"]


def still_serving(http: httpx.Client) -> None:
    response = chat(http, temperature=0)
    assert response.status_code == 200 and response.json()["choices"][0]["message"]["content"]


def user(*parts) -> list[dict]:
    return [{"role": "user", "content": list(parts)}]


def test_malformed_json_and_content_types(http):
    raw = http.post("/v1/chat/completions", content=b'{"model": "x", "messages": [', headers={
        "Content-Type": "application/json"})
    assert error_of(raw, 400)["code"] == "invalid_json"
    form = http.post("/v1/chat/completions", content=b"model=x", headers={
        "Content-Type": "application/x-www-form-urlencoded"})
    assert error_of(form, 415)["code"] == "unsupported_media_type"
    assert error_of(http.post("/v1/chat/completions", json=[1, 2]), 400)["code"] == "invalid_json"
    not_utf8 = http.post("/v1/chat/completions", content=b"\xff\xfe{}", headers={"Content-Type": "application/json"})
    assert error_of(not_utf8, 400)["code"] == "invalid_json"
    assert error_of(http.get("/v1/nothing-here"), 404)["code"] == "not_found"
    assert error_of(http.get("/v1/chat/completions"), 405)
    still_serving(http)


def test_oversize_body(http):
    big = {"model": MODEL, "messages": [{"role": "user", "content": "x" * (MAX_BODY + 10)}]}
    assert error_of(http.post("/v1/chat/completions", json=big), 413)["code"] == "request_too_large"

    def chunks():                                     # no Content-Length: counted while reading
        for _ in range(MAX_BODY // 65536 + 2):
            yield b" " * 65536
    streamed = http.post("/v1/chat/completions", content=chunks(), headers={"Content-Type": "application/json"})
    assert error_of(streamed, 413)["code"] == "request_too_large"
    still_serving(http)


@pytest.mark.parametrize("fields, param, code", [
    ({"model": "gpt-4o"}, "model", "model_not_found"),
    ({"temperature": -1}, "temperature", "invalid_value"),
    ({"temperature": "hot"}, "temperature", "invalid_value"),
    ({"top_p": 0}, "top_p", "invalid_value"),
    ({"max_tokens": 0}, "max_tokens", "invalid_value"),
    ({"max_tokens": 10_000_000}, "max_tokens", "invalid_value"),
    ({"n": 2}, "n", "unsupported_parameter"),
    ({"tools": [{"type": "function", "function": {"name": "f"}}]}, "tools", "unsupported_parameter"),
    ({"logprobs": True}, "logprobs", "unsupported_parameter"),
    ({"frequency_penalty": 0.5}, "frequency_penalty", "unsupported_parameter"),
    ({"response_format": {"type": "json_object"}}, "response_format", "unsupported_parameter"),
    ({"stop": ["a", "b", "c", "d", "e"]}, "stop", "invalid_value"),
    ({"mystery": 1}, "mystery", "unknown_parameter"),
    ({"stream_options": {"include_usage": True}}, "stream_options", "invalid_value"),
    ({"messages": []}, "messages", "invalid_value"),
    ({"messages": [{"role": "wizard", "content": "x"}]}, "messages.0.role", "invalid_value"),
    ({"messages": [{"role": "tool", "content": "x", "tool_call_id": "1"}]}, "messages.0.role",
     "unsupported_parameter"),
    ({"messages": [{"role": "system", "content": "only a system prompt"}]}, "messages", "invalid_value"),
    ({"modalities": ["text", "audio"], "audio": {"voice": "alloy", "format": "wav"}}, "audio.voice",
     "unknown_voice"),
    ({"modalities": ["text", "audio"], "audio": {"voice": "ethan", "format": "ogg-vorbis"}}, "audio.format",
     "invalid_value"),
    ({"modalities": ["text", "audio"], "audio": {"voice": "ethan", "format": "mp3"}, "stream": True},
     "audio.format", "invalid_value"),
    ({"audio": {"voice": "ethan", "format": "wav"}}, "modalities", "invalid_value"),
])
def test_bad_parameters(http, fields, param, code):
    error = error_of(chat(http, **fields), 404 if code == "model_not_found" else 400)
    assert error["param"] == param and error["code"] == code, error


@pytest.mark.parametrize("part, param, code", [
    ({"type": "input_audio", "input_audio": {"data": "not base64!!", "format": "wav"}},
     "messages.0.content.0.input_audio.data", "invalid_media"),
    ({"type": "input_audio", "input_audio": {"data": b64(b"RIFF....garbage" * 10), "format": "wav"}},
     None, "invalid_media"),
    ({"type": "input_audio", "input_audio": {"data": b64(b"\x00\x01\x02"), "format": "pcm16"}},
     None, "invalid_media"),
    ({"type": "input_audio", "input_audio": {"data": b64(b"x"), "format": "midi"}},
     "messages.0.content.0.input_audio.format", "invalid_value"),
    ({"type": "image_url", "image_url": {"url": "data:image/png;base64," + b64(b"\x89PNG not really")}},
     None, "invalid_media"),
    ({"type": "image_url", "image_url": {"url": "data:image/png;base64,%%%"}},
     "messages.0.content.0.image_url.url", "invalid_media"),
    ({"type": "image_url", "image_url": {"url": "http://127.0.0.1:9/cat.png"}},
     "messages.0.content.0.image_url.url", "remote_media_disabled"),
    ({"type": "image_url", "image_url": {"url": "file:///etc/passwd"}},
     "messages.0.content.0.image_url.url", "invalid_url"),
    ({"type": "image_url", "image_url": {"url": "/etc/passwd"}},
     "messages.0.content.0.image_url.url", "invalid_url"),
    ({"type": "video_url", "video_url": {"url": "data:video/mp4;base64," + b64(b"\x00" * 64)}},
     None, "invalid_media"),
    ({"type": "image_url"}, "messages.0.content.0.image_url", "missing_required_parameter"),
    ({"type": "file", "file": {"file_id": "f"}}, "messages.0.content.0.type", "unsupported_parameter"),
    ({"type": "hologram"}, "messages.0.content.0.type", "invalid_value"),
])
def test_bad_media(http, part, param, code):
    error = error_of(chat(http, messages=user(part, {"type": "text", "text": "?"})), 400)
    assert error["code"] == code, error
    if param is not None:
        assert error["param"] == param, error
    still_serving(http)


def test_too_long_audio_is_a_limit_error(server, http):
    samples = __import__("numpy").zeros(16000 * 4, "float32")
    limits = server.omni.processor.limits
    server.omni.processor.limits = limits.__class__(**{**limits.__dict__, "max_audio_seconds": 2.0})
    try:
        part = {"type": "input_audio", "input_audio": {"data": b64(wav_bytes(samples, 16000)), "format": "wav"}}
        error = error_of(chat(http, messages=user(part)), 400)
        assert error["code"] == "limit_exceeded" and "max_audio_seconds" in error["message"]
    finally:
        server.omni.processor.limits = limits
    still_serving(http)


def test_api_key_required(server, http):
    for headers in ({}, {"Authorization": "Bearer wrong"}):
        response = httpx.post(server.api_url + "/chat/completions", headers=headers,
                              json={"model": MODEL, "messages": [{"role": "user", "content": "Hi"}]})
        assert error_of(response, 401)["code"] == "invalid_api_key"
    assert httpx.get(server.api_url + "/models").status_code == 401
    assert httpx.get(server.base_url + "/health").status_code == 200      # liveness stays open

    async def ws_denied(**kwargs):
        with pytest.raises(websockets.exceptions.InvalidStatus) as info:
            async with websockets.connect(server.ws_url, **kwargs):
                pass
        return info.value.response.status_code

    assert asyncio.run(ws_denied()) == 401
    assert asyncio.run(ws_denied(additional_headers={"Authorization": "Bearer nope"})) == 401
    assert asyncio.run(ws_denied(subprotocols=["realtime", "openai-insecure-api-key.nope"])) == 401

    async def browser_style():                        # browsers pass the key as a subprotocol
        async with websockets.connect(server.ws_url, subprotocols=["realtime", f"openai-insecure-api-key.{API_KEY}"]) \
                as ws:
            return ws.subprotocol, json.loads(await ws.recv())["type"]
    assert asyncio.run(browser_style()) == ("realtime", "session.created")
    still_serving(http)


def test_realtime_bad_events_keep_the_session(server, http):
    async def run():
        async with websockets.connect(server.ws_url + f"?model={MODEL}", additional_headers=AUTH) as ws:
            assert json.loads(await ws.recv())["type"] == "session.created"

            async def expect_error(payload, code: str, param: str | None = "ignore", binary: bool = False) -> None:
                await ws.send(payload if binary else (payload if isinstance(payload, str) else json.dumps(payload)))
                event = json.loads(await asyncio.wait_for(ws.recv(), 30))
                assert event["type"] == "error", event
                assert event["error"]["code"] == code, event
                if param != "ignore":
                    assert event["error"]["param"] == param, event
                if isinstance(payload, dict) and "event_id" in payload:
                    assert event["error"]["event_id"] == payload["event_id"]

            await expect_error("{not json", "invalid_json")
            await expect_error(b"\x00\x01", "invalid_event", binary=True)
            await expect_error({"no": "type"}, "invalid_event")
            await expect_error({"type": "response.dance", "event_id": "evt_1"}, "invalid_value", "type")
            await expect_error({"type": "input_audio_buffer.commit"}, "input_audio_buffer_commit_empty")
            await expect_error({"type": "response.cancel"}, "response_cancel_not_active")
            await expect_error({"type": "conversation.item.truncate", "item_id": "nope", "content_index": 0,
                                "audio_end_ms": 10}, "item_not_found", "item_id")
            await expect_error({"type": "conversation.item.delete", "item_id": "nope"}, "item_not_found")
            await expect_error({"type": "input_audio_buffer.append", "audio": "!!!"}, "invalid_value", "audio")
            await expect_error({"type": "input_audio_buffer.append", "audio": b64(b"abc")}, "invalid_value")
            await expect_error({"type": "session.update", "session": {"type": "realtime", "temperature": 9}},
                               "invalid_value", "session.temperature")
            await expect_error({"type": "session.update", "session": {"type": "realtime", "audio": {
                "output": {"voice": "alloy"}}}}, "unknown_voice", "session.audio.output.voice")
            await expect_error({"type": "session.update", "session": {"type": "realtime", "tools": [{"type": "x"}]}},
                               "unsupported_parameter", "session.tools")
            await expect_error({"type": "session.update", "session": {"type": "realtime", "audio": {
                "input": {"format": {"type": "audio/pcmu"}}}}}, "unsupported_parameter")
            await expect_error({"type": "session.update", "session": {"type": "realtime", "wat": 1}},
                               "unknown_parameter", "session.wat")
            await expect_error({"type": "response.create"}, "conversation_empty")
            await expect_error({"type": "conversation.item.create", "item": {"type": "message", "role": "user",
                                "content": [{"type": "text", "text": "beta part in GA"}]}}, "invalid_value",
                               "item.content.0.type")
            await expect_error({"type": "output_audio_buffer.clear"}, "unsupported_parameter")
            await expect_error({"type": "session.update", "session": {"type": "realtime", "model": "gpt-realtime"}},
                               "model_not_found", "session.model")
            # The session still works after all of that.
            await ws.send(json.dumps({"type": "conversation.item.create", "item": {
                "type": "message", "role": "user", "content": [{"type": "input_text", "text": "Hello"}]}}))
            await ws.send(json.dumps({"type": "response.create", "response": {
                "output_modalities": ["text"], "max_output_tokens": 2}}))
            await ws.send(json.dumps({"type": "response.create"}))
            seen = []
            while "response.done" not in seen:
                seen.append(json.loads(await asyncio.wait_for(ws.recv(), 30))["type"])
            assert "error" in seen                     # the second response.create while one is active
            return seen

    assert "response.output_text.delta" in asyncio.run(run())
    still_serving(http)


def test_realtime_unknown_model(server):
    async def run():
        async with websockets.connect(server.ws_url + "?model=gpt-realtime", additional_headers=AUTH) as ws:
            event = json.loads(await ws.recv())
            with pytest.raises(websockets.exceptions.ConnectionClosed):
                await asyncio.wait_for(ws.recv(), 10)
            return event
    event = asyncio.run(run())
    assert event["type"] == "error" and event["error"]["code"] == "model_not_found"


def test_health_and_metrics_after_abuse(server):
    metrics = httpx.get(server.base_url + "/metrics").text
    assert 'omnistream_requests_total{endpoint="/v1/chat/completions",status="400"}' in metrics
    assert httpx.get(server.base_url + "/health").json()["status"] == "ok"
