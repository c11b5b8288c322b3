"""POST /v1/chat/completions: OpenAI request → engine events → one ChatCompletion or an SSE chunk stream.

Text goes in `message.content` / `delta.content` even when audio is requested, and also in the audio's
`transcript` (OpenAI leaves `content` null in audio mode; clients written for vLLM read `content`, so we fill
both — see docs/serving.md). Streamed audio is base64 PCM16 at 24 kHz; with `format: "wav"` the first audio
delta starts with one WAV header (sizes marked unknown). Input problems found while preparing the request
(media decoding, limits, voice) are HTTP 4xx; the stream starts only after the engine accepted the request.
"""
from __future__ import annotations

import base64
import json
import logging
import secrets
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse

from omnistream.engine.events import AudioChunk, Done, Event, Failed, TextDelta
from omnistream.engine.request import SamplingParams
from omnistream.server.audio_codecs import encode_audio, float_to_pcm16, wav_header
from omnistream.server.engine_client import EngineClient
from omnistream.server.errors import APIError, bad_request, from_exception
from omnistream.server.messages import AudioMemory, to_conversation
from omnistream.server.protocol import (
    AUDIO_OUTPUT_FORMATS,
    STREAM_AUDIO_FORMATS,
    AudioRef,
    ChatCompletion,
    ChatCompletionChunk,
    ChatCompletionRequest,
    Choice,
    ChunkChoice,
    CompletionTokensDetails,
    Delta,
    DeltaAudio,
    MessageAudio,
    ResponseMessage,
    Usage,
    parse_request,
)

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class AudioPlan:
    voice: str
    format: str


@dataclass
class _Answer:
    """What a finished (or finishing) generation produced."""
    text: list[str] = field(default_factory=list)
    thinking: list[str] = field(default_factory=list)
    audio: list[np.ndarray] = field(default_factory=list)
    done: Done | None = None


async def create_chat_completion(http: Request, body: Any, client: EngineClient, memory: AudioMemory,
                                 allow_remote_media: bool) -> Response:
    request = parse_request(body)
    if request.model not in client.info.names:
        raise APIError(404, f"The model '{request.model}' does not exist; this server serves "
                            f"'{client.info.name}'.", param="model", code="model_not_found")
    audio = audio_plan(request, client)
    conversation = to_conversation(request.messages, allow_remote_media=allow_remote_media, audio_memory=memory)
    params = sampling_params(request, audio, client)
    use_aiv = bool(request.mm_processor_kwargs and request.mm_processor_kwargs.use_audio_in_video)
    inputs = await _prepare(client, conversation, use_aiv)
    events = client.stream(inputs, params)
    completion_id = "chatcmpl-" + secrets.token_hex(12)
    try:
        first = await _first_event(events)      # a Failed here (voice, context room) is still a 4xx
        if request.stream:
            chunks = _sse(_stream_chunks(first, events, request, audio, client, memory, completion_id), events)
            return StreamingResponse(chunks, media_type="text/event-stream",
                                     headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
        answer = await _collect(first, events, http)
    except BaseException:
        await events.aclose()                   # aborts the engine request if it is still running
        raise
    await events.aclose()
    return JSONResponse(_completion(answer, request, audio, client, memory, completion_id).model_dump(mode="json"))


def audio_plan(request: ChatCompletionRequest, client: EngineClient) -> AudioPlan | None:
    """Validate modalities / audio / speaker; None for a text-only answer."""
    voice_given = request.audio.voice if request.audio is not None else None
    if isinstance(voice_given, AudioRef):
        voice_given = voice_given.id
    if request.speaker is not None and voice_given is not None and request.speaker.lower() != voice_given.lower():
        raise bad_request(f"'speaker' ({request.speaker!r}) and 'audio.voice' ({voice_given!r}) disagree.",
                          "speaker")
    voice_given = voice_given or request.speaker
    if not request.wants_audio:
        if request.audio is not None:
            raise bad_request("'audio' was given but 'modalities' does not include \"audio\".", "modalities")
        if request.speaker is not None:
            raise bad_request("'speaker' was given but 'modalities' does not include \"audio\".", "modalities")
        return None
    if not client.info.has_speech:
        raise bad_request("This model answers in text only (it has no talker); remove \"audio\" from "
                          "'modalities'.", "modalities", "audio_not_supported")
    fmt = request.audio.format.lower() if request.audio is not None else "wav"
    if fmt not in AUDIO_OUTPUT_FORMATS:
        raise bad_request(f"Invalid value for 'audio.format': {fmt!r}; supported: {', '.join(AUDIO_OUTPUT_FORMATS)}.",
                          "audio.format")
    if request.stream and fmt not in STREAM_AUDIO_FORMATS:
        raise bad_request(f"'audio.format' {fmt!r} cannot be streamed; with stream=true use pcm16 or wav.",
                          "audio.format")
    voice = client.resolve_voice(voice_given)
    if voice is None:
        raise bad_request(f"Invalid value for 'audio.voice': unknown voice {voice_given!r}; this model has "
                          f"{', '.join(client.info.voices)}.", "audio.voice", "unknown_voice")
    return AudioPlan(voice, fmt)


def sampling_params(request: ChatCompletionRequest, audio: AudioPlan | None, client: EngineClient) -> SamplingParams:
    """The sampling fields the client set; unset ones take the checkpoint's generation defaults."""
    try:
        return client.sampling_params(
            temperature=request.temperature, top_p=request.top_p, top_k=request.top_k,
            repetition_penalty=request.repetition_penalty, max_new_tokens=request.max_new_tokens,
            stop=request.stop_list, seed=request.seed, voice=audio.voice if audio else None,
            return_audio=audio is not None)
    except Exception as e:  # noqa: BLE001 - RequestError naming the field
        raise _client_error(e) from None


async def _prepare(client: EngineClient, conversation: list[dict[str, Any]], use_aiv: bool) -> Any:
    try:
        return await client.prepare(conversation, use_audio_in_video=use_aiv)
    except Exception as e:  # noqa: BLE001 - OmniInputError → 400; anything else → 500
        raise from_exception(e) from None


# Engine field names → the request fields a chat-completions client sent.
_PARAMS = {"max_new_tokens": "max_tokens", "voice": "audio.voice", "return_audio": "modalities"}


def _client_error(error: BaseException) -> APIError:
    mapped = from_exception(error)
    mapped.param = _PARAMS.get(mapped.param, mapped.param)
    return mapped


async def _first_event(events: AsyncIterator[Event]) -> Event:
    try:
        first = await events.__anext__()
    except Exception as e:  # noqa: BLE001 - submission errors (RequestError, CapacityError, unhealthy)
        raise _client_error(e) from None
    if isinstance(first, Failed):
        raise _client_error(first.error)
    return first


async def _collect(first: Event, events: AsyncIterator[Event], http: Request) -> _Answer:
    """Gather a non-streamed answer; a client that goes away aborts the generation."""
    answer = _Answer()
    event: Event | None = first
    while event is not None:
        if isinstance(event, TextDelta):
            (answer.thinking if event.is_thinking else answer.text).append(event.text)
        elif isinstance(event, AudioChunk):
            answer.audio.append(event.samples)
        elif isinstance(event, Done):
            answer.done = event
            break
        elif isinstance(event, Failed):
            raise from_exception(event.error)
        if await http.is_disconnected():
            raise APIError(499, "client closed the request", type="server_error", code="client_disconnected")
        event = await anext(events, None)
    return answer


def _usage(done: Done | None) -> Usage:
    u = done.usage if done is not None else None
    if u is None:
        return Usage(prompt_tokens=0, completion_tokens=0, total_tokens=0)
    text = u.completion_tokens
    completion = text + u.audio_frames             # OpenAI counts audio tokens in completion_tokens
    return Usage(prompt_tokens=u.prompt_tokens, completion_tokens=completion,
                 total_tokens=u.prompt_tokens + completion,
                 completion_tokens_details=CompletionTokensDetails(reasoning_tokens=u.thinking_tokens,
                                                                   audio_tokens=u.audio_frames, text_tokens=text))


def _finish_reason(done: Done | None) -> str:
    return "length" if done is not None and done.finish_reason == "length" else "stop"


def _completion(answer: _Answer, request: ChatCompletionRequest, audio: AudioPlan | None, client: EngineClient,
                memory: AudioMemory, completion_id: str) -> ChatCompletion:
    text = "".join(answer.text)
    message_audio = None
    if audio is not None:
        samples = np.concatenate(answer.audio) if answer.audio else np.zeros(0, np.float32)
        audio_id = "audio_" + secrets.token_hex(12)
        data = encode_audio(samples, client.info.sample_rate, audio.format)
        message_audio = MessageAudio(id=audio_id, data=base64.b64encode(data).decode(),
                                     expires_at=memory.remember(audio_id, text), transcript=text)
    return ChatCompletion(id=completion_id, created=int(time.time()), model=request.model,
                          choices=[Choice(message=ResponseMessage(content=text, audio=message_audio,
                                                                  reasoning_content="".join(answer.thinking) or None),
                                          finish_reason=_finish_reason(answer.done))],
                          usage=_usage(answer.done))


async def _stream_chunks(first: Event, events: AsyncIterator[Event], request: ChatCompletionRequest,
                         audio: AudioPlan | None, client: EngineClient, memory: AudioMemory,
                         completion_id: str) -> AsyncIterator[dict[str, Any]]:
    created = int(time.time())
    include_usage = bool(request.stream_options and request.stream_options.include_usage)

    def chunk(delta: Delta, finish: str | None = None) -> dict[str, Any]:
        c = ChatCompletionChunk(id=completion_id, created=created, model=request.model,
                                choices=[ChunkChoice(delta=delta, finish_reason=finish)])
        return c.model_dump(mode="json", exclude={"usage"} if not include_usage else None)

    audio_id = "audio_" + secrets.token_hex(12)
    header_pending = audio is not None and audio.format == "wav"
    first_audio = True
    transcript: list[str] = []
    yield chunk(Delta(role="assistant", content=""))

    def audio_delta(**fields: Any) -> DeltaAudio:
        nonlocal first_audio
        if first_audio:
            first_audio = False
            fields.update(id=audio_id, expires_at=memory.remember(audio_id, ""))
        return DeltaAudio(**fields)

    event: Event | None = first
    while event is not None:
        if isinstance(event, TextDelta) and event.text and event.is_thinking:
            yield chunk(Delta(reasoning_content=event.text))
        elif isinstance(event, TextDelta) and event.text:
            transcript.append(event.text)
            yield chunk(Delta(content=event.text,
                              audio=audio_delta(transcript=event.text) if audio is not None else None))
        elif isinstance(event, AudioChunk) and audio is not None and event.samples.size:
            pcm = float_to_pcm16(event.samples)
            if header_pending:
                pcm, header_pending = wav_header(client.info.sample_rate) + pcm, False
            yield chunk(Delta(audio=audio_delta(data=base64.b64encode(pcm).decode())))
        elif isinstance(event, Done):
            if audio is not None:
                memory.remember(audio_id, "".join(transcript))
            yield chunk(Delta(), _finish_reason(event))
            if include_usage:
                usage = ChatCompletionChunk(id=completion_id, created=created, model=request.model, choices=[],
                                            usage=_usage(event))
                yield usage.model_dump(mode="json")
            return
        elif isinstance(event, Failed):
            yield from_exception(event.error).body()
            return
        event = await anext(events, None)


async def _sse(items: AsyncIterator[dict[str, Any]], events: AsyncIterator[Event]) -> AsyncIterator[bytes]:
    """Server-sent events framing; `[DONE]` ends every stream, including one that ended with an error.

    When the client disconnects, Starlette cancels this generator; closing `events` aborts the engine request.
    """
    try:
        async for item in items:
            yield f"data: {json.dumps(item, ensure_ascii=False, separators=(',', ':'))}\n\n".encode()
        yield b"data: [DONE]\n\n"
    finally:
        await items.aclose()
        await events.aclose()
