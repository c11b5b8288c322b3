"""The OpenAI chat-completions API, end to end: the official `openai` client against a real server and engine.

Greedy answers through the server must equal the same request made through the Python API (`Omni.chat`), so
these tests check the wiring exactly even though the test model has random weights.
"""
from __future__ import annotations

import asyncio
import base64
import io

import av
import httpx
import numpy as np
import openai
import pytest

from tests.serving_fixtures import API_KEY, MODEL, b64, metric, mp4_data_url, png_data_url, shared_server, \
    speech, wav_bytes

pytestmark = pytest.mark.timeout(300)


@pytest.fixture(scope="module")
def server():
    return shared_server()


@pytest.fixture(scope="module")
def client(server):
    return openai.OpenAI(base_url=server.api_url, api_key=API_KEY, max_retries=0, timeout=120)


def ask(text: str) -> list[dict]:
    return [{"role": "user", "content": text}]


def python_api_text(server, messages, **options) -> str:
    """The same request through the Python API (the reference for the server's answers)."""
    return server.omni.chat(messages, return_audio=False, **options).text


def decode(data: bytes) -> tuple[np.ndarray, int]:
    with av.open(io.BytesIO(data)) as container:
        stream = container.streams.audio[0]
        frames = [f.to_ndarray().reshape(f.to_ndarray().shape[0], -1)[0] for f in container.decode(stream)]
        return np.concatenate(frames).astype(np.float32), stream.rate


def test_health_models_voices(server, client):
    health = httpx.get(server.base_url + "/health").json()
    assert health == {"status": "ok", "model": MODEL}
    models = client.models.list()
    assert [m.id for m in models.data] == [MODEL]
    assert client.models.retrieve(MODEL).id == MODEL
    voices = httpx.get(server.api_url + "/voices", headers={"Authorization": f"Bearer {API_KEY}"}).json()
    assert set(voices["data"]) == {"chelsie", "ethan", "aiden"} and voices["default"] == "ethan"


def test_text_answer_equals_python_api(server, client):
    messages = ask("What is in this image? Describe the audio.")
    reply = client.chat.completions.create(model=MODEL, messages=messages, temperature=0, max_tokens=8)
    expected = python_api_text(server, messages, temperature=0, max_new_tokens=8)
    choice = reply.choices[0]
    assert choice.message.content == expected and expected
    assert choice.message.audio is None and choice.finish_reason == "length"
    assert reply.object == "chat.completion" and reply.model == MODEL and len(reply.choices) == 1
    assert reply.usage.completion_tokens == 8
    assert reply.usage.total_tokens == reply.usage.prompt_tokens + 8


def test_streamed_text_equals_non_streamed(client):
    messages = ask("The red circle moves to the left.")
    whole = client.chat.completions.create(model=MODEL, messages=messages, temperature=0,
                                           max_completion_tokens=10).choices[0].message.content
    chunks = list(client.chat.completions.create(model=MODEL, messages=messages, temperature=0,
                                                 max_completion_tokens=10, stream=True,
                                                 stream_options={"include_usage": True}))
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == whole
    finals = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finals == ["length"]
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == 10
    assert len({c.id for c in chunks}) == 1


@pytest.mark.parametrize("fmt", ["wav", "flac", "mp3", "opus", "aac", "pcm16"])
def test_audio_answer_formats(client, fmt):
    reply = client.chat.completions.create(model=MODEL, messages=ask("Hello world!"), temperature=0, max_tokens=4,
                                           modalities=["text", "audio"], audio={"voice": "chelsie", "format": fmt})
    message = reply.choices[0].message
    audio = message.audio
    assert audio.id.startswith("audio_") and audio.expires_at > 0
    assert audio.transcript == message.content and message.content
    data = base64.b64decode(audio.data)
    if fmt == "pcm16":
        samples, rate = np.frombuffer(data, "<i2").astype(np.float32) / 32768, 24000
    else:
        samples, rate = decode(data)
        assert rate in (24000, 48000)          # opus always decodes at 48 kHz
    assert samples.size > rate * 0.05 and np.abs(samples).max() > 0
    assert reply.usage.completion_tokens_details.audio_tokens > 0


def test_streamed_audio_pcm16_and_wav(client):
    for fmt in ("pcm16", "wav"):
        stream = client.chat.completions.create(model=MODEL, messages=ask("Hello world!"), temperature=0,
                                                max_tokens=6, stream=True, modalities=["text", "audio"],
                                                audio={"voice": "ethan", "format": fmt})
        audio_deltas, text, transcript = [], [], []
        for chunk in stream:
            if not chunk.choices:
                continue
            delta = chunk.choices[0].delta
            text.append(delta.content or "")
            extra = delta.audio.model_dump(exclude_none=True) if delta.audio is not None else None
            if extra:
                audio_deltas.append(extra)
                transcript.append(extra.get("transcript") or "")
        assert audio_deltas[0]["id"].startswith("audio_") and "expires_at" in audio_deltas[0]
        assert all("id" not in d for d in audio_deltas[1:])
        assert "".join(transcript) == "".join(text) and "".join(text)
        pcm = b"".join(base64.b64decode(d["data"]) for d in audio_deltas if d.get("data"))
        if fmt == "wav":
            assert pcm[:4] == b"RIFF" and pcm[8:16] == b"WAVEfmt " and pcm.count(b"RIFF") == 1
            samples, rate = decode(pcm)
            assert rate == 24000 and samples.size == (len(pcm) - 44) // 2
        else:
            assert len(pcm) % 2 == 0 and len(pcm) > 2 * 2400


def test_audio_image_video_inputs(server, client):
    text_only = client.chat.completions.create(model=MODEL, messages=ask("Describe it."), temperature=0,
                                               max_tokens=2).usage.prompt_tokens
    audio_part = {"type": "input_audio", "input_audio": {"data": b64(wav_bytes(speech("What color is the circle?"),
                                                                                  24000)), "format": "wav"}}
    parts = {
        "audio": audio_part,
        "image": {"type": "image_url", "image_url": {"url": png_data_url(64)}},
        "video": {"type": "video_url", "video_url": {"url": mp4_data_url(4, 64)}},
    }
    for name, part in parts.items():
        messages = [{"role": "user", "content": [part, {"type": "text", "text": "Describe it."}]}]
        reply = client.chat.completions.create(model=MODEL, messages=messages, temperature=0, max_tokens=4)
        assert reply.usage.prompt_tokens > text_only + 4, name        # the media became prompt tokens
        converted = [{"role": "user", "content": [_as_inputs_part(part), {"type": "text", "text": "Describe it."}]}]
        assert reply.choices[0].message.content == python_api_text(server, converted, temperature=0,
                                                                   max_new_tokens=4), name


def test_low_detail_image_costs_fewer_prompt_tokens(server, client):
    def prompt_tokens(detail):
        image_url = {"url": png_data_url(768)} | ({"detail": detail} if detail else {})
        messages = [{"role": "user", "content": [{"type": "image_url", "image_url": image_url}]}]
        return client.chat.completions.create(model=MODEL, messages=messages, temperature=0,
                                              max_tokens=1).usage.prompt_tokens

    default, high, low = prompt_tokens(None), prompt_tokens("high"), prompt_tokens("low")
    assert default == high and default - low == (48 * 48 - 32 * 32) // 4   # a 768² image vs its 512² cap


def _as_inputs_part(part: dict) -> dict:
    if part["type"] == "input_audio":
        return {"type": "audio", "audio": base64.b64decode(part["input_audio"]["data"])}
    kind = part["type"].removesuffix("_url")
    url = part[part["type"]]["url"]
    return {"type": kind, kind: base64.b64decode(url.partition(",")[2])}


def test_speaker_alias_and_voice_checks(client):
    reply = client.chat.completions.create(model=MODEL, messages=ask("Hi"), temperature=0, max_tokens=3,
                                           modalities=["text", "audio"], extra_body={"speaker": "Aiden"})
    assert reply.choices[0].message.audio is not None          # vLLM-Omni style: speaker, wav by default
    with pytest.raises(openai.BadRequestError, match="disagree"):
        client.chat.completions.create(model=MODEL, messages=ask("Hi"), modalities=["text", "audio"],
                                       audio={"voice": "ethan", "format": "wav"}, extra_body={"speaker": "aiden"})
    with pytest.raises(openai.BadRequestError, match="unknown voice"):
        client.chat.completions.create(model=MODEL, messages=ask("Hi"), modalities=["text", "audio"],
                                       audio={"voice": "alloy", "format": "wav"})


def test_seed_stop_and_multi_turn(client):
    sampled = [client.chat.completions.create(model=MODEL, messages=ask("Numbers 0123456789"), temperature=1.0,
                                              seed=7, max_tokens=12).choices[0].message.content for _ in range(2)]
    assert sampled[0] == sampled[1]
    full = client.chat.completions.create(model=MODEL, messages=ask("Hello world!"), temperature=0,
                                          max_tokens=12).choices[0].message.content
    cut = full[len(full) // 2:len(full) // 2 + 2] or full[-2:]
    stopped = client.chat.completions.create(model=MODEL, messages=ask("Hello world!"), temperature=0,
                                             max_tokens=12, stop=[cut]).choices[0]
    assert stopped.finish_reason == "stop" and full.startswith(stopped.message.content)
    assert cut not in stopped.message.content
    first = client.chat.completions.create(model=MODEL, messages=ask("Hi"), temperature=0, max_tokens=3,
                                           modalities=["text", "audio"], audio={"voice": "ethan", "format": "wav"})
    turn2 = [*ask("Hi"), {"role": "assistant", "audio": {"id": first.choices[0].message.audio.id}}, *ask("More")]
    by_id = client.chat.completions.create(model=MODEL, messages=turn2, temperature=0, max_tokens=3)
    turn2_text = [*ask("Hi"), {"role": "assistant", "content": first.choices[0].message.content}, *ask("More")]
    by_text = client.chat.completions.create(model=MODEL, messages=turn2_text, temperature=0, max_tokens=3)
    assert by_id.choices[0].message.content == by_text.choices[0].message.content
    assert by_id.usage.prompt_tokens == by_text.usage.prompt_tokens


def test_sixteen_concurrent_streams_are_independent(server):
    prompts = [f"Numbers {i} and {i * 7 % 10}: the red circle {'moves' if i % 2 else 'stays'}." for i in range(16)]
    expected = [python_api_text(server, ask(p), temperature=0, max_new_tokens=10) for p in prompts]

    async def one(aclient, prompt, speak):
        extra = {"modalities": ["text", "audio"], "audio": {"voice": "ethan", "format": "pcm16"}} if speak else {}
        stream = await aclient.chat.completions.create(model=MODEL, messages=ask(prompt), temperature=0,
                                                       max_tokens=10, stream=True, **extra)
        return "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])

    async def everyone():
        aclient = openai.AsyncOpenAI(base_url=server.api_url, api_key=API_KEY, max_retries=0, timeout=300)
        return await asyncio.gather(*(one(aclient, p, i % 2 == 0) for i, p in enumerate(prompts)))

    answers = asyncio.run(everyone())
    assert answers == expected
    metrics = httpx.get(server.base_url + "/metrics").text
    assert metric(metrics, "omnistream_active_streams") == 0
    total = metric(metrics, "omnistream_engine_cache_slots_total")
    assert metric(metrics, "omnistream_engine_cache_slots_free") == total
    assert metric(metrics, "omnistream_time_to_first_audio_seconds_count") >= 8
    # where the engine's time went, per stage (cumulative seconds): every stage of a spoken answer ran
    for stage in ("prefill", "thinker_decode", "talker_decode", "code_predictor", "code2wav"):
        assert metric(metrics, f"omnistream_engine_stage_seconds_{stage}") > 0
