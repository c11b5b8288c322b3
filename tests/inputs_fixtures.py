"""Shared helpers for the inputs-layer tests: a processor checkpoint folder and generated media.

The folder carries everything transformers' processor reads too (tokenizer.json, tokenizer_config.json,
chat_template.json, preprocessor_config.json, config.json), with a small byte-level BPE that holds the
real Qwen3-Omni special-token ids (151643.., spec §4.4) and the role ids 872/8948/77091/198.
Media are generated here: numpy tones and noise, espeak-ng speech, Pillow drawings, PyAV-encoded files.
"""
from __future__ import annotations

import io
import json
import shutil
import subprocess
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
from PIL import Image, ImageDraw

from omnistream.inputs.chat_template import write_chat_template
from omnistream.inputs.tokenizer import QWEN3_OMNI_SPECIAL_TOKENS, write_tokenizer
from tests.reference import tiny_config

# The released preprocessor_config.json values (spec §0 [PP]).
PREPROCESSOR_CONFIG = {
    "feature_extractor_type": "WhisperFeatureExtractor", "feature_size": 128, "hop_length": 160,
    "n_fft": 400, "n_samples": 4_800_000, "nb_max_frames": 30000, "chunk_length": 300, "sampling_rate": 16000,
    "padding_side": "right", "padding_value": 0.0, "return_attention_mask": True, "dither": 0.0,
    "image_processor_type": "Qwen2VLImageProcessor", "do_resize": True, "do_rescale": True, "do_normalize": True,
    "do_convert_rgb": True, "rescale_factor": 0.00392156862745098, "image_mean": [0.5, 0.5, 0.5],
    "image_std": [0.5, 0.5, 0.5], "min_pixels": 3136, "max_pixels": 12845056, "patch_size": 16,
    "temporal_patch_size": 2, "merge_size": 2, "resample": 3,
    "processor_class": "Qwen3OmniMoeProcessor",
}

CORPUS = (["system\nuser\nassistant\n"] * 40 + [
    "You are a helpful assistant. What is in this image? Describe the audio and the video.",
    "The red circle moves to the left while a blue square stays still. A cat sat on the mat.",
    "Hello world! Numbers 0123456789, punctuation: ;.,!?()[]{}<>'\" and émigré naïve 你好世界.",
    "Transcribe the speech, then answer in one sentence. Thank you very much.",
] * 30)

SPECIAL_IDS = {token: 151643 + i for i, token in enumerate(QWEN3_OMNI_SPECIAL_TOKENS)}
ROLE_IDS = {"user": 872, "system": 8948, "assistant": 77091, "Ċ": 198}


def build_checkpoint(folder: Path, config: dict | None = None, preprocessor: dict | None = None) -> Path:
    """Write a processor-complete checkpoint folder (no weights) and return it."""
    folder.mkdir(parents=True, exist_ok=True)
    write_tokenizer(folder, CORPUS, SPECIAL_IDS, vocab_size=600, fixed_ids=ROLE_IDS)
    write_chat_template(folder)
    (folder / "preprocessor_config.json").write_text(json.dumps({**PREPROCESSOR_CONFIG, **(preprocessor or {})}, indent=2))
    (folder / "config.json").write_text(json.dumps(config or tiny_config(), indent=2))
    return folder


# -------------------------------------------------------------------------------------------- audio

def tone(seconds: float, freq: float = 440.0, sr: int = 16000, amplitude: float = 0.3) -> np.ndarray:
    t = np.arange(int(round(seconds * sr))) / sr
    return (amplitude * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def noise(seconds: float, sr: int = 16000, seed: int = 0, amplitude: float = 0.1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (amplitude * rng.standard_normal(int(round(seconds * sr)))).astype(np.float32)


def espeak_wav(text: str) -> bytes:
    """Speech from espeak-ng as WAV bytes (22.05 kHz mono)."""
    exe = shutil.which("espeak-ng") or "/usr/bin/espeak-ng"
    return subprocess.run([exe, "--stdout", text], check=True, capture_output=True, timeout=60).stdout


def encode_audio(samples: np.ndarray, sr: int, fmt: str = "wav", codec: str | None = None,
                 channels: int = 1) -> bytes:
    """Encode float mono samples to an audio file in memory with PyAV."""
    codec = codec or {"wav": "pcm_s16le", "flac": "flac", "mp3": "libmp3lame", "ogg": "libopus",
                      "ipod": "aac", "matroska": "libopus"}[fmt]
    buf = io.BytesIO()
    layout = "mono" if channels == 1 else "stereo"
    rate = 48000 if codec == "libopus" else sr
    data = samples if rate == sr else _resample_linear(samples, sr, rate)
    with av.open(buf, "w", format=fmt) as container:
        stream = container.add_stream(codec, rate=rate, layout=layout)
        _write_audio(container, stream, data, rate, layout)
    return buf.getvalue()


def _resample_linear(samples: np.ndarray, sr: int, rate: int) -> np.ndarray:
    n = int(len(samples) * rate / sr)
    return np.interp(np.arange(n) * sr / rate, np.arange(len(samples)), samples).astype(np.float32)


def _write_audio(container, stream, samples: np.ndarray, rate: int, layout: str) -> None:
    channels = 1 if layout == "mono" else 2
    planar = np.repeat(samples[None, :], channels, axis=0).astype(np.float32)
    fmt = stream.codec_context.format.name
    frame_size = stream.codec_context.frame_size or 1024
    for start in range(0, planar.shape[1], frame_size):
        chunk = planar[:, start:start + frame_size]
        frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(chunk), format="fltp", layout=layout)
        frame.sample_rate = rate
        frame.pts = start
        frame.time_base = Fraction(1, rate)
        for converted in av.AudioResampler(format=fmt, layout=layout, rate=rate).resample(frame):
            for packet in stream.encode(converted):
                container.mux(packet)
    for packet in stream.encode(None):
        container.mux(packet)


# -------------------------------------------------------------------------------------------- images

def drawing(width: int, height: int, seed: int = 0, mode: str = "RGB") -> Image.Image:
    """A Pillow drawing with shapes and a gradient, so resizing has real detail to interpolate."""
    rng = np.random.default_rng(seed)
    x = np.linspace(0, 255, width, dtype=np.float32)[None, :]
    y = np.linspace(0, 255, height, dtype=np.float32)[:, None]
    base = np.stack([x + 0 * y, y + 0 * x, (x + y) / 2], axis=-1).astype(np.uint8)
    image = Image.fromarray(base, "RGB")
    draw = ImageDraw.Draw(image)
    for _ in range(6):
        x0, y0 = rng.integers(0, max(width - 1, 1)), rng.integers(0, max(height - 1, 1))
        x1, y1 = x0 + rng.integers(1, max(width // 2, 2)), y0 + rng.integers(1, max(height // 2, 2))
        color = tuple(int(c) for c in rng.integers(0, 256, 3))
        (draw.ellipse if rng.random() < 0.5 else draw.rectangle)([x0, y0, x1, y1], fill=color)
    return image.convert(mode) if mode != "RGB" else image


def image_bytes(image: Image.Image, fmt: str = "PNG") -> bytes:
    buf = io.BytesIO()
    image.save(buf, format=fmt)
    return buf.getvalue()


# -------------------------------------------------------------------------------------------- video

def video_frames(n: int, width: int, height: int, seed: int = 0) -> list[np.ndarray]:
    """Frames of a square moving across a drawing."""
    background = np.asarray(drawing(width, height, seed))
    frames = []
    for i in range(n):
        frame = background.copy()
        x = int(i * (width - 8) / max(n - 1, 1))
        frame[height // 3: height // 3 + 8, x:x + 8] = (255, 0, 0)
        frames.append(frame)
    return frames


def encode_video(frames: list[np.ndarray], fps: int, fmt: str = "mp4", audio: np.ndarray | None = None,
                 sr: int = 16000) -> bytes:
    """Encode RGB frames (and optional mono audio) with PyAV: mp4 → h264/aac, webm → vp9/opus, avi → mpeg4."""
    codec = {"mp4": "libx264", "webm": "libvpx-vp9", "avi": "mpeg4", "matroska": "libx264"}[fmt]
    buf = io.BytesIO()
    with av.open(buf, "w", format=fmt) as container:
        stream = container.add_stream(codec, rate=fps)
        stream.width, stream.height = frames[0].shape[1], frames[0].shape[0]
        stream.pix_fmt = "yuv420p"
        if codec == "libx264":
            stream.options = {"crf": "10", "preset": "ultrafast"}
        audio_stream = None
        if audio is not None:
            audio_codec = "libopus" if fmt == "webm" else ("aac" if fmt in ("mp4", "matroska") else "pcm_s16le")
            rate = 48000 if audio_codec == "libopus" else sr
            audio_stream = container.add_stream(audio_codec, rate=rate, layout="mono")
        for frame in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
        if audio_stream is not None:
            rate = audio_stream.codec_context.sample_rate
            data = audio if rate == sr else _resample_linear(audio, sr, rate)
            _write_audio(container, audio_stream, data, rate, "mono")
    return buf.getvalue()
