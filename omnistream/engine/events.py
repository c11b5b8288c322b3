"""The one event stream every front end consumes (Python iterator, SSE, WebSocket, CLI).

A request yields any number of `TextDelta` and `AudioChunk` events, then exactly one `Done` or `Failed`.
Events are immutable records; the engine never mutates one after it was emitted.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class Usage:
    """Token and audio counts of one request."""
    prompt_tokens: int = 0
    completion_tokens: int = 0           # thinker tokens generated (thinking included)
    thinking_tokens: int = 0             # of which inside <think>…</think>
    audio_frames: int = 0                # codec frames (one per 80 ms for the released model)
    audio_samples: int = 0

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


@dataclass(frozen=True)
class TextDelta:
    """New text of the answer (or of the thinking section when `is_thinking`) and the token ids behind it.

    `text` may be empty when the tokens so far end inside a multi-byte character; it is then carried by a
    later delta. Concatenating every delta's text gives the final text exactly.
    """
    request_id: str
    text: str
    token_ids: tuple[int, ...]
    is_thinking: bool = False


@dataclass(frozen=True, eq=False)
class AudioChunk:
    """New speech samples (float32 mono). Concatenating a request's chunks gives its whole waveform."""
    request_id: str
    samples: np.ndarray                  # [N] float32
    sample_rate: int
    first_frame: int = 0                 # index of the first codec frame these samples complete
    num_frames: int = 0                  # codec frames this chunk completes


@dataclass(frozen=True, eq=False)
class Done:
    """A request finished. `finish_reason` is "stop" (EOS or a stop string/id), "length" or "abort"."""
    request_id: str
    finish_reason: str
    usage: Usage
    text: str = ""
    thinking: str = ""
    token_ids: tuple[int, ...] = ()
    audio_codes: np.ndarray | None = None    # [Q, F] int64 codec frames, None without speech
    timings: dict[str, float] = field(default_factory=dict)   # seconds since submission: first_text, first_audio


@dataclass(frozen=True, eq=False)
class Failed:
    """A request failed; `error` is the exception (an OmnistreamError for anything the caller did wrong)."""
    request_id: str
    error: BaseException

    @property
    def message(self) -> str:
        return f"{type(self.error).__name__}: {self.error}"


Event = TextDelta | AudioChunk | Done | Failed
