"""A realtime session's conversation: ordered items, their two dialect renderings, and what the model sees.

User audio is kept as 16 kHz float32 (what the audio encoder reads). An assistant answer keeps its text as the
pieces the engine streamed with their token counts, so `truncate(audio_end_ms)` can cut the text at what the
user heard: the talker is fed one text token per codec frame (spec §1.1), so the first `k` frames of speech
carry the first `k` text tokens. The model's history is built from these items on every response, so a
truncated or deleted item changes what the next answer is conditioned on.
"""
from __future__ import annotations

import math
import secrets
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from omnistream.server.audio_codecs import decode_base64, pcm16_to_float
from omnistream.server.errors import APIError, unsupported

VAD_RATE = 16000


def new_id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(10)}"


@dataclass
class Part:
    kind: str                                   # "text" | "audio" | "image"
    text: str = ""                              # text, or an audio part's transcript
    audio: np.ndarray | None = None             # user audio, 16 kHz float32
    image: bytes | None = None
    pieces: list[tuple[str, int]] = field(default_factory=list)   # assistant audio: (text, tokens) as streamed
    audio_samples: int = 0                      # assistant audio: samples sent (24 kHz)
    frame_samples: int = 0                      # assistant audio: samples per codec frame
    has_transcript: bool = False                # user audio parts: a transcript was supplied


@dataclass
class Item:
    id: str
    role: str                                   # "user" | "assistant" | "system"
    parts: list[Part]
    status: str = "completed"                   # "in_progress" | "completed" | "incomplete"

    @property
    def speaks(self) -> bool:
        return any(p.kind == "audio" for p in self.parts)


class Conversation:
    def __init__(self, max_items: int) -> None:
        self.items: list[Item] = []
        self.max_items = max_items
        self.version = 0                        # bumps on every change (speculative answers check it)

    def last_id(self) -> str | None:
        return self.items[-1].id if self.items else None

    def find(self, item_id: Any, param: str = "item_id") -> Item:
        for item in self.items:
            if item.id == item_id:
                return item
        raise APIError(400, f"Invalid value for '{param}': no conversation item with id {item_id!r}.",
                       param=param, code="item_not_found")

    def insert(self, item: Item, previous_item_id: str | None = None) -> str | None:
        """Add `item` after `previous_item_id` ("root" = first; None = at the end); returns its predecessor id."""
        if len(self.items) >= self.max_items:
            raise APIError(400, f"The conversation holds its limit of {self.max_items} items; delete some first.",
                           param="item", code="conversation_full")
        if any(i.id == item.id for i in self.items):
            raise APIError(400, f"Invalid value for 'item.id': an item with id {item.id!r} already exists.",
                           param="item.id", code="duplicate_item_id")
        if previous_item_id is None or previous_item_id == self.last_id():
            index = len(self.items)
        elif previous_item_id == "root":
            index = 0
        else:
            index = self.items.index(self.find(previous_item_id, "previous_item_id")) + 1
        self.items.insert(index, item)
        self.version += 1
        return self.items[index - 1].id if index > 0 else None

    def delete(self, item_id: Any) -> None:
        self.items.remove(self.find(item_id))
        self.version += 1

    def touch(self) -> None:
        self.version += 1


def truncate(item: Item, content_index: Any, audio_end_ms: Any, sample_rate: int) -> None:
    """Cut an assistant audio part at `audio_end_ms`: keep the audio heard and the text spoken in it."""
    if item.role != "assistant" or not item.speaks:
        raise APIError(400, "Only assistant messages with audio can be truncated.", param="item_id",
                       code="invalid_value")
    if not isinstance(content_index, int) or not 0 <= content_index < len(item.parts) \
            or item.parts[content_index].kind != "audio":
        raise APIError(400, f"Invalid value for 'content_index': {content_index!r} is not an audio part.",
                       param="content_index", code="invalid_value")
    part = item.parts[content_index]
    duration_ms = part.audio_samples * 1000 / sample_rate
    if isinstance(audio_end_ms, bool) or not isinstance(audio_end_ms, int) or audio_end_ms < 0:
        raise APIError(400, "Invalid value for 'audio_end_ms': a non-negative integer.", param="audio_end_ms",
                       code="invalid_value")
    if audio_end_ms > math.ceil(duration_ms):
        raise APIError(400, f"Invalid value for 'audio_end_ms': {audio_end_ms} ms is longer than the audio "
                            f"({duration_ms:.0f} ms).", param="audio_end_ms", code="invalid_value")
    kept_samples = audio_end_ms * sample_rate // 1000
    frames = math.ceil(kept_samples / part.frame_samples) if part.frame_samples else 0
    kept, tokens = [], 0
    for text, count in part.pieces:
        if tokens + count > frames:
            break
        kept.append((text, count))
        tokens += count
    part.pieces = kept
    part.text = "".join(t for t, _ in kept)
    part.audio_samples = kept_samples
    item.status = "incomplete"


# --------------------------------------------------------------------------------------- client items

def parse_item(raw: Any, dialect: str, input_rate: int, resample: Any) -> Item:
    """A `conversation.item.create` item in either dialect → Item (raises APIError naming the field)."""
    if not isinstance(raw, dict):
        raise APIError(400, "item must be an object", param="item", code="invalid_value")
    kind = raw.get("type", "message")
    if kind in ("function_call", "function_call_output", "mcp_call", "mcp_list_tools", "mcp_approval_request",
                "mcp_approval_response"):
        raise unsupported("item.type", "tool calling is not available")
    if kind != "message":
        raise APIError(400, f"Invalid value for 'item.type': {kind!r}.", param="item.type", code="invalid_value")
    extra = set(raw) - {"id", "type", "role", "content", "status", "object"}
    if extra:
        name = sorted(extra)[0]
        raise APIError(400, f"Unrecognized field 'item.{name}'.", param=f"item.{name}", code="unknown_parameter")
    role = raw.get("role")
    if role not in ("user", "assistant", "system"):
        raise APIError(400, f"Invalid value for 'item.role': {role!r}.", param="item.role", code="invalid_value")
    content = raw.get("content")
    if not isinstance(content, list) or not content:
        raise APIError(400, "item.content must be a non-empty list.", param="item.content", code="invalid_value")
    parts = [_parse_part(p, role, dialect, f"item.content.{i}", input_rate, resample) for i, p in enumerate(content)]
    item_id = raw.get("id") or new_id("item")
    if not isinstance(item_id, str) or len(item_id) > 64:
        raise APIError(400, "item.id must be a string of at most 64 characters.", param="item.id",
                       code="invalid_value")
    return Item(item_id, role, parts)


_PART_TYPES = {
    ("ga", "user"): {"input_text", "input_audio", "input_image"},
    ("ga", "system"): {"input_text"},
    ("ga", "assistant"): {"output_text", "output_audio"},
    ("beta", "user"): {"input_text", "input_audio"},
    ("beta", "system"): {"input_text"},
    ("beta", "assistant"): {"text", "audio"},
}


def _parse_part(raw: Any, role: str, dialect: str, where: str, input_rate: int, resample: Any) -> Part:
    if not isinstance(raw, dict):
        raise APIError(400, f"{where} must be an object.", param=where, code="invalid_value")
    kind = raw.get("type")
    allowed = _PART_TYPES[(dialect, role)]
    if kind not in allowed:
        raise APIError(400, f"Invalid value for '{where}.type': a {role} item in the {dialect} dialect takes "
                            f"{', '.join(sorted(allowed))}; got {kind!r}.", param=f"{where}.type",
                       code="invalid_value")
    if kind in ("input_text", "output_text", "text"):
        text = raw.get("text")
        if not isinstance(text, str):
            raise APIError(400, f"{where}.text must be a string.", param=f"{where}.text", code="invalid_value")
        return Part("text", text=text)
    if kind == "input_image":
        url = raw.get("image_url")
        if not isinstance(url, str) or not url.startswith("data:") or ";base64," not in url:
            raise APIError(400, f"{where}.image_url must be a base64 data: URL.", param=f"{where}.image_url",
                           code="invalid_value")
        return Part("image", image=_b64(url.partition(",")[2], f"{where}.image_url"))
    if kind == "input_audio":
        pcm = pcm16_to_float(_b64(raw.get("audio"), f"{where}.audio"))
        transcript = raw.get("transcript")
        return Part("audio", audio=resample(pcm, input_rate), text=transcript or "",
                    has_transcript=bool(transcript))
    transcript = raw.get("transcript")                     # an assistant audio part given by the client
    if not isinstance(transcript, str):
        raise APIError(400, f"{where}.transcript must be a string.", param=f"{where}.transcript",
                       code="invalid_value")
    return Part("text", text=transcript)


def _b64(value: Any, param: str) -> bytes:
    try:
        data = decode_base64(value, param)
    except Exception:  # noqa: BLE001
        raise APIError(400, f"Invalid value for '{param}': not valid base64.", param=param,
                       code="invalid_value") from None
    if not data:
        raise APIError(400, f"Invalid value for '{param}': empty.", param=param, code="invalid_value")
    return data


# ------------------------------------------------------------------------------------------ rendering

def render_item(item: Item, dialect: str) -> dict[str, Any]:
    return {"id": item.id, "object": "realtime.item", "type": "message", "role": item.role,
            "status": item.status, "content": [_render_part(p, item.role, dialect) for p in item.parts]}


def _render_part(part: Part, role: str, dialect: str) -> dict[str, Any]:
    if role in ("user", "system"):
        if part.kind == "audio":
            return {"type": "input_audio", "transcript": part.text if part.has_transcript else None}
        if part.kind == "image":
            return {"type": "input_image"}
        return {"type": "input_text", "text": part.text}
    if part.kind == "audio":
        return {"type": "output_audio" if dialect == "ga" else "audio", "transcript": part.text}
    return {"type": "output_text" if dialect == "ga" else "text", "text": part.text}


# ------------------------------------------------------------------------------------------ model input

def to_messages(items: list[Item], instructions: str) -> list[dict[str, Any]]:
    """The conversation as omnistream messages (the inputs layer's format)."""
    messages: list[dict[str, Any]] = [{"role": "system", "content": instructions}] if instructions else []
    for item in items:
        if item.role == "assistant":
            text = "".join(p.text for p in item.parts)
            if text:
                messages.append({"role": "assistant", "content": text})
            continue
        content: list[dict[str, Any]] = []
        for p in item.parts:
            if p.kind == "audio" and p.audio is not None and p.audio.size:
                content.append({"type": "audio", "audio": (p.audio, VAD_RATE)})
            elif p.kind == "image" and p.image is not None:
                content.append({"type": "image", "image": p.image})
            elif p.kind == "text" and p.text:
                content.append({"type": "text", "text": p.text})
        if content:
            messages.append({"role": item.role, "content": content if item.role == "user" else
                             "".join(c.get("text", "") for c in content)})
    return messages
