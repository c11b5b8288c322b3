"""Media parts → decoded media with known token cost, then → pixel rows (two stages).

Stage one (`load_part`) decodes audio and images and reads video headers, so every part's grid and
token count is known; the processor checks the token budget; stage two (`pixels`) decodes video
frames and builds pixel rows. Nothing large is built for a request that is over its limits.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np

from omnistream.errors import MediaError, OmniInputError
from omnistream.inputs import media, video
from omnistream.inputs.audio_features import audio_token_count
from omnistream.inputs.limits import InputLimits
from omnistream.inputs.prompt import MediaPart
from omnistream.inputs.settings import PreprocessorSettings
from omnistream.inputs.sources import is_encoded_source, resolve_source
from omnistream.inputs.vision_features import (
    grid_tokens,
    image_patches,
    resize_rgb,
    smart_resize,
    video_patches,
)


@dataclass
class LoadedMedia:
    """One media part after stage one."""
    part: MediaPart
    waveform: np.ndarray | None = None          # audio parts, and a video's track with audio-in-video
    image: np.ndarray | None = None             # image parts: RGB uint8 [H, W, 3]
    grid: tuple[int, int, int] | None = None    # image / video grid_thw
    seconds_per_grid: float = 0.0               # video: temporal_patch_size / real sampling fps
    decode_frames: Callable[[], np.ndarray] | None = None   # video: stage-two frame decoder

    @property
    def kind(self) -> str:
        return self.part.kind

    def estimated_tokens(self, settings: PreprocessorSettings) -> int:
        """Token cost before features exist (audio: ⌈n/hop⌉ frames, exact for a lone clip)."""
        tokens = grid_tokens(self.grid, settings.merge_size) if self.grid is not None else 0
        if self.waveform is not None:
            frames = math.ceil(len(self.waveform) / settings.hop_length)
            tokens += int(audio_token_count(frames, settings.n_window))
        return tokens


def load_part(part: MediaPart, settings: PreprocessorSettings, limits: InputLimits, use_audio_in_video: bool,
              default_fps: float) -> LoadedMedia:
    if part.kind == "audio":
        wave = media.load_audio(part.source, part.label, limits, settings.sampling_rate)
        _check_audio_length(wave, part.label, settings)
        return LoadedMedia(part, waveform=wave)
    if part.kind == "image":
        image = media.load_image(part.source, part.label, limits)
        low, high = _pixel_bounds(part, settings, _image_default(part, settings))
        h, w = smart_resize(image.shape[0], image.shape[1], settings.resize_factor, low, high, part.label,
                            limits.max_aspect_ratio)
        return LoadedMedia(part, image=image, grid=(1, h // settings.patch_size, w // settings.patch_size))
    return _load_video(part, settings, limits, use_audio_in_video, default_fps)


def pixels(item: LoadedMedia, settings: PreprocessorSettings) -> np.ndarray:
    """Stage two: pixel rows [grid_t·grid_h·grid_w, C·tp·p·p] float32 for an image or video part."""
    if item.kind == "image":
        size = (item.grid[1] * settings.patch_size, item.grid[2] * settings.patch_size)
        rows, grid = image_patches(item.image, settings, size)
    else:
        assert item.decode_frames is not None
        rows, grid = video_patches(item.decode_frames(), settings)
    if grid != item.grid:
        raise MediaError(f"{item.part.label}: decoded frames do not match the header ({grid} vs {item.grid})",
                         param=item.part.label)
    return rows


def _check_audio_length(wave: np.ndarray, label: str, settings: PreprocessorSettings) -> None:
    if len(wave) < settings.n_fft:
        raise MediaError(f"{label}: audio is {len(wave)} samples long, shorter than one {settings.n_fft}-sample "
                         f"analysis window ({1000 * settings.n_fft / settings.sampling_rate:g} ms)", param=label)


LOW_DETAIL_PIXELS = 512 * 512   # OpenAI's low-detail image is 512x512


def _image_default(part: MediaPart, settings: PreprocessorSettings) -> tuple[int, int]:
    detail = part.options.get("detail", "auto")
    if detail not in ("auto", "high", "low"):
        raise OmniInputError(f"{part.label}: detail must be 'auto', 'high' or 'low', got {detail!r}", param="detail")
    if detail == "low":
        return min(settings.min_pixels, LOW_DETAIL_PIXELS), min(settings.max_pixels, LOW_DETAIL_PIXELS)
    return settings.min_pixels, settings.max_pixels


def _pixel_bounds(part: MediaPart, settings: PreprocessorSettings, default: tuple[int, int]) -> tuple[int, int]:
    """(min_pixels, max_pixels) for one image or video frame: the part's own, else the preprocessor's.

    A part may lower its budget or raise it up to the preprocessor's maximum, never past it: the maximum is what
    the server was sized for, and min_pixels would otherwise let one request upscale a frame without bound."""
    bounds = []
    for name, fallback in zip(("min_pixels", "max_pixels"), default):
        value = part.options.get(name, fallback)
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise OmniInputError(f"{part.label}: {name} must be a positive integer, got {value!r}", param=name)
        bounds.append(value)
    low, high = bounds
    smallest = settings.resize_factor ** 2   # one merged patch: the fewest pixels a part can become
    if high < smallest:
        raise OmniInputError(f"{part.label}: max_pixels {high} is below one {settings.resize_factor}x"
                             f"{settings.resize_factor} merged patch ({smallest} pixels)", param="max_pixels")
    for name, value in (("max_pixels", high), ("min_pixels", low)):
        if value > default[1]:
            raise OmniInputError(f"{part.label}: {name} {value} is above this model's {part.kind} maximum of "
                                 f"{default[1]} pixels", param=name)
    if low > high:
        raise OmniInputError(f"{part.label}: min_pixels {low} is above max_pixels {high}", param="min_pixels")
    return low, high


def _video_fps(part: MediaPart, default_fps: float) -> float:
    fps = part.options.get("fps", default_fps)
    if isinstance(fps, bool) or not isinstance(fps, (int, float)) or not math.isfinite(fps) or not 0 < fps <= 240:
        raise OmniInputError(f"{part.label}: fps must be a number in (0, 240], got {fps!r}", param="fps")
    return float(fps)


def _load_video(part: MediaPart, settings: PreprocessorSettings, limits: InputLimits, use_audio_in_video: bool,
                default_fps: float) -> LoadedMedia:
    fps = _video_fps(part, default_fps)
    bounds = _pixel_bounds(part, settings, (settings.video_min_pixels, settings.video_max_pixels))
    tp, p = settings.temporal_patch_size, settings.patch_size
    if is_encoded_source(part.source):
        blob = resolve_source(part.source, part.label, limits)
        info = video.probe_video(blob, limits)
        indices, sample_fps = video.plan_frames(info, fps, limits.max_video_frames, tp)
        h, w = smart_resize(info.height, info.width, settings.resize_factor, *bounds, part.label)
        wave = None
        if use_audio_in_video and info.has_audio:
            wave = media.decode_audio(blob, limits, settings.sampling_rate, required=False)
        decode = lambda: video.decode_frames(blob, indices, lambda f: resize_rgb(f, h, w))  # noqa: E731
        n_frames = len(indices)
    else:
        frames = video.frames_from_list(part.source, part.label, limits)
        h, w = smart_resize(frames[0].shape[0], frames[0].shape[1], settings.resize_factor, *bounds, part.label)
        sample_fps, n_frames = fps, len(frames)
        wave = None
        if use_audio_in_video and "audio" in part.options:
            wave = media.load_audio(part.options["audio"], f"{part.label} audio", limits, settings.sampling_rate)
        decode = lambda: np.stack([resize_rgb(f, h, w) for f in frames])  # noqa: E731
    if wave is not None:
        _check_audio_length(wave, part.label, settings)
    grid = (-(-n_frames // tp), h // p, w // p)
    return LoadedMedia(part, waveform=wave, grid=grid, seconds_per_grid=tp / sample_fps, decode_frames=decode)

