"""Corrupted and random bytes into every decoder: only typed `OmniInputError`s may come out, quickly.

Seeds are valid files of each supported kind; each is truncated, bit-flipped and spliced with noise, and
pure random blobs are added. Every call must either return well-formed arrays or raise an
`OmniInputError` subclass, and finish within a few seconds (no hangs, no crashes).
"""
from __future__ import annotations

import base64
import time

import numpy as np
import pytest

from omnistream.errors import OmniInputError
from omnistream.inputs.limits import InputLimits
from omnistream.inputs.loading import load_part, pixels
from omnistream.inputs.media import load_audio, load_image
from omnistream.inputs.prompt import MediaPart
from omnistream.inputs.settings import PreprocessorSettings
from tests.inputs_fixtures import drawing, encode_audio, encode_video, image_bytes, tone, video_frames

pytestmark = pytest.mark.timeout(300)
LIMITS = InputLimits(max_audio_seconds=60, max_video_seconds=60)
SETTINGS = PreprocessorSettings()
PER_CALL_SECONDS = 10.0


def decode_video(data: bytes) -> np.ndarray:
    item = load_part(MediaPart("video", data, "video"), SETTINGS, LIMITS, use_audio_in_video=True, default_fps=2.0)
    return pixels(item, SETTINGS)


DECODERS = {
    "audio": lambda data: load_audio(data, "audio", LIMITS),
    "image": lambda data: load_image(data, "image", LIMITS),
    "video": decode_video,
}


def seeds() -> dict[str, list[bytes]]:
    wave = tone(0.6, 500.0)
    clip = video_frames(6, 48, 32)
    return {
        "audio": [encode_audio(wave, 16000, fmt) for fmt in ("wav", "flac", "mp3", "ogg", "ipod")],
        "image": [image_bytes(drawing(24, 18), fmt) for fmt in ("PNG", "JPEG", "GIF", "WEBP")],
        "video": [encode_video(clip, 6, "mp4", audio=tone(1.0)), encode_video(clip, 6, "webm"),
                  encode_video(clip, 6, "avi")],
    }


def mutations(data: bytes, rng: np.random.Generator, count: int) -> list[bytes]:
    out = []
    for _ in range(count):
        kind = rng.integers(4)
        if kind == 0:                                                     # truncated
            out.append(data[: int(rng.integers(1, len(data)))])
        elif kind == 1:                                                   # random byte flips
            mutated = bytearray(data)
            for position in rng.integers(0, len(data), int(rng.integers(1, 40))):
                mutated[position] = int(rng.integers(256))
            out.append(bytes(mutated))
        elif kind == 2:                                                   # valid header, garbage body
            cut = int(rng.integers(8, min(len(data), 200)))
            out.append(data[:cut] + rng.bytes(int(rng.integers(1, 4000))))
        else:                                                             # a slice from the middle
            start = int(rng.integers(0, len(data) - 1))
            out.append(data[start:start + int(rng.integers(1, 2000))])
    return out


def random_blobs(rng: np.random.Generator) -> list[bytes]:
    blobs = [rng.bytes(int(n)) for n in rng.integers(1, 5000, 6)]
    return blobs + [b"\x00" * 1000, b"\xff" * 17, b"RIFF", b"\x1a\x45\xdf\xa3" + rng.bytes(300), b"ftypisom" * 20]


def check(kind: str, data: bytes) -> str:
    """Run one decoder; return 'ok' or the error class name; fail on any non-input error or a slow call."""
    started = time.monotonic()
    try:
        result = DECODERS[kind](data)
        outcome = "ok"
        assert isinstance(result, np.ndarray) and result.size > 0 and np.isfinite(result).all()
    except OmniInputError as e:
        outcome = type(e).__name__
        assert str(e)
    elapsed = time.monotonic() - started
    assert elapsed < PER_CALL_SECONDS, f"{kind} decoder took {elapsed:.1f}s on {len(data)} bytes"
    return outcome


@pytest.mark.parametrize("kind", ["audio", "image", "video"])
def test_corrupted_files_raise_only_input_errors(kind):
    rng = np.random.default_rng({"audio": 1, "image": 2, "video": 3}[kind])
    outcomes: dict[str, int] = {}
    cases = [m for seed in seeds()[kind] for m in mutations(seed, rng, 16 if kind != "video" else 8)]
    for data in cases + random_blobs(rng):
        outcome = check(kind, data)
        outcomes[outcome] = outcomes.get(outcome, 0) + 1
    assert sum(v for k, v in outcomes.items() if k != "ok") > 0, outcomes   # the corruption was noticed


@pytest.mark.parametrize("kind", ["audio", "image", "video"])
def test_every_seed_decodes(kind):
    assert all(check(kind, data) == "ok" for data in seeds()[kind])


@pytest.mark.parametrize("kind", ["audio", "image", "video"])
def test_other_decoders_refuse_each_others_files(kind):
    for other, blobs in seeds().items():
        if other != kind:
            for data in blobs[:2]:
                check(kind, data)


def test_broken_data_urls():
    for url in ("data:audio/wav;base64,!!!notbase64", "data:,", "data:image/png;base64," + "A" * 33,
                "data:audio/wav;base64," + base64.b64encode(b"\x00" * 64).decode(), "data:text/plain,hello"):
        for kind in ("audio", "image"):
            try:
                DECODERS[kind](url)  # type: ignore[arg-type]
            except OmniInputError:
                pass
