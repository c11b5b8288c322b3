"""Videos of the shapes world: 8 frames at 2 fps, one or two shapes, exactly one moving.

The moving shape travels in a straight line (left, right, up or down) at a constant number of pixels
per frame and stays fully inside the picture; the whole path it sweeps is kept clear of the still
shape, so nothing ever overlaps or hides.
"""
from __future__ import annotations

import io
from dataclasses import dataclass
from fractions import Fraction

import av
import numpy as np

from omnistream.errors import ConfigError
from omnistream.synth.shapes import (
    IMAGE_SIZE, MIN_GAP, SIZE_RANGE, Shape, boxes_apart, draw_shapes, sample_background, sample_shape,
)

NUM_FRAMES = 8
FPS = 2.0
DIRECTIONS = ("left", "right", "up", "down")
DIRECTION_STEP = {"left": (-1, 0), "right": (1, 0), "up": (0, -1), "down": (0, 1)}
STEP_RANGE = (8, 18)   # pixels per frame: 56–126 px over the clip, clearly visible motion
_MAX_TRIES = 500


@dataclass(frozen=True)
class VideoScene:
    """A clip: shapes at frame 0, which one moves, where to, and how fast."""

    shapes: tuple[Shape, ...]
    background: tuple[int, int, int]
    moving_index: int
    direction: str
    step: int  # pixels per frame
    num_frames: int = NUM_FRAMES
    fps: float = FPS
    width: int = IMAGE_SIZE
    height: int = IMAGE_SIZE

    @property
    def moving(self) -> Shape:
        return self.shapes[self.moving_index]

    def shapes_at(self, frame: int) -> tuple[Shape, ...]:
        dx, dy = DIRECTION_STEP[self.direction]
        shift = frame * self.step
        return tuple(s.moved(dx * shift, dy * shift) if i == self.moving_index else s
                     for i, s in enumerate(self.shapes))

    def swept_bbox(self) -> tuple[int, int, int, int]:
        """Bounding box of every position the moving shape takes."""
        first = self.moving.bbox()
        last = self.shapes_at(self.num_frames - 1)[self.moving_index].bbox()
        return (min(first[0], last[0]), min(first[1], last[1]), max(first[2], last[2]), max(first[3], last[3]))


def _start_for_motion(rng: np.random.Generator, direction: str, step: int,
                      width: int, height: int, num_frames: int) -> Shape:
    """A shape whose whole path in `direction` stays inside the picture."""
    travel = step * (num_frames - 1)
    horizontal = direction in ("left", "right")
    max_size = min(SIZE_RANGE[1], (width if horizontal else height) - travel)
    shape = sample_shape(rng, width, height, max_size=max_size)
    span = (width if horizontal else height) - shape.size - travel  # free room along the motion
    offset = int(rng.integers(0, span + 1))
    if direction in ("left", "up"):
        offset += travel
    return Shape(shape.kind, shape.color, offset if horizontal else shape.x,
                 shape.y if horizontal else offset, shape.size)


def sample_video_scene(rng: np.random.Generator, num_shapes: int | None = None,
                       width: int = IMAGE_SIZE, height: int = IMAGE_SIZE,
                       num_frames: int = NUM_FRAMES, fps: float = FPS) -> VideoScene:
    """A random clip with 1 or 2 shapes (default uniform); the two never share colour and kind."""
    if num_shapes is None:
        num_shapes = int(rng.integers(1, 3))
    if num_shapes not in (1, 2):
        raise ConfigError(f"a video holds 1 or 2 shapes, got {num_shapes}", param="num_shapes")
    background = sample_background(rng)
    direction = DIRECTIONS[int(rng.integers(len(DIRECTIONS)))]
    step = int(rng.integers(STEP_RANGE[0], STEP_RANGE[1] + 1))
    moving = _start_for_motion(rng, direction, step, width, height, num_frames)
    scene = VideoScene((moving,), background, 0, direction, step, num_frames, fps, width, height)
    if num_shapes == 1:
        return scene
    swept = scene.swept_bbox()
    for _ in range(_MAX_TRIES):
        still = sample_shape(rng, width, height)
        if (still.kind, still.color) != (moving.kind, moving.color) and boxes_apart(swept, still.bbox(), MIN_GAP):
            order = int(rng.integers(2))  # the mover is first or second in the spec, at random
            shapes = (moving, still) if order == 0 else (still, moving)
            return VideoScene(shapes, background, order, direction, step, num_frames, fps, width, height)
    raise ConfigError("could not place a still shape clear of the moving one", param="num_shapes")


def render_video(scene: VideoScene) -> np.ndarray:
    """All frames of the clip. # [T, H, W, 3] uint8"""
    frames = [draw_shapes(scene.shapes_at(t), scene.background, scene.width, scene.height)
              for t in range(scene.num_frames)]
    return np.stack(frames)


def encode_mp4(frames: np.ndarray, fps: float = FPS) -> bytes:
    """H.264 (yuv420p) mp4 bytes of `frames` [T, H, W, 3] uint8, for demos and media tests."""
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ConfigError(f"frames must be [T, H, W, 3] uint8, got {frames.shape} {frames.dtype}", param="frames")
    buffer = io.BytesIO()
    with av.open(buffer, mode="w", format="mp4") as container:
        codec = "libx264" if "libx264" in av.codecs_available else "mpeg4"
        stream = container.add_stream(codec, rate=Fraction(fps).limit_denominator(1000))
        stream.width, stream.height = frames.shape[2], frames.shape[1]
        stream.pix_fmt = "yuv420p"
        for frame in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return buffer.getvalue()
