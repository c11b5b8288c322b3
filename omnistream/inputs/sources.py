"""Where media bytes come from: bytes, data: URLs, local paths and (only when enabled) remote URLs.

The rules keep a request from reading outside what it named: non-`data:` URLs are refused unless
`allow_remote_urls`, local paths can be forbidden or confined to `allowed_local_dirs` (checked after
resolving symlinks), only regular files are opened, and every source is size-checked before it is
read. Decoders receive a Python file object, never a path or URL, so ffmpeg itself opens nothing.
"""
from __future__ import annotations

import base64
import binascii
import io
import os
import urllib.parse
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from omnistream.errors import LimitExceeded, MediaError, OmniInputError
from omnistream.inputs.limits import InputLimits

_REMOTE_SCHEMES = ("http", "https")


@dataclass(frozen=True)
class MediaBlob:
    """Encoded media: either bytes held in memory or a checked local file."""
    label: str                    # names the request part in error messages
    data: bytes | None = None
    path: Path | None = None

    def open(self) -> BinaryIO:
        if self.data is not None:
            return io.BytesIO(self.data)
        assert self.path is not None
        try:
            return open(self.path, "rb")  # noqa: SIM115 - the caller closes it
        except OSError as e:
            raise MediaError(f"{self.label}: cannot open {self.path.name}: {e.strerror}", param=self.label) from None


def is_encoded_source(value: object) -> bool:
    """True for the source kinds `resolve_source` handles (as opposed to arrays, PIL images, frame lists)."""
    return isinstance(value, (bytes, bytearray, memoryview, str, os.PathLike))


def resolve_source(value: object, label: str, limits: InputLimits) -> MediaBlob:
    """Turn a path, bytes or URL into a MediaBlob, enforcing the source rules and the byte limit."""
    if isinstance(value, (bytes, bytearray, memoryview)):
        data = bytes(value)
        limits.check("max_media_bytes", len(data), limits.max_media_bytes, f"{label} size in bytes", label)
        if not data:
            raise MediaError(f"{label}: the media bytes are empty", param=label)
        return MediaBlob(label, data=data)
    if isinstance(value, os.PathLike):
        return _local_file(Path(value), label, limits)
    if not isinstance(value, str):
        raise OmniInputError(f"{label}: expected a path, URL or bytes, got {type(value).__name__}", param=label)
    text = value.strip()
    if not text:
        raise OmniInputError(f"{label}: the media source is an empty string", param=label)
    scheme = _scheme(text)
    if scheme == "data":
        return MediaBlob(label, data=_decode_data_url(text, label, limits))
    if scheme == "file":
        return _local_file(Path(urllib.parse.unquote(urllib.parse.urlparse(text).path)), label, limits)
    if scheme in _REMOTE_SCHEMES:
        if not limits.allow_remote_urls:
            raise OmniInputError(f"{label}: remote URLs are disabled (allow_remote_urls=False)", param=label)
        return MediaBlob(label, data=_fetch(text, label, limits))
    if scheme is not None:
        raise OmniInputError(f"{label}: URL scheme {scheme!r} is not supported", param=label)
    return _local_file(Path(text), label, limits)


def _scheme(text: str) -> str | None:
    head, sep, _ = text.partition(":")
    if not sep or len(head) < 2 or not head.replace("+", "").replace("-", "").replace(".", "").isalnum():
        return None  # no scheme, or a Windows drive letter like C:
    if head.lower() != "data" and not text[len(head) + 1:].startswith("//"):
        return None  # "notes: a.wav" style names are paths, not URLs
    return head.lower()


def _decode_data_url(text: str, label: str, limits: InputLimits) -> bytes:
    header, sep, payload = text.partition(",")
    if not sep:
        raise MediaError(f"{label}: malformed data: URL (no comma)", param=label)
    # base64 grows data by 4/3: refuse before decoding anything too large.
    limits.check("max_media_bytes", len(payload) * 3 // 4, limits.max_media_bytes, f"{label} size in bytes", label)
    if header.lower().endswith(";base64"):
        try:
            data = base64.b64decode(payload.strip(), validate=False)
        except (binascii.Error, ValueError) as e:
            raise MediaError(f"{label}: data: URL holds invalid base64: {e}", param=label) from None
    else:
        data = urllib.parse.unquote_to_bytes(payload)
    if not data:
        raise MediaError(f"{label}: the data: URL is empty", param=label)
    return data


def _local_file(path: Path, label: str, limits: InputLimits) -> MediaBlob:
    if not limits.allow_local_files:
        raise OmniInputError(f"{label}: local files are not allowed here", param=label)
    try:
        resolved = path.expanduser().resolve(strict=True)
    except (OSError, RuntimeError):
        raise MediaError(f"{label}: no such file: {path}", param=label) from None
    allowed = limits.resolved_dirs()
    if allowed is not None and not any(resolved.is_relative_to(d) for d in allowed):
        raise OmniInputError(f"{label}: {path} is outside the allowed folders", param=label)
    if not resolved.is_file():
        raise MediaError(f"{label}: {path} is not a regular file", param=label)
    limits.check("max_media_bytes", resolved.stat().st_size, limits.max_media_bytes, f"{label} size in bytes", label)
    return MediaBlob(label, path=resolved)


def _fetch(url: str, label: str, limits: InputLimits) -> bytes:
    import urllib.request  # only when remote fetching was enabled

    request = urllib.request.Request(url, headers={"User-Agent": "omnistream"})
    try:
        with urllib.request.urlopen(request, timeout=limits.remote_timeout_s) as response:  # noqa: S310
            data = response.read(limits.max_media_bytes + 1)
    except OSError as e:
        raise MediaError(f"{label}: cannot fetch {url}: {e}", param=label) from None
    if len(data) > limits.max_media_bytes:
        raise LimitExceeded(f"{label}: {url} is over the limit max_media_bytes={limits.max_media_bytes}",
                            param="max_media_bytes")
    if not data:
        raise MediaError(f"{label}: {url} returned no bytes", param=label)
    return data
