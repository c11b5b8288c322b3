"""The built-in model behind the server: right answers through the OpenAI API and the realtime voice path.

The golden questions are ones the shipped built-in model answers correctly (expected = the world's ground truth)
through the Python API; here they go through HTTP + JSON + base64 media, and as speech over the WebSocket.
"""
from __future__ import annotations

import asyncio
import base64
import io
import json
import wave

import numpy as np
import openai
import pytest
import websockets
from PIL import Image

from omnistream.api import BUILTIN_MODEL
from tests.serving_fixtures import API_KEY, pcm16, start_server

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600),
              pytest.mark.skipif(not (BUILTIN_MODEL / "model.safetensors").is_file(),
                                 reason="the built-in model's weights are not installed")]
GOLDEN_SEED = 4242
GOLDEN = [("color", 2), ("exists", 0), ("count", 2), ("shape_of_color", 1)]  # right as typed and as spoken questions


@pytest.fixture(scope="module")
def server():
    running = start_server(builtin=True)
    yield running
    running.stop()


def golden(spoken: bool):
    from omnistream.synth import make_examples

    out = []
    for task, index in GOLDEN:
        examples = make_examples("test", index + 1, GOLDEN_SEED, {task: 1.0}, spoken_fraction=1.0 if spoken else 0.0)
        out.append(examples[index])
    return out


def png_url(image: np.ndarray) -> str:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def wav_base64(wave_: np.ndarray, rate: int) -> str:
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(pcm16(np.asarray(wave_)))
    return base64.b64encode(buffer.getvalue()).decode()


def openai_content(content: list[dict]) -> list[dict]:
    parts = []
    for part in content:
        if part["type"] == "image":
            parts.append({"type": "image_url", "image_url": {"url": png_url(part["image"])}})
        elif part["type"] == "text":
            parts.append(part)
        elif part["type"] == "audio":
            parts.append({"type": "input_audio", "input_audio": {"data": wav_base64(*part["audio"]), "format": "wav"}})
        else:
            raise AssertionError(f"unexpected part {part['type']}")
    return parts


def test_golden_answers_over_chat_completions(server):
    client = openai.OpenAI(base_url=server.api_url, api_key=API_KEY, max_retries=0, timeout=300)
    for example in golden(spoken=False):
        messages = [{"role": "user", "content": openai_content(example.messages[0]["content"])}]
        reply = client.chat.completions.create(model=server.client.info.name, messages=messages, temperature=0,
                                               max_tokens=48, modalities=["text", "audio"],
                                               audio={"voice": "chelsie", "format": "wav"})
        message = reply.choices[0].message
        assert message.content == example.answer, example.question
        assert message.audio.transcript == example.answer and len(base64.b64decode(message.audio.data)) > 4800


def test_spoken_question_over_chat_completions_thinks_then_answers(server):
    """The built-in model writes a spoken question down in a thinking span first: it comes back as
    reasoning_content (whole and streamed), never in the content, the transcript or the speech."""
    from omnistream.synth.sentences import spoken_form

    client = openai.OpenAI(base_url=server.api_url, api_key=API_KEY, max_retries=0, timeout=300)
    example = golden(spoken=True)[1]
    messages = [{"role": "user", "content": openai_content(example.messages[0]["content"])}]
    options = dict(model=server.client.info.name, messages=messages, temperature=0, max_tokens=48,
                   modalities=["text", "audio"], audio={"voice": "ethan", "format": "pcm16"})
    message = client.chat.completions.create(**options).choices[0].message
    assert message.content == example.answer and message.audio.transcript == example.answer
    assert message.reasoning_content == spoken_form(example.question)
    thinking, content = "", ""
    for chunk in client.chat.completions.create(**options, stream=True):
        if chunk.choices:
            delta = chunk.choices[0].delta
            thinking += getattr(delta, "reasoning_content", None) or ""
            content += delta.content or ""
    assert (thinking, content) == (message.reasoning_content, message.content)


def test_spoken_question_over_realtime(server):
    example = next(e for e in golden(spoken=True) if e.question_modality == "speech")
    image = next(p["image"] for p in example.messages[0]["content"] if p["type"] == "image")
    wave, rate = next(p["audio"] for p in example.messages[0]["content"] if p["type"] == "audio")

    async def run():
        url = server.ws_url + f"?model={server.client.info.name}&input_sample_rate={rate}"
        async with websockets.connect(url, additional_headers={"Authorization": f"Bearer {API_KEY}"}) as ws:
            await ws.recv()
            await ws.send(json.dumps({"type": "session.update", "session": {
                "type": "realtime", "temperature": 0, "max_output_tokens": 48, "audio": {
                    "input": {"turn_detection": None}, "output": {"voice": "ethan"}}}}))
            await ws.send(json.dumps({"type": "conversation.item.create", "item": {
                "type": "message", "role": "user", "content": [
                    {"type": "input_image", "image_url": png_url(image)},
                    {"type": "input_audio", "audio": base64.b64encode(pcm16(np.asarray(wave))).decode()}]}}))
            await ws.send(json.dumps({"type": "response.create"}))
            audio = 0
            while True:
                event = json.loads(await asyncio.wait_for(ws.recv(), 120))
                assert event["type"] != "error", event
                if event["type"] == "response.output_audio.delta":
                    audio += len(base64.b64decode(event["delta"]))
                if event["type"] == "response.done":
                    return event, audio

    done, audio = asyncio.run(run())
    transcript = done["response"]["output"][0]["content"][0]["transcript"]
    assert transcript == example.answer and done["response"]["status"] == "completed"
    assert audio > 24000 * 2 * 0.2
