"""Code2Wav execution: one `Code2WavStream` per speaking request, fed its new frames in chunks.

Each stream keeps its own left context (attention window, conv tails), so requests at different points of
their speech never share state, and the chunks of one request concatenate to exactly the one-shot decoding
of all its frames (no samples lost at chunk boundaries, unlike the reference's chunked_decode, spec §7.2-7).

Chunking trades latency for throughput: the first chunk is decoded as soon as `first_frames` frames exist
(the first audio of a reply), later ones every `chunk_frames` frames, and whatever is left when the talker
stops.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch


@dataclass
class _Stream:
    stream: object                                   # Code2WavStream
    pending: list[torch.Tensor] = field(default_factory=list)   # frames [Q] not decoded yet
    frames_decoded: int = 0
    samples: int = 0


class Code2WavRunner:
    def __init__(self, code2wav: torch.nn.Module, *, first_frames: int, chunk_frames: int) -> None:
        self.code2wav = code2wav
        self.first_frames, self.chunk_frames = first_frames, chunk_frames
        self.streams: dict[str, _Stream] = {}

    @property
    def sample_rate(self) -> int:
        return 24000

    def add_frame(self, request_id: str, frame: torch.Tensor) -> None:
        """Queue one frame [Q] of codes for `request_id` (its stream starts with the first frame)."""
        state = self.streams.get(request_id)
        if state is None:
            state = self.streams[request_id] = _Stream(self.code2wav.start_stream())
        state.pending.append(frame)

    @torch.no_grad()
    def decode(self, request_id: str, final: bool) -> tuple[np.ndarray | None, int, int]:
        """Decode the pending frames when a chunk is due (or `final`): (samples | None, first frame, count)."""
        state = self.streams.get(request_id)
        if state is None or not state.pending:
            return None, 0, 0
        due = self.first_frames if state.frames_decoded == 0 else self.chunk_frames
        if len(state.pending) < due and not final:
            return None, 0, 0
        codes = torch.stack(state.pending, dim=1)                      # [Q, f]
        first, count = state.frames_decoded, codes.shape[1]
        state.pending.clear()
        samples = state.stream.push(codes).float().cpu().numpy()
        state.frames_decoded += count
        state.samples += samples.shape[0]
        return samples, first, count

    def samples_emitted(self, request_id: str) -> int:
        state = self.streams.get(request_id)
        return state.samples if state is not None else 0

    def release(self, request_id: str) -> None:
        state = self.streams.pop(request_id, None)
        if state is not None:
            state.stream.flush()
