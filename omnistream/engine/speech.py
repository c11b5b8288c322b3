"""The speech stages of the engine step: talker (+ code predictor) and code2wav, for every speaking request.

A thin layer over `TalkerRunner` and `Code2WavRunner` so the engine step reads as: prefill, decode, fill
frames, vocode, done.
"""
from __future__ import annotations

import numpy as np
import torch

from omnistream.engine.code2wav_runner import Code2WavRunner
from omnistream.engine.config import EngineConfig
from omnistream.engine.request import Request
from omnistream.engine.talker_runner import TalkerRunner
from omnistream.engine.thinker_runner import PrefillOutput


class SpeechStages:
    def __init__(self, model: torch.nn.Module, omni_config, token_ids, *, num_slots: int, max_len: int,
                 config: EngineConfig) -> None:
        self.talker = TalkerRunner(model.talker, model.thinker, omni_config, token_ids,
                                   num_slots=num_slots, max_len=max_len, compile=config.compile)
        self.code2wav = Code2WavRunner(model.code2wav, first_frames=config.first_audio_frames,
                                       chunk_frames=config.audio_chunk_frames)

    @property
    def sample_rate(self) -> int:
        return self.code2wav.sample_rate

    def prefill(self, request: Request, slot: int, thinker_out: PrefillOutput) -> None:
        self.talker.prefill(request, slot, thinker_out)

    def decode(self, requests: list[Request]) -> None:
        """Talker step k for each request, consuming the text track entry its thinker has made known."""
        self.talker.decode(requests, [self.talker.text_input(r) for r in requests])

    def has_pending_code(self, request_id: str) -> bool:
        return self.talker.has_pending(request_id)

    def fill_frames(self, requests: list[Request]) -> list[np.ndarray]:
        frames = self.talker.fill_frames(requests)                               # [B, Q]
        for request, frame in zip(requests, frames):
            self.code2wav.add_frame(request.request_id, frame)
        return list(frames.cpu().numpy())

    def vocode(self, request: Request) -> tuple[np.ndarray | None, int, int]:
        """New audio for a request when a chunk is due; everything left once its talker has finished."""
        final = self.talker.is_done(request.request_id)
        return self.code2wav.decode(request.request_id, final)

    def is_done(self, request: Request) -> bool:
        return self.talker.is_done(request.request_id)

    def release(self, request_id: str) -> None:
        self.talker.release(request_id)
        self.code2wav.release(request_id)
