"""Audio on the wire: PCM16 conversion, WAV headers, every output format through PyAV, streaming resampling."""
from __future__ import annotations

import io

import av
import numpy as np
import pytest

from omnistream.errors import MediaError
from omnistream.server.audio_codecs import (
    StreamResampler, decode_base64, encode_audio, float_to_pcm16, pcm16_to_float, wav_header,
)

RATE = 24000


def tone(seconds: float = 1.0, freq: float = 440.0) -> np.ndarray:
    t = np.arange(int(seconds * RATE)) / RATE
    return (0.5 * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def test_pcm16_round_trip_and_clipping():
    x = np.array([0.0, 0.5, -0.5, 1.0, -1.0, 3.0, -3.0], np.float32)
    back = pcm16_to_float(float_to_pcm16(x))
    assert np.allclose(back[:5], x[:5], atol=1 / 32767)
    assert back[5] == pytest.approx(32767 / 32768) and back[6] == pytest.approx(-32767 / 32768)
    with pytest.raises(MediaError):
        pcm16_to_float(b"\x00\x01\x02")


def test_base64_is_strict():
    assert decode_base64("AAEC", "audio") == b"\x00\x01\x02"
    for bad in ("AAE", "AA!C", "ÄÄÄÄ"):
        with pytest.raises(MediaError, match="audio"):
            decode_base64(bad, "audio")


@pytest.mark.parametrize("fmt", ["wav", "flac", "mp3", "opus", "aac"])
def test_every_format_decodes_back(fmt):
    x = tone()
    with av.open(io.BytesIO(encode_audio(x, RATE, fmt))) as container:
        stream = container.streams.audio[0]
        y = np.concatenate([f.to_ndarray()[0] for f in container.decode(stream)]).astype(np.float32)
        rate = stream.rate
    if y.dtype.kind != "f" or np.abs(y).max() > 2:
        y = y / 32768
    assert abs(len(y) / rate - 1.0) < 0.08
    spectrum = np.abs(np.fft.rfft(y[: rate // 2]))
    assert abs(np.argmax(spectrum) * 2 - 440) <= 4          # the tone survives lossy coding


def test_wav_header_sizes():
    x = tone(0.1)
    data = encode_audio(x, RATE, "wav")
    assert data[:4] == b"RIFF" and int.from_bytes(data[40:44], "little") == len(x) * 2
    streaming = wav_header(RATE)
    assert len(streaming) == 44 and streaming[4:8] == b"\xff\xff\xff\xff" and streaming[40:44] == b"\xff\xff\xff\xff"


def test_streaming_resampler_matches_one_shot():
    x = tone(1.0, 300)
    one = StreamResampler(RATE, 16000)
    whole = np.concatenate([one.push(x), one.flush()])
    parts = StreamResampler(RATE, 16000)
    chunks = [parts.push(x[i:i + 1234]) for i in range(0, len(x), 1234)] + [parts.flush()]
    streamed = np.concatenate(chunks)
    assert len(whole) == len(streamed) == 16000
    assert np.abs(whole - streamed).max() < 1e-4
