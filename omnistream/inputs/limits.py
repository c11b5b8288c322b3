"""Limits on what a request may ask the inputs layer to read and decode.

Every limit is checked before the expensive step it protects (image size from the header before
decoding, media byte size before opening, token count before building pixel tensors), and a breach
raises `LimitExceeded` naming the limit. The defaults suit a local Python caller; a server narrows them
(no local files, smaller byte sizes).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from omnistream.errors import LimitExceeded


@dataclass(frozen=True)
class InputLimits:
    """Configurable bounds on media and prompt size, plus where media may be read from."""
    max_audio_seconds: float = 1800.0          # the encoder chunks long audio; 30 min ≈ 23k tokens
    max_video_seconds: float = 3600.0
    max_video_frames: int = 768                 # sampled frames per video (reference max_frames)
    max_image_pixels: int = 89_478_485          # decoded source pixels (PIL's decompression-bomb bound)
    max_aspect_ratio: float = 200.0             # the reference refuses more (spec §4.2)
    max_media_bytes: int = 512 * 1024 * 1024    # one file, bytes object or data: URL
    max_total_tokens: int = 65_536              # prompt length after placeholder expansion
    max_media_items: int = 256                  # media parts in one conversation
    allow_remote_urls: bool = False             # http(s) and other non-data URLs
    allow_local_files: bool = True
    allowed_local_dirs: tuple[str, ...] | None = None   # when set, local paths must lie inside one of these
    remote_timeout_s: float = 20.0

    def check(self, name: str, value: float, limit: float, what: str, param: str | None = None) -> None:
        """Raise LimitExceeded when `value` is over `limit`; `name` is the limit's field name."""
        if value > limit:
            raise LimitExceeded(f"{what} is {value:g}, over the limit {name}={limit:g}", param=param or name)

    def resolved_dirs(self) -> tuple[Path, ...] | None:
        if self.allowed_local_dirs is None:
            return None
        return tuple(Path(d).expanduser().resolve() for d in self.allowed_local_dirs)
