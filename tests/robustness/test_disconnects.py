"""A client that goes away frees its engine slot at once: streaming, non-streaming and realtime.

"At once" is checked against what the generation would otherwise take: each request asks for far more
tokens than the test waits for, and the engine must hold no request shortly after the disconnect.
"""
from __future__ import annotations

import asyncio
import json
import time

import httpx
import pytest
import websockets

from tests.serving_fixtures import API_KEY, MODEL, metric, shared_server

pytestmark = pytest.mark.timeout(300)
AUTH = {"Authorization": f"Bearer {API_KEY}"}
LONG = {"model": MODEL, "messages": [{"role": "user", "content": "Tell me everything."}], "max_tokens": 900,
        "temperature": 0}


@pytest.fixture(scope="module")
def server():
    return shared_server()


def engine_state(server) -> dict[str, float]:
    text = httpx.get(server.base_url + "/metrics").text
    return {name: metric(text, f"omnistream_{name}") for name in (
        "active_streams", "engine_running_requests", "engine_queue_depth", "engine_cache_slots_free",
        "engine_cache_slots_total", "aborted_requests_total")}


def wait_released(server, aborted_before: float, timeout: float = 3.0) -> dict[str, float]:
    """Poll until nothing runs and every slot is free; fail after `timeout` seconds."""
    deadline = time.time() + timeout
    while True:
        state = engine_state(server)
        if state["active_streams"] == 0 and state["engine_running_requests"] == 0 \
                and state["engine_cache_slots_free"] == state["engine_cache_slots_total"] \
                and state["aborted_requests_total"] > aborted_before:
            return state
        assert time.time() < deadline, f"not released after {timeout}s: {state}"
        time.sleep(0.02)


def test_streaming_client_disconnect_frees_the_slot(server):
    before = engine_state(server)["aborted_requests_total"]
    body = {**LONG, "stream": True, "modalities": ["text", "audio"], "audio": {"voice": "ethan", "format": "pcm16"}}
    with httpx.Client(base_url=server.base_url, headers=AUTH, timeout=60) as client:
        with client.stream("POST", "/v1/chat/completions", json=body) as response:
            assert response.status_code == 200
            lines = response.iter_lines()
            got = [next(lines) for _ in range(6)]
            assert any(line.startswith("data: ") for line in got)
            assert engine_state(server)["engine_running_requests"] == 1
    started = time.time()
    wait_released(server, before)
    assert time.time() - started < 3.0


def test_non_streaming_client_disconnect_frees_the_slot(server):
    before = engine_state(server)["aborted_requests_total"]
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(server.api_url + "/chat/completions", headers=AUTH, json=LONG, timeout=httpx.Timeout(60, read=0.5))
    wait_released(server, before)


def test_many_simultaneous_disconnects_leak_nothing(server):
    before = engine_state(server)["aborted_requests_total"]

    async def one(client: httpx.AsyncClient, i: int) -> None:
        body = {**LONG, "stream": True, "messages": [{"role": "user", "content": f"Story number {i}"}]}
        async with client.stream("POST", "/v1/chat/completions", json=body) as response:
            async for line in response.aiter_lines():
                if line.startswith("data: {"):
                    break                               # leave after the first chunk

    async def run():
        async with httpx.AsyncClient(base_url=server.base_url, headers=AUTH, timeout=60) as client:
            await asyncio.gather(*(one(client, i) for i in range(12)))

    asyncio.run(run())
    state = wait_released(server, before + 11)
    assert state["aborted_requests_total"] >= before + 12
    response = httpx.post(server.api_url + "/chat/completions", headers=AUTH, json={**LONG, "max_tokens": 3})
    assert response.status_code == 200                  # and the server still answers


def test_realtime_disconnect_mid_answer_frees_the_slot(server):
    before = engine_state(server)["aborted_requests_total"]

    async def run():
        async with websockets.connect(server.ws_url + f"?model={MODEL}", additional_headers=AUTH) as ws:
            await ws.recv()
            await ws.send(json.dumps({"type": "conversation.item.create", "item": {
                "type": "message", "role": "user", "content": [{"type": "input_text", "text": "Talk a lot."}]}}))
            await ws.send(json.dumps({"type": "response.create", "response": {"max_output_tokens": 900}}))
            while json.loads(await ws.recv())["type"] != "response.output_audio.delta":
                pass
            assert engine_state(server)["engine_running_requests"] == 1
        # leaving the block closes the socket mid-answer

    asyncio.run(run())
    wait_released(server, before)
    assert engine_state(server)["engine_queue_depth"] == 0
