"""OpenAI chat messages → omnistream conversations (the inputs layer's format), with the server's source rules.

Media must arrive as `data:` URLs or base64 (`input_audio`); http(s) URLs pass through to the inputs layer only
when the operator enabled remote media, and nothing else (paths, file://) is ever accepted, so a client cannot
make the server read local files. Base64 is decoded here, strictly, so a broken payload is a 400 naming the
exact field. Decoding the media itself (and its size/duration limits) is the inputs layer's job.
"""
from __future__ import annotations

import time
import urllib.parse
from collections import OrderedDict
from typing import Any

from omnistream.server.audio_codecs import decode_base64, pcm16_to_float
from omnistream.server.errors import APIError, bad_request, from_exception, unsupported
from omnistream.server.protocol import (
    AssistantMessage,
    AudioURLPart,
    ImagePart,
    InputAudioPart,
    RefusalPart,
    Strict,
    TextPart,
    VideoPart,
    parse_message,
    parse_part,
)

INPUT_AUDIO_FORMATS = ("wav", "mp3", "flac", "ogg", "opus", "webm", "m4a", "aac", "pcm16")
PCM16_INPUT_RATE = 24000          # raw pcm16 input_audio is taken as 24 kHz mono, as the realtime API's


class AudioMemory:
    """Transcripts of recently generated audio by id, so a later request may cite `{"audio": {"id": ...}}`.

    OpenAI keeps generated audio for an hour (`expires_at`) for exactly this multi-turn use; we keep the
    transcript (what the model conditions on) for the same time, bounded in count.
    """

    def __init__(self, ttl_s: float = 3600.0, capacity: int = 4096) -> None:
        self.ttl_s, self.capacity = ttl_s, capacity
        self._items: OrderedDict[str, tuple[float, str]] = OrderedDict()

    def remember(self, audio_id: str, transcript: str) -> int:
        """Store a transcript; returns the expiry as a Unix time (the response's `expires_at`)."""
        expires = time.time() + self.ttl_s
        self._items[audio_id] = (expires, transcript)
        while len(self._items) > self.capacity:
            self._items.popitem(last=False)
        return int(expires)

    def recall(self, audio_id: str) -> str | None:
        entry = self._items.get(audio_id)
        if entry is None or entry[0] < time.time():
            return None
        return entry[1]


def to_conversation(raw_messages: list[Any], *, allow_remote_media: bool,
                    audio_memory: AudioMemory | None = None) -> list[dict[str, Any]]:
    """Validate every message and convert it; raises APIError (400) naming the first bad field."""
    out = []
    for index, raw in enumerate(raw_messages):
        message = parse_message(raw, index)
        out.append(_convert(message, f"messages.{index}", allow_remote_media, audio_memory))
    if not any(m["role"] == "user" for m in out):
        raise bad_request("The conversation needs at least one user message.", "messages")
    return out


def _convert(message: Strict, where: str, allow_remote: bool, memory: AudioMemory | None) -> dict[str, Any]:
    role = "system" if message.role == "developer" else message.role
    if isinstance(message, AssistantMessage):
        return {"role": "assistant", "content": _assistant_text(message, where, memory)}
    content = message.content
    if isinstance(content, str):
        return {"role": role, "content": content}
    parts = [parse_part(p, message.role, f"{where}.content.{i}") for i, p in enumerate(content)]
    if role == "system":
        return {"role": "system", "content": "".join(p.text for p in parts)}
    if not parts:
        raise bad_request(f"Invalid value for '{where}.content': a user message needs at least one part.",
                          f"{where}.content")
    return {"role": "user", "content": [_user_part(p, f"{where}.content.{i}", allow_remote)
                                        for i, p in enumerate(parts)]}


def _assistant_text(message: AssistantMessage, where: str, memory: AudioMemory | None) -> str:
    if message.tool_calls or message.function_call:
        raise unsupported(f"{where}.tool_calls", "tool calling is not available")
    content = message.content
    if isinstance(content, list):
        parts = [parse_part(p, "assistant", f"{where}.content.{i}") for i, p in enumerate(content)]
        content = "".join(p.text if isinstance(p, TextPart) else p.refusal for p in parts
                          if isinstance(p, (TextPart, RefusalPart)))
    if content is None and message.audio is not None:
        transcript = memory.recall(message.audio.id) if memory is not None else None
        if transcript is None:
            raise bad_request(f"Invalid value for '{where}.audio.id': unknown or expired audio id "
                              f"{message.audio.id!r}; send the transcript as content instead.",
                              f"{where}.audio.id", "audio_not_found")
        content = transcript
    if content is None:
        content = message.refusal or ""
    return content


def _user_part(part: Strict, where: str, allow_remote: bool) -> dict[str, Any]:
    if isinstance(part, TextPart):
        return {"type": "text", "text": part.text}
    if isinstance(part, ImagePart):
        image = {"type": "image", "image": _url_source(part.image_url.url, f"{where}.image_url.url", allow_remote)}
        return image | ({"detail": part.image_url.detail} if part.image_url.detail else {})
    if isinstance(part, VideoPart):
        return {"type": "video", "video": _url_source(part.video_url.url, f"{where}.video_url.url", allow_remote)}
    if isinstance(part, AudioURLPart):
        return {"type": "audio", "audio": _url_source(part.audio_url.url, f"{where}.audio_url.url", allow_remote)}
    if isinstance(part, InputAudioPart):
        return {"type": "audio", "audio": _input_audio(part, where)}
    raise bad_request(f"Invalid value for '{where}.type'.", f"{where}.type")


def _input_audio(part: InputAudioPart, where: str) -> Any:
    fmt = part.input_audio.format.lower()
    if fmt not in INPUT_AUDIO_FORMATS:
        raise bad_request(f"Invalid value for '{where}.input_audio.format': {part.input_audio.format!r} is not "
                          f"supported; use one of {', '.join(INPUT_AUDIO_FORMATS)}.", f"{where}.input_audio.format")
    data = _decode(part.input_audio.data, f"{where}.input_audio.data")
    if fmt == "pcm16":
        try:
            samples = pcm16_to_float(data)
        except Exception as e:  # noqa: BLE001 - odd byte count
            raise from_exception(e) from None
        return (samples, PCM16_INPUT_RATE)
    return data


def _url_source(url: str, where: str, allow_remote: bool) -> Any:
    """data: URL → bytes; http(s) → the URL itself when allowed; anything else → 400."""
    if url.startswith("data:"):
        header, comma, payload = url.partition(",")
        if not comma:
            raise bad_request(f"Invalid value for '{where}': malformed data: URL (no comma).", where,
                              "invalid_media")
        if not header.endswith(";base64"):
            return urllib.parse.unquote_to_bytes(payload)
        return _decode(payload, where)
    scheme = urllib.parse.urlsplit(url).scheme.lower()
    if scheme in ("http", "https"):
        if allow_remote:
            return url
        raise APIError(400, f"Invalid value for '{where}': remote URLs are disabled on this server; send the "
                            f"media as a data: URL (the operator can enable http(s) with --allow-remote-media).",
                       param=where, code="remote_media_disabled")
    raise bad_request(f"Invalid value for '{where}': only data: URLs (or http(s) when enabled) are accepted.",
                      where, "invalid_url")


def _decode(text: str, where: str) -> bytes:
    try:
        data = decode_base64(text, where)
    except Exception as e:  # noqa: BLE001 - MediaError with the field name
        raise from_exception(e) from None
    if not data:
        raise bad_request(f"Invalid value for '{where}': the media is empty.", where, "invalid_media")
    return data
