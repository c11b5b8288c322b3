"""Thinker tokens → text deltas: incremental detokenizing, `<think>…</think>` split, stop strings.

One `TextStream` per request. `<think>` / `</think>` are ordinary (non-special) tokens in Qwen3 vocabularies
(spec §4.4); their ids switch the channel and their own text is never shown. A Thinking checkpoint whose
generation prompt already opened the block (`<think>\n` at the end of the prompt, spec §4.5 [U]) starts in the
thinking channel. Stop strings are searched in the channel being written; text that could still become a
stop string is held back, so no stop string ever leaks into a delta.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol


class Decoder(Protocol):
    def push(self, ids: int) -> str: ...
    def flush(self) -> str: ...


@dataclass(frozen=True)
class Piece:
    """New text for one channel plus the token ids it completes."""
    text: str
    token_ids: tuple[int, ...]
    is_thinking: bool


class TextStream:
    """Per-request text state. `push(token)` → new pieces and whether a stop string ended the text."""

    def __init__(self, new_decoder: Callable[[], Decoder], *, stop: Sequence[str] = (),
                 think_open_id: int | None = None, think_close_id: int | None = None,
                 start_thinking: bool = False) -> None:
        self._new_decoder = new_decoder
        self._decoder = new_decoder()
        self._stop = tuple(stop)
        self._hold = max((len(s) for s in self._stop), default=1) - 1
        self._open, self._close = think_open_id, think_close_id
        self.is_thinking = start_thinking
        self.answer = ""
        self.thinking = ""
        self._pending = ""          # decoded text of the current channel not emitted yet (stop-string guard)
        self._pending_ids: list[int] = []
        self.stopped = False
        self.num_thinking_tokens = 0

    def push(self, token_id: int) -> list[Piece]:
        """Add one generated token; returns pieces ready to emit (maybe none)."""
        if self.stopped:
            return []
        self._pending_ids.append(token_id)
        self.num_thinking_tokens += self.is_thinking
        pieces: list[Piece] = []
        if token_id in (self._open, self._close) and token_id is not None:
            pieces += self._switch(thinking=token_id == self._open)
            return pieces
        self._pending += self._decoder.push(token_id)
        return pieces + self._release(final=False)

    def finish(self) -> list[Piece]:
        """End of generation: release everything held back (ids of a final EOS included)."""
        if not self.stopped:
            self._pending += self._decoder.flush()
        return self._release(final=True)

    # ------------------------------------------------------------------------------------------------
    def _switch(self, thinking: bool) -> list[Piece]:
        if thinking == self.is_thinking:
            return []
        self._pending += self._decoder.flush()
        pieces = self._release(final=True)
        self.is_thinking = thinking
        self._decoder = self._new_decoder()
        return pieces

    def _release(self, final: bool) -> list[Piece]:
        text = self._pending
        cut = self._find_stop(text)
        if cut is not None:
            emit, self._pending, self.stopped = text[:cut], "", True
        elif final or not self._hold:
            emit, self._pending = text, ""
        else:  # hold back what could still grow into a stop string
            n = max(len(text) - self._hold, 0)
            emit, self._pending = text[:n], text[n:]
        if not emit and (not (final or self.stopped) or not self._pending_ids):
            return []
        ids, self._pending_ids = tuple(self._pending_ids), []
        if self.is_thinking:
            self.thinking += emit
        else:
            self.answer += emit
        return [Piece(emit, ids, self.is_thinking)]

    def _find_stop(self, text: str) -> int | None:
        hits = [i for i in (text.find(s) for s in self._stop) if i >= 0]
        return min(hits) if hits else None
