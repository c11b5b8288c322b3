"""The realtime input audio buffer: PCM16 in at 16/24 kHz, 16 kHz float32 kept, server VAD on top.

Positions are absolute sample indices of the 16 kHz stream since the session started (so `audio_start_ms`
and `audio_end_ms` in events are stream times, as OpenAI's are). The buffer holds audio from `start` (the last
commit or clear) on; while nobody is speaking under server VAD, audio older than the prefix padding is
dropped, so an idle open microphone costs no memory.
"""
from __future__ import annotations

import json
from typing import Any

import numpy as np

from omnistream.server.audio_codecs import StreamResampler, decode_base64, pcm16_to_float
from omnistream.server.errors import APIError
from omnistream.server.vad import SAMPLE_RATE, SileroVAD, SpeechProbabilities, TurnDetection, TurnDetector, VADEvent


class InputAudioBuffer:
    def __init__(self, input_rate: int, max_seconds: float, vad_model: SileroVAD | None,
                 turn_detection: TurnDetection | None) -> None:
        self.max_samples = int(max_seconds * SAMPLE_RATE)
        self._resampler = StreamResampler(input_rate, SAMPLE_RATE)
        self._chunks: list[np.ndarray] = []
        self.start = 0                      # absolute position of the first kept sample
        self.end = 0                        # absolute position after the last sample
        self.vad_model = vad_model
        self.detector: TurnDetector | None = None
        self.configure(input_rate, turn_detection)

    def configure(self, input_rate: int, turn_detection: TurnDetection | None) -> None:
        if input_rate != self._resampler.in_rate:
            self._resampler = StreamResampler(input_rate, SAMPLE_RATE)
        settings = self.detector.settings if self.detector is not None else None
        if turn_detection is None or self.vad_model is None:
            self.detector = None
        elif turn_detection != settings:
            self.detector = TurnDetector(SpeechProbabilities(self.vad_model), turn_detection)
            self.detector.windows_seen = self.end // 512        # keep stream time continuous

    @property
    def in_speech(self) -> bool:
        return self.detector is not None and self.detector.in_speech

    def append(self, pcm16: bytes) -> list[VADEvent]:
        samples = self._resampler.push(pcm16_to_float(pcm16))
        if samples.size == 0:
            return []
        if self.end + samples.size - self.start > self.max_samples:
            raise APIError(400, f"The input audio buffer is over its limit of {self.max_samples // SAMPLE_RATE} s; "
                                "commit or clear it.", param="audio", code="input_audio_buffer_full")
        self._chunks.append(samples)
        self.end += samples.size
        events = self.detector.push(samples) if self.detector is not None else []
        if self.detector is not None and not self.detector.in_speech and not events:
            pad = self.detector.settings.prefix_padding_ms * SAMPLE_RATE // 1000 + 512
            self.drop_before(self.end - pad)
        return events

    def take(self, start: int, end: int) -> np.ndarray:
        """Samples in [start, end) of the stream (clipped to what is kept)."""
        data = np.concatenate(self._chunks) if self._chunks else np.zeros(0, np.float32)
        self._chunks = [data] if data.size else []
        lo, hi = max(start, self.start) - self.start, max(min(end, self.end), self.start) - self.start
        return data[lo:hi].copy()

    def drop_before(self, position: int) -> None:
        position = min(max(position, self.start), self.end)
        if position == self.start:
            return
        data = np.concatenate(self._chunks) if self._chunks else np.zeros(0, np.float32)
        data = data[position - self.start:]
        self._chunks = [data] if data.size else []
        self.start = position

    def commit_all(self) -> np.ndarray:
        """Everything buffered (manual commit); the buffer is then empty."""
        samples = self.take(self.start, self.end)
        self.drop_before(self.end)
        if self.detector is not None:
            self.detector.reset()
        return samples

    def clear(self) -> None:
        self.drop_before(self.end)
        if self.detector is not None:
            self.detector.reset()


def parse_event(message: dict[str, Any]) -> dict[str, Any]:
    """A WebSocket message → a client event dict (JSON object with a string `type`), or APIError."""
    text = message.get("text")
    if text is None:
        raise APIError(400, "Binary frames are not part of the protocol; send JSON text events.", param=None,
                       code="invalid_event")
    try:
        event = json.loads(text)
    except json.JSONDecodeError as e:
        raise APIError(400, f"The event is not valid JSON ({e}).", param=None, code="invalid_json") from None
    if not isinstance(event, dict) or not isinstance(event.get("type"), str):
        raise APIError(400, "An event must be a JSON object with a string 'type'.", param="type",
                       code="invalid_event")
    return event


def pcm16_payload(value: Any, param: str) -> bytes:
    """Base64 PCM16 from an event field (strict base64, even byte count), or APIError naming the field."""
    try:
        data = decode_base64(value, param)
    except Exception:  # noqa: BLE001
        raise APIError(400, f"Invalid value for '{param}': not valid base64.", param=param,
                       code="invalid_value") from None
    if len(data) % 2:
        raise APIError(400, f"Invalid value for '{param}': PCM16 needs an even number of bytes.", param=param,
                       code="invalid_value")
    return data
