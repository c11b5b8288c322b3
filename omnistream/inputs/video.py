"""Video: frame sampling plan, frame decoding (PyAV) and the audio track for `use_audio_in_video`.

Sampling follows qwen-omni-utils (spec §4.3): at `fps` (default 2) sample
n = clamp(duration·fps, 4, min(max_frames, total)) frames, rounded down to a multiple of the temporal
patch (2), at indices round(linspace(0, total−1, n)); the real sampling rate n/total·video_fps is kept,
because `video_second_per_grid` must come from it (spec §7.2-6). Frames are resized as they are decoded,
so memory holds only model-sized frames; the size and token budget are checked before decoding.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from omnistream.errors import MediaError, OmniInputError
from omnistream.inputs.limits import InputLimits
from omnistream.inputs.media import _reason, check_image_size, load_image, open_container
from omnistream.inputs.sources import MediaBlob

MIN_FRAMES = 4  # qwen-omni-utils FPS_MIN_FRAMES


@dataclass(frozen=True)
class VideoInfo:
    """What the container header says about the first video stream."""
    total_frames: int
    fps: float
    width: int
    height: int
    has_audio: bool

    @property
    def duration(self) -> float:
        return self.total_frames / self.fps


@dataclass(frozen=True)
class VideoFrames:
    """Sampled frames (already resized), the rate they were sampled at, and the optional audio track."""
    frames: np.ndarray               # [T, H, W, 3] uint8
    sample_fps: float
    audio: np.ndarray | None = None  # 16 kHz mono float32


def probe_video(blob: MediaBlob, limits: InputLimits) -> VideoInfo:
    """Read the header (and count packets when the header has no frame count)."""
    container = open_container(blob)
    try:
        stream = next((s for s in container.streams if s.type == "video"), None)
        if stream is None:
            raise MediaError(f"{blob.label}: no video track found", param=blob.label)
        width, height = stream.codec_context.width, stream.codec_context.height
        check_image_size(width, height, f"{blob.label} frame", limits)
        rate = stream.average_rate or stream.guessed_rate or stream.base_rate
        fps = float(rate) if rate else 0.0
        if not math.isfinite(fps) or fps <= 0 or fps > 1000:
            raise MediaError(f"{blob.label}: video has no usable frame rate ({fps})", param=blob.label)
        total = int(stream.frames or 0)
        if total <= 0:  # some containers (webm, raw streams) do not store a frame count
            total = sum(1 for p in container.demux(stream) if p.size)
        has_audio = any(s.type == "audio" for s in container.streams)
    except OmniInputError:
        raise
    except Exception as e:  # noqa: BLE001
        raise MediaError(f"{blob.label}: cannot read video header ({_reason(e)})", param=blob.label) from None
    finally:
        container.close()
    if total <= 0:
        raise MediaError(f"{blob.label}: the video has no frames", param=blob.label)
    info = VideoInfo(total_frames=total, fps=fps, width=width, height=height, has_audio=has_audio)
    limits.check("max_video_seconds", info.duration, limits.max_video_seconds, f"{blob.label} duration", blob.label)
    return info


def plan_frames(info: VideoInfo, fps: float, max_frames: int, frame_factor: int) -> tuple[list[int], float]:
    """Frame indices to sample and the real sampling rate (qwen-omni-utils `smart_nframes`)."""
    upper = min(max_frames, info.total_frames)
    wanted = info.duration * fps
    n = min(max(wanted, MIN_FRAMES), upper)
    n = max(frame_factor, int(n // frame_factor) * frame_factor)
    if n > info.total_frames:  # fewer frames than one temporal patch: take them all, padded later
        n = info.total_frames
    indices = np.round(np.linspace(0, info.total_frames - 1, n)).astype(int).tolist()
    return indices, n / info.total_frames * info.fps


def decode_frames(blob: MediaBlob, indices: list[int],
                  resize: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
    """Decode the frames at `indices` (in presentation order), resizing each as it arrives."""
    wanted: dict[int, int] = {}
    for i in indices:
        wanted[i] = wanted.get(i, 0) + 1  # an index may repeat when frames are scarce
    last = max(indices)
    frames: list[np.ndarray] = []
    container = open_container(blob)
    try:
        stream = next(s for s in container.streams if s.type == "video")
        stream.thread_type = "AUTO"
        for index, frame in enumerate(container.decode(stream)):
            if index in wanted:
                image = resize(frame.to_ndarray(format="rgb24"))
                frames.extend([image] * wanted[index])
            if index >= last:
                break
    except OmniInputError:
        raise
    except Exception as e:  # noqa: BLE001
        raise MediaError(f"{blob.label}: cannot decode video frames ({_reason(e)})", param=blob.label) from None
    finally:
        container.close()
    if not frames:
        raise MediaError(f"{blob.label}: the video has no decodable frames", param=blob.label)
    while len(frames) < len(indices):  # header over-counted frames: repeat the last one, as padding does
        frames.append(frames[-1])
    return np.stack(frames)


def frames_from_list(value: Any, label: str, limits: InputLimits) -> list[np.ndarray]:
    """A list of frames (PIL images or arrays) or a [T, H, W, 3] array → list of RGB uint8 frames."""
    if isinstance(value, np.ndarray) and value.ndim == 4:
        value = list(value)
    if not isinstance(value, (list, tuple)) or not value:
        raise MediaError(f"{label}: a frame list must hold at least one frame", param=label)
    limits.check("max_video_frames", len(value), limits.max_video_frames, f"{label} frame count", label)
    frames = [load_image(f, f"{label} frame {i}", limits) for i, f in enumerate(value)]
    if len({f.shape for f in frames}) != 1:
        raise MediaError(f"{label}: all frames must have the same size", param=label)
    return frames

