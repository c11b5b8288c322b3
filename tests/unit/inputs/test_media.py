"""Decoding media with PyAV and Pillow, source rules and limits — typed errors for everything bad."""
from __future__ import annotations

import base64
import struct
import zlib

import numpy as np
import pytest

from omnistream.errors import LimitExceeded, MediaError, OmniInputError
from omnistream.inputs.limits import InputLimits
from omnistream.inputs.media import load_audio, load_image
from omnistream.inputs.sources import resolve_source
from omnistream.inputs.video import plan_frames, probe_video, VideoInfo
from tests.inputs_fixtures import drawing, encode_audio, encode_video, espeak_wav, image_bytes, tone, video_frames

LIMITS = InputLimits()


def dominant_hz(samples: np.ndarray, sr: int = 16000) -> float:
    spectrum = np.abs(np.fft.rfft(samples * np.hanning(len(samples))))
    return float(np.argmax(spectrum) * sr / len(samples))


@pytest.mark.parametrize("fmt", ["wav", "flac", "mp3", "ogg", "ipod", "matroska"])
def test_audio_formats_decode_to_16k_mono(fmt):
    data = encode_audio(tone(1.0, 440.0, sr=44100), 44100, fmt)
    samples = load_audio(data, "audio", LIMITS)
    assert samples.dtype == np.float32 and samples.ndim == 1
    assert abs(len(samples) - 16000) < 1200            # codec priming / padding adds a little
    assert abs(dominant_hz(samples[2000:14000]) - 440.0) < 5.0


def test_stereo_array_and_integer_pcm_and_resampling():
    stereo = np.stack([tone(0.5, 300.0, sr=8000), tone(0.5, 300.0, sr=8000)], axis=1)      # [n, 2]
    samples = load_audio((stereo, 8000), "audio", LIMITS)
    assert abs(len(samples) - 8000) <= 2 and abs(dominant_hz(samples) - 300.0) < 5.0
    pcm = (tone(0.25) * 32767).astype(np.int16)
    np.testing.assert_allclose(load_audio((pcm, 16000), "audio", LIMITS), tone(0.25), atol=1e-4)


def test_espeak_speech_and_file_paths(tmp_path):
    path = tmp_path / "speech.wav"
    path.write_bytes(espeak_wav("hello there"))
    from_path = load_audio(str(path), "audio", LIMITS)
    from_url = load_audio(path.as_uri(), "audio", LIMITS)
    np.testing.assert_array_equal(from_path, from_url)
    assert 0.3 < len(from_path) / 16000 < 3.0 and np.abs(from_path).max() > 0.05


def test_data_url_audio():
    url = "data:audio/wav;base64," + base64.b64encode(encode_audio(tone(0.5), 16000)).decode()
    assert abs(len(load_audio(url, "audio", LIMITS)) - 8000) <= 1


@pytest.mark.parametrize("value,error,match", [
    (b"", MediaError, "empty"),
    (b"RIFF\x00\x00\x00\x00WAVEjunk", MediaError, "unreadable|no audio|cannot decode"),
    (np.zeros(0, np.float32), MediaError, "non-empty"),
    (np.array([0.0, np.nan], np.float32), MediaError, "NaN"),
    ((np.zeros(100, np.float32), 0), OmniInputError, "sample rate"),
    (42, OmniInputError, "audio must be"),
    ("/no/such/file.wav", MediaError, "no such file"),
    ("http://example.com/a.wav", OmniInputError, "remote URLs are disabled"),
    ("ftp://example.com/a.wav", OmniInputError, "not supported"),
])
def test_bad_audio_inputs(value, error, match):
    with pytest.raises(error, match=match):
        load_audio(value, "audio", LIMITS)


def test_audio_track_of_a_video_file_without_one_is_an_error():
    data = encode_video(video_frames(4, 32, 32), fps=4)
    with pytest.raises(MediaError, match="no audio track"):
        load_audio(data, "audio", LIMITS)


def test_audio_duration_limit_stops_decoding():
    limits = InputLimits(max_audio_seconds=0.5)
    with pytest.raises(LimitExceeded, match="max_audio_seconds"):
        load_audio(encode_audio(tone(2.0), 16000), "audio", limits)
    with pytest.raises(LimitExceeded, match="max_audio_seconds"):
        load_audio((tone(2.0), 16000), "audio", limits)


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "WEBP", "GIF", "BMP"])
def test_image_formats(fmt):
    image = load_image(image_bytes(drawing(50, 30), fmt), "image", LIMITS)
    assert image.shape == (30, 50, 3) and image.dtype == np.uint8


def test_transparency_is_composited_on_white():
    rgba = np.zeros((4, 4, 4), np.uint8)                           # fully transparent black
    assert (load_image(rgba, "image", LIMITS) == 255).all()


def png_header_only(width: int, height: int) -> bytes:
    """A PNG whose header claims `width`×`height` (a decompression bomb's header), with a tiny body."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 16)) + \
        chunk(b"IEND", b"")


def test_decompression_bomb_refused_from_header():
    with pytest.raises(LimitExceeded, match="max_image_pixels"):
        load_image(png_header_only(100_000, 100_000), "image", LIMITS)


@pytest.mark.parametrize("value,match", [
    (png_header_only(10, 4000), "aspect ratio"),
    (np.zeros((0, 10, 3), np.uint8), "zero size"),
    (np.zeros((10, 10, 2), np.uint8), "shape"),
    (np.full((4, 4, 3), 2.0, np.float32), r"\[0, 1\]"),
    (image_bytes(drawing(40, 40), "PNG")[:60], "unreadable|truncated"),
    (b"not an image at all", "unreadable"),
])
def test_bad_images(value, match):
    with pytest.raises(MediaError, match=match):
        load_image(value, "image", LIMITS)


def test_local_file_rules(tmp_path):
    inside = tmp_path / "inside"
    inside.mkdir()
    (inside / "a.png").write_bytes(image_bytes(drawing(8, 8)))
    outside = tmp_path / "secret.png"
    outside.write_bytes(image_bytes(drawing(8, 8)))
    (inside / "link.png").symlink_to(outside)
    confined = InputLimits(allowed_local_dirs=(str(inside),))
    assert resolve_source(str(inside / "a.png"), "image", confined).path == (inside / "a.png").resolve()
    with pytest.raises(OmniInputError, match="outside the allowed folders"):
        resolve_source(str(outside), "image", confined)
    with pytest.raises(OmniInputError, match="outside the allowed folders"):
        resolve_source(str(inside / "link.png"), "image", confined)    # symlinks are resolved first
    with pytest.raises(OmniInputError, match="local files are not allowed"):
        resolve_source(str(inside / "a.png"), "image", InputLimits(allow_local_files=False))
    with pytest.raises(MediaError, match="not a regular file"):
        resolve_source(str(inside), "image", LIMITS)
    with pytest.raises(LimitExceeded, match="max_media_bytes"):
        resolve_source(str(inside / "a.png"), "image", InputLimits(max_media_bytes=10))


@pytest.mark.parametrize("fmt", ["mp4", "webm", "avi", "matroska"])
def test_video_containers_probe(fmt):
    info = probe_video(resolve_source(encode_video(video_frames(12, 64, 48), fps=6, fmt=fmt), "video", LIMITS),
                       LIMITS)
    assert (info.width, info.height) == (64, 48) and abs(info.fps - 6) < 1e-6
    assert info.total_frames == 12 and not info.has_audio


def test_frame_plan_follows_qwen_omni_utils():
    info = VideoInfo(total_frames=300, fps=30.0, width=64, height=64, has_audio=False)   # 10 s
    indices, fps = plan_frames(info, 2.0, 768, 2)
    assert len(indices) == 20 and indices[0] == 0 and indices[-1] == 299 and fps == pytest.approx(2.0)
    short = VideoInfo(total_frames=9, fps=30.0, width=64, height=64, has_audio=False)      # 0.3 s → 4 frames
    indices, fps = plan_frames(short, 2.0, 768, 2)
    assert indices == [0, 3, 5, 8] and fps == pytest.approx(4 / 9 * 30)
    capped, _ = plan_frames(info, 2.0, 11, 2)
    assert len(capped) == 10


def test_audio_only_file_as_video_is_an_error():
    with pytest.raises(MediaError, match="no video track"):
        probe_video(resolve_source(encode_audio(tone(0.5), 16000), "video", LIMITS), LIMITS)


def test_video_duration_limit():
    data = encode_video(video_frames(20, 32, 32), fps=10)
    with pytest.raises(LimitExceeded, match="max_video_seconds"):
        probe_video(resolve_source(data, "video", LIMITS), InputLimits(max_video_seconds=1.0))
