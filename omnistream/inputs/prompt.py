"""Conversations in, prompt token ids out: validation, media extraction, placeholder expansion.

The template renders one `<|audio_pad|>` / `<|image_pad|>` / `<|video_pad|>` per media part; the rendered
prompt is tokenized with those single placeholders and expanded in id space (identical to expanding the
text first, because placeholders are atomic special tokens — and far cheaper for long media).
Audio-in-video replaces a video's placeholder with `<|audio_start|>` + video and audio tokens merged by
time + `<|audio_end|>` (spec §4.5).
"""
from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from omnistream.errors import OmniInputError
from omnistream.inputs.settings import TokenIds

ROLES = frozenset({"system", "user", "assistant", "tool"})
MEDIA_KINDS = ("audio", "image", "video")
# Per-part options, as qwen-omni-utils reads them from a content part: a pixel budget per image or video frame
# (min_pixels/max_pixels replace the preprocessor's bounds for that part), and a video's sampling fps and audio;
# plus OpenAI's image `detail` ("low" caps the image at 512x512 pixels' worth).
PART_OPTIONS = {"image": ("min_pixels", "max_pixels", "detail"), "video": ("fps", "audio", "min_pixels", "max_pixels")}
# OpenAI-style part types accepted as aliases of our own.
_ALIASES = {"image_url": "image", "input_image": "image", "input_audio": "audio", "audio_url": "audio",
            "video_url": "video"}


@dataclass
class MediaPart:
    """One media part of a conversation, in order of appearance."""
    kind: str                         # "audio" | "image" | "video"
    source: Any                       # path, bytes, URL, array, PIL image, (array, rate), frame list
    label: str                        # e.g. "conversation 0 message 1 part 2 (audio)"
    options: dict[str, Any] = field(default_factory=dict)   # PART_OPTIONS[kind]


def normalize_conversation(conversation: Any, index: int,
                           reserved: dict[str, str]) -> tuple[list[dict[str, Any]], list[MediaPart]]:
    """Validate one conversation; return template-ready messages and its media parts in order.

    `reserved` maps placeholder token strings to their names; text that contains one is refused (it
    would desynchronise the placeholder count).
    """
    where = f"conversation {index}"
    if not isinstance(conversation, (list, tuple)) or not conversation:
        raise OmniInputError(f"{where}: a conversation must be a non-empty list of messages", param="messages")
    messages: list[dict[str, Any]] = []
    media: list[MediaPart] = []
    for m, message in enumerate(conversation):
        label = f"{where} message {m}"
        if not isinstance(message, dict):
            raise OmniInputError(f"{label}: a message must be a dict, got {type(message).__name__}",
                                 param="messages")
        role = message.get("role")
        if role not in ROLES:
            raise OmniInputError(f"{label}: role must be one of {sorted(ROLES)}, got {role!r}", param="role")
        content = message.get("content")
        out = dict(message)
        if isinstance(content, str):
            _check_text(content, label, reserved)
        elif isinstance(content, (list, tuple)):
            out["content"] = [_normalize_part(part, f"{label} part {p}", reserved, media)
                              for p, part in enumerate(content)]
        elif content is None and role == "assistant" and message.get("tool_calls"):
            out["content"] = ""
        else:
            raise OmniInputError(f"{label}: content must be a string or a list of parts", param="content")
        messages.append(out)
    return messages, media


def _normalize_part(part: Any, label: str, reserved: dict[str, str], media: list[MediaPart]) -> dict[str, Any]:
    if isinstance(part, str):
        _check_text(part, label, reserved)
        return {"type": "text", "text": part}
    if not isinstance(part, dict):
        raise OmniInputError(f"{label}: a content part must be a dict, got {type(part).__name__}", param="content")
    kind = part.get("type") or next((k for k in ("text", *MEDIA_KINDS) if k in part), None)
    if kind == "text":
        text = part.get("text")
        if not isinstance(text, str):
            raise OmniInputError(f"{label}: a text part needs a string 'text'", param="content")
        _check_text(text, label, reserved)
        return {"type": "text", "text": text}
    canonical = _ALIASES.get(kind, kind)
    if canonical not in MEDIA_KINDS:
        raise OmniInputError(f"{label}: unknown part type {kind!r} (expected text, image, audio or video)",
                             param="content")
    source = _media_source(part, kind, canonical, label)
    options = {k: part[k] for k in PART_OPTIONS.get(canonical, ()) if k in part}
    media.append(MediaPart(canonical, source, f"{label} ({canonical})", options))
    return {"type": canonical}


def _media_source(part: dict[str, Any], kind: str, canonical: str, label: str) -> Any:
    value = part.get(kind, part.get(canonical))
    if kind == "input_audio" and isinstance(value, dict):  # OpenAI: {"data": base64, "format": "wav"}
        try:
            return base64.b64decode(str(value.get("data", "")), validate=True)
        except (binascii.Error, ValueError):
            raise OmniInputError(f"{label}: input_audio.data is not valid base64", param="content") from None
    if isinstance(value, dict):  # {"url": ...} as in image_url / video_url / audio_url parts
        value = value.get("url")
    if value is None:
        raise OmniInputError(f"{label}: the {canonical} part has no {canonical!r} value", param="content")
    return value


def _check_text(text: str, label: str, reserved: dict[str, str]) -> None:
    for token, name in reserved.items():
        if token in text:
            raise OmniInputError(f"{label}: text contains the reserved {name} placeholder {token}", param="content")


@dataclass(frozen=True)
class Expansion:
    """How many tokens each media part becomes; audio-in-video carries its audio token count too."""
    tokens: int
    audio_tokens: int = 0             # only for audio-in-video
    grid: tuple[int, int, int] | None = None
    seconds_per_grid: float = 0.0


def expand_placeholders(ids: list[int], media: list[MediaPart], expansions: list[Expansion],
                        token_ids: TokenIds, merge_size: int, position_id_per_seconds: float,
                        label: str) -> list[int]:
    """Replace each single placeholder with its expansion (media in order of appearance)."""
    placeholder = {token_ids.audio: "audio", token_ids.image: "image", token_ids.video: "video"}
    found = [placeholder[t] for t in ids if t in placeholder]
    wanted = [part.kind for part in media]
    if found != wanted:
        raise OmniInputError(f"{label}: the rendered prompt has placeholders {found} but the conversation has "
                             f"media {wanted}", param="messages")
    out: list[int] = []
    item = 0
    for t in ids:
        if t not in placeholder:
            out.append(t)
            continue
        exp = expansions[item]
        if exp.audio_tokens:
            out.extend(_audio_in_video(exp, token_ids, merge_size, position_id_per_seconds))
        else:
            out.extend([t] * exp.tokens)
        item += 1
    return out


def _audio_in_video(exp: Expansion, ids: TokenIds, merge_size: int, per_second: float) -> list[int]:
    """`<|audio_start|>` + video grids at time k·s·13 and audio tokens at time i, video first on ties."""
    assert exp.grid is not None
    per_grid = exp.grid[1] * exp.grid[2] // (merge_size * merge_size)
    video_times = np.repeat(np.arange(exp.grid[0]) * exp.seconds_per_grid * per_second, per_grid)
    audio_times = np.arange(exp.audio_tokens)
    order = np.argsort(np.concatenate([video_times, audio_times + 0.0]), kind="stable")  # video first on ties
    is_video = order < len(video_times)
    return [ids.audio_start] + [ids.video if v else ids.audio for v in is_video] + [ids.audio_end]
