"""Decode audio and images into arrays: PyAV for audio (any format ffmpeg reads), Pillow for images.

Audio comes out as 16 kHz mono float32, images as RGB uint8 [H, W, 3] with transparency composited on
white (as the reference's `convert_to_rgb`). Every failure is an `OmniInputError` subclass naming the
request part; sizes are checked against `InputLimits` before the bytes are fully decoded (image size
from the header, audio duration while decoding). Video lives in `video.py`.
"""
from __future__ import annotations

import logging
import warnings
from typing import Any

import av
import numpy as np
from PIL import Image

from omnistream.errors import LimitExceeded, MediaError, OmniInputError
from omnistream.inputs.limits import InputLimits
from omnistream.inputs.sources import MediaBlob, is_encoded_source, resolve_source

logger = logging.getLogger(__name__)

# Demuxers ffmpeg may use on request bytes; playlists, concat lists and image sequences stay out, so a
# request can never make ffmpeg open another file or URL (spec: read nothing outside what was asked for).
CONTAINER_FORMATS = ("wav,w64,mp3,flac,ogg,mov,mp4,m4a,3gp,3g2,mj2,matroska,webm,avi,aac,aiff,caf,amr,au,"
                     "mpeg,mpegts,flv,asf,gif,ivf,h264,hevc,mjpeg,wv,ape,tta,voc,opus")
IMAGE_FORMATS = frozenset({"PNG", "JPEG", "WEBP", "GIF", "BMP", "TIFF", "MPO", "ICO", "PPM", "TGA"})


def open_container(blob: MediaBlob) -> Any:
    """Open encoded bytes with PyAV, restricted to the allowed demuxers."""
    handle = blob.open()
    try:
        return av.open(handle, mode="r", options={"format_whitelist": CONTAINER_FORMATS})
    except Exception as e:  # noqa: BLE001 - any demuxer failure on request bytes is a media error
        handle.close()
        raise MediaError(f"{blob.label}: unreadable or unknown media format ({_reason(e)})",
                         param=blob.label) from None


def _reason(e: BaseException) -> str:
    text = str(e).strip() or type(e).__name__
    return text[:200]


# ---------------------------------------------------------------------------------------------- audio

def load_audio(value: object, label: str, limits: InputLimits, sampling_rate: int = 16000) -> np.ndarray:
    """Any supported audio source → float32 [N] mono at `sampling_rate`.

    Accepts a path, bytes, data: URL, a `(array, sample_rate)` pair, or a bare 1-D array taken to be
    at `sampling_rate` already. Multi-channel audio is averaged to mono (as librosa's `to_mono`).
    """
    if isinstance(value, tuple) and len(value) == 2 and not is_encoded_source(value[0]):
        array, rate = value
        samples = _array_audio(array, label)
        rate = _sample_rate(rate, label)
        limits.check("max_audio_seconds", len(samples) / rate, limits.max_audio_seconds,
                     f"{label} duration in seconds", label)
        samples = resample(samples, rate, sampling_rate, label) if rate != sampling_rate else samples
    elif isinstance(value, np.ndarray) or _is_tensor(value):
        samples = _array_audio(value, label)
        limits.check("max_audio_seconds", len(samples) / sampling_rate, limits.max_audio_seconds,
                     f"{label} duration in seconds", label)
    elif is_encoded_source(value):
        samples = decode_audio(resolve_source(value, label, limits), limits, sampling_rate)
    else:
        raise OmniInputError(f"{label}: audio must be a path, bytes, data: URL, (array, sample_rate) or an "
                             f"array, got {type(value).__name__}", param=label)
    if samples.size == 0:
        raise MediaError(f"{label}: the audio has no samples", param=label)
    return samples


def _is_tensor(value: object) -> bool:
    return type(value).__module__.startswith("torch") and hasattr(value, "numpy")


def _sample_rate(rate: object, label: str) -> int:
    if isinstance(rate, bool) or not isinstance(rate, (int, np.integer, float)) or not 1000 <= rate <= 768_000 \
            or int(rate) != rate:
        raise OmniInputError(f"{label}: sample rate must be a whole number of Hz in 1000..768000, got {rate!r}",
                             param=label)
    return int(rate)


def _array_audio(array: object, label: str) -> np.ndarray:
    """An audio array → float32 mono [N]; 2-D arrays are averaged over their shorter (channel) axis."""
    if _is_tensor(array):
        array = array.detach().cpu().numpy()  # type: ignore[attr-defined]
    a = np.asarray(array)
    if a.dtype.kind not in "fiu" or a.ndim not in (1, 2) or a.size == 0:
        raise MediaError(f"{label}: audio array must be non-empty, numeric, 1-D (or 2-D with channels); "
                         f"got dtype {a.dtype} shape {a.shape}", param=label)
    if a.dtype.kind in "iu":  # integer PCM → [-1, 1]
        a = a.astype(np.float32) / float(np.iinfo(a.dtype).max)
    a = a.astype(np.float32, copy=False)
    if a.ndim == 2:
        a = a.mean(axis=int(np.argmin(a.shape)), dtype=np.float32)
    if not np.isfinite(a).all():
        raise MediaError(f"{label}: audio contains NaN or infinite samples", param=label)
    return np.ascontiguousarray(a)


def resample(samples: np.ndarray, rate: int, target: int, label: str) -> np.ndarray:
    """Resample mono float32 audio with libswresample (PyAV)."""
    frame = av.AudioFrame.from_ndarray(samples[None, :], format="flt", layout="mono")
    frame.sample_rate = rate
    resampler = av.AudioResampler(format="flt", layout="mono", rate=target)
    try:
        pieces = [f.to_ndarray().reshape(-1) for f in resampler.resample(frame)]
        pieces += [f.to_ndarray().reshape(-1) for f in resampler.resample(None)]
    except Exception as e:  # noqa: BLE001
        raise MediaError(f"{label}: cannot resample from {rate} Hz: {_reason(e)}", param=label) from None
    return np.concatenate(pieces).astype(np.float32) if pieces else np.zeros(0, np.float32)


def decode_audio(blob: MediaBlob, limits: InputLimits, sampling_rate: int = 16000,
                 required: bool = True) -> np.ndarray | None:
    """Decode the first audio stream of `blob` to mono float32 at `sampling_rate`.

    Returns None when the container has no audio stream and `required` is False (a silent video).
    """
    container = open_container(blob)
    try:
        stream = next((s for s in container.streams if s.type == "audio"), None)
        if stream is None:
            if required:
                raise MediaError(f"{blob.label}: no audio track found", param=blob.label)
            return None
        mono = _decode_stream_mono(container, stream, blob.label, limits)
        rate = stream.codec_context.sample_rate or stream.rate
    except OmniInputError:
        raise
    except Exception as e:  # noqa: BLE001 - corrupt streams raise many kinds of errors inside ffmpeg
        raise MediaError(f"{blob.label}: cannot decode audio ({_reason(e)})", param=blob.label) from None
    finally:
        container.close()
    if mono.size == 0:
        raise MediaError(f"{blob.label}: the audio track has no samples", param=blob.label)
    if not rate or rate <= 0:
        raise MediaError(f"{blob.label}: the audio track has no sample rate", param=blob.label)
    return resample(mono, int(rate), sampling_rate, blob.label) if rate != sampling_rate else mono


def _decode_stream_mono(container: Any, stream: Any, label: str, limits: InputLimits) -> np.ndarray:
    """Decode one audio stream to float32 mono at its native rate, stopping at the duration limit."""
    # Converting to packed float first lets every sample format (s16, fltp, s32p...) average the same way.
    to_float = av.AudioResampler(format="flt", layout=None, rate=None)
    pieces: list[np.ndarray] = []
    total = 0
    rate = stream.codec_context.sample_rate or 0
    max_samples = int(limits.max_audio_seconds * rate) if rate else None
    for frame in container.decode(stream):
        channels = len(frame.layout.channels) or 1
        for packed in to_float.resample(frame):
            data = packed.to_ndarray().reshape(-1, channels)       # [n, channels] interleaved
            pieces.append(data.mean(axis=1, dtype=np.float32))
            total += data.shape[0]
        if max_samples is not None and total > max_samples:
            raise LimitExceeded(f"{label}: audio is longer than max_audio_seconds={limits.max_audio_seconds:g}",
                                param="max_audio_seconds")
    mono = np.concatenate(pieces) if pieces else np.zeros(0, np.float32)
    if not np.isfinite(mono).all():
        raise MediaError(f"{label}: the audio decodes to NaN or infinite samples", param=label)
    return mono


# ---------------------------------------------------------------------------------------------- images

def load_image(value: object, label: str, limits: InputLimits) -> np.ndarray:
    """Any supported image source → RGB uint8 [H, W, 3]; the size is checked before pixels are decoded."""
    if isinstance(value, Image.Image):
        check_image_size(value.width, value.height, label, limits)
        return to_rgb(value)
    if isinstance(value, np.ndarray) or _is_tensor(value):
        return array_to_rgb(value, label, limits)
    if is_encoded_source(value):
        return decode_image(resolve_source(value, label, limits), limits)
    raise OmniInputError(f"{label}: image must be a path, bytes, data: URL, PIL image or array, "
                         f"got {type(value).__name__}", param=label)


def check_image_size(width: int, height: int, label: str, limits: InputLimits) -> None:
    """Zero, absurd (bomb) or too elongated sizes are refused before any pixel is decoded."""
    if width <= 0 or height <= 0:
        raise MediaError(f"{label}: image has zero size ({width}x{height})", param=label)
    limits.check("max_image_pixels", width * height, limits.max_image_pixels, f"{label} pixel count", label)
    ratio = max(width, height) / min(width, height)
    if ratio > limits.max_aspect_ratio:
        raise MediaError(f"{label}: aspect ratio {ratio:.1f} is over {limits.max_aspect_ratio:g} "
                         f"({width}x{height})", param=label)


def decode_image(blob: MediaBlob, limits: InputLimits) -> np.ndarray:
    handle = blob.open()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # we check the size ourselves
            image = Image.open(handle)
            if image.format not in IMAGE_FORMATS:
                raise MediaError(f"{blob.label}: image format {image.format} is not supported", param=blob.label)
            check_image_size(image.width, image.height, blob.label, limits)
            image.seek(0)  # first frame of animated GIF/WebP
            image.load()
            return to_rgb(image)
    except OmniInputError:
        raise
    except Image.DecompressionBombError:
        # Pillow refuses more than 2×Image.MAX_IMAGE_PIXELS on its own, before our check can run
        raise LimitExceeded(f"{blob.label}: image size is over the limit max_image_pixels (decompression bomb)",
                            param="max_image_pixels") from None
    except Exception as e:  # noqa: BLE001 - Pillow raises OSError, ValueError, SyntaxError... on bad bytes
        raise MediaError(f"{blob.label}: unreadable or truncated image ({_reason(e)})", param=blob.label) from None
    finally:
        handle.close()


def to_rgb(image: Image.Image) -> np.ndarray:
    """RGB uint8 array; transparent images are composited onto white as the reference does (spec §4.2)."""
    has_alpha = "A" in image.getbands() or image.info.get("transparency") is not None
    if has_alpha:
        rgba = image.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        image = Image.alpha_composite(white, rgba)
    return np.asarray(image.convert("RGB"), dtype=np.uint8)


def array_to_rgb(value: object, label: str, limits: InputLimits) -> np.ndarray:
    """[H, W], [H, W, 1|3|4] uint8 arrays (or floats in [0, 1]) → RGB uint8 [H, W, 3]."""
    if _is_tensor(value):
        value = value.detach().cpu().numpy()  # type: ignore[attr-defined]
    a = np.asarray(value)
    if a.ndim == 2:
        a = a[:, :, None]
    if a.ndim != 3 or a.shape[2] not in (1, 3, 4):
        raise MediaError(f"{label}: image array must be [H, W] or [H, W, 1|3|4], got shape {a.shape}", param=label)
    check_image_size(a.shape[1], a.shape[0], label, limits)
    if a.dtype.kind == "f":
        if not np.isfinite(a).all() or a.min() < 0 or a.max() > 1:
            raise MediaError(f"{label}: float image arrays must hold values in [0, 1]", param=label)
        a = (a * 255).astype(np.uint8)  # truncation, as the reference's to_pil_image
    elif a.dtype != np.uint8:
        raise MediaError(f"{label}: image arrays must be uint8 or float, got {a.dtype}", param=label)
    if a.shape[2] == 1:
        return np.ascontiguousarray(np.repeat(a, 3, axis=2))
    if a.shape[2] == 4:
        return to_rgb(Image.fromarray(a, mode="RGBA"))
    return np.ascontiguousarray(a)
