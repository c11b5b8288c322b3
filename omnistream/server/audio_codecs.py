"""Audio in and out of the wire: PCM16 ⇄ float32, WAV headers, PyAV encoding, streaming resampling.

Output audio is the engine's float32 mono at 24 kHz. Non-streamed answers are encoded whole in the format
the client asked for (wav, pcm16, flac, mp3, opus, aac — all through PyAV/ffmpeg); streamed answers are raw
PCM16 chunks, optionally preceded by one WAV header whose sizes say "unknown length" (0xFFFFFFFF), which
players and ffmpeg accept for streams.
"""
from __future__ import annotations

import base64
import binascii
import io
import struct

import av
import numpy as np

from omnistream.errors import MediaError

# format → (container, codec, sample format the encoder takes)
_ENCODERS = {
    "flac": ("flac", "flac", "s16"),
    "mp3": ("mp3", "libmp3lame", "s16p"),
    "opus": ("ogg", "libopus", "s16"),
    "aac": ("adts", "aac", "fltp"),
}


def float_to_pcm16(samples: np.ndarray) -> bytes:
    """float32 [-1, 1] → little-endian int16 bytes (clipped, rounded)."""
    scaled = np.clip(np.asarray(samples, dtype=np.float32), -1.0, 1.0) * 32767.0
    return np.round(scaled).astype("<i2").tobytes()


def pcm16_to_float(data: bytes) -> np.ndarray:
    """Little-endian int16 bytes → float32 in [-1, 1)."""
    if len(data) % 2:
        raise MediaError("PCM16 audio must have an even number of bytes", param="audio")
    return np.frombuffer(data, dtype="<i2").astype(np.float32) / 32768.0


def decode_base64(text: str, param: str) -> bytes:
    """Strict base64 (the alphabet and padding checked), naming the field on failure."""
    if not isinstance(text, str):
        raise MediaError(f"{param} must be a base64 string", param=param)
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise MediaError(f"{param} is not valid base64", param=param) from None


def wav_header(sample_rate: int, num_samples: int | None = None, channels: int = 1) -> bytes:
    """A 44-byte PCM16 WAV header; `num_samples=None` writes the streaming "unknown size" markers."""
    block = 2 * channels
    data_size = 0xFFFFFFFF if num_samples is None else num_samples * block
    riff_size = 0xFFFFFFFF if num_samples is None else 36 + data_size
    return (b"RIFF" + struct.pack("<I", riff_size) + b"WAVEfmt "
            + struct.pack("<IHHIIHH", 16, 1, channels, sample_rate, sample_rate * block, block, 16)
            + b"data" + struct.pack("<I", data_size))


def encode_audio(samples: np.ndarray, sample_rate: int, fmt: str) -> bytes:
    """Whole-answer encoding in one of protocol.AUDIO_OUTPUT_FORMATS."""
    pcm = float_to_pcm16(samples)
    if fmt == "pcm16":
        return pcm
    if fmt == "wav":
        return wav_header(sample_rate, len(pcm) // 2) + pcm
    if fmt not in _ENCODERS:
        raise ValueError(f"unknown audio format {fmt!r}")
    return _encode_with_pyav(np.frombuffer(pcm, dtype="<i2"), sample_rate, fmt)


def _encode_with_pyav(pcm: np.ndarray, sample_rate: int, fmt: str) -> bytes:
    container_name, codec, sample_format = _ENCODERS[fmt]
    out = io.BytesIO()
    with av.open(out, mode="w", format=container_name) as container:
        stream = container.add_stream(codec, rate=sample_rate, layout="mono")
        frame = av.AudioFrame.from_ndarray(pcm.reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate = sample_rate
        # The encoder wants its own sample format and frame size; the resampler re-chunks into frames.
        resampler = av.AudioResampler(format=sample_format, layout="mono", rate=sample_rate,
                                      frame_size=stream.codec_context.frame_size or None)
        for chunk in [*resampler.resample(frame), *resampler.resample(None)]:
            for packet in stream.encode(chunk):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return out.getvalue()


class StreamResampler:
    """Resamples a stream of float32 mono chunks (libswresample keeps the filter state between chunks)."""

    def __init__(self, in_rate: int, out_rate: int) -> None:
        self.in_rate, self.out_rate = in_rate, out_rate
        self._resampler = None if in_rate == out_rate else av.AudioResampler(format="flt", layout="mono",
                                                                              rate=out_rate)

    def push(self, samples: np.ndarray) -> np.ndarray:
        if self._resampler is None or samples.size == 0:
            return samples.astype(np.float32, copy=False)
        frame = av.AudioFrame.from_ndarray(samples.reshape(1, -1).astype(np.float32), format="flt", layout="mono")
        frame.sample_rate = self.in_rate
        return _concat(self._resampler.resample(frame))

    def flush(self) -> np.ndarray:
        if self._resampler is None:
            return np.zeros(0, np.float32)
        return _concat(self._resampler.resample(None))


def _concat(frames: list) -> np.ndarray:
    if not frames:
        return np.zeros(0, np.float32)
    return np.concatenate([f.to_ndarray().reshape(-1) for f in frames]).astype(np.float32)
