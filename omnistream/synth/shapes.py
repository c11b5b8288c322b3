"""Still images of the shapes world: scene specs, seeded sampling and drawing.

A scene is a light plain background with 1–4 non-overlapping shapes (circle, square, triangle in
red, green, blue, yellow or black, 28–64 px). The spec is kept next to every image so answers can
be derived (and checked) from it rather than from pixels.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

from omnistream.errors import ConfigError

IMAGE_SIZE = 224
SHAPE_KINDS = ("circle", "square", "triangle")
COLORS = ("red", "green", "blue", "yellow", "black")
COLOR_RGB = {
    "red": (220, 30, 30),
    "green": (30, 160, 60),
    "blue": (30, 70, 220),
    "yellow": (240, 200, 0),
    "black": (20, 20, 20),
}
SIZE_RANGE = (28, 64)        # side of the shape's bounding box, inclusive
MAX_SHAPES = 4
BACKGROUND_RANGE = (215, 255)  # every channel light, so black and the colours stand out
MIN_GAP = 4                  # free pixels between bounding boxes: shapes never touch
MIN_CENTER_DX = 12           # centres this far apart in x make "left to right" unambiguous
_MAX_TRIES = 200


@dataclass(frozen=True)
class Shape:
    """One shape: its kind, colour and axis-aligned bounding box (top-left corner and side)."""

    kind: str
    color: str
    x: int
    y: int
    size: int

    @property
    def center_x(self) -> float:
        return self.x + self.size / 2

    @property
    def center_y(self) -> float:
        return self.y + self.size / 2

    def bbox(self) -> tuple[int, int, int, int]:
        """(x0, y0, x1, y1) with x1, y1 exclusive."""
        return (self.x, self.y, self.x + self.size, self.y + self.size)

    def moved(self, dx: int, dy: int) -> Shape:
        return Shape(self.kind, self.color, self.x + dx, self.y + dy, self.size)


@dataclass(frozen=True)
class Scene:
    """A still image: background colour and shapes, in drawing order."""

    shapes: tuple[Shape, ...]
    background: tuple[int, int, int]
    width: int = IMAGE_SIZE
    height: int = IMAGE_SIZE

    def left_to_right(self) -> tuple[Shape, ...]:
        return tuple(sorted(self.shapes, key=lambda s: s.center_x))


def boxes_apart(a: tuple[int, int, int, int], b: tuple[int, int, int, int], gap: int = MIN_GAP) -> bool:
    """True when the two boxes are at least `gap` pixels apart on some axis."""
    return (a[2] + gap <= b[0] or b[2] + gap <= a[0] or a[3] + gap <= b[1] or b[3] + gap <= a[1])


def sample_background(rng: np.random.Generator) -> tuple[int, int, int]:
    low, high = BACKGROUND_RANGE
    return tuple(int(v) for v in rng.integers(low, high + 1, size=3))  # type: ignore[return-value]


def sample_shape(rng: np.random.Generator, width: int, height: int, max_size: int = SIZE_RANGE[1]) -> Shape:
    """A shape of random kind, colour and size placed anywhere fully inside the picture."""
    size = int(rng.integers(SIZE_RANGE[0], max_size + 1))
    kind = SHAPE_KINDS[int(rng.integers(len(SHAPE_KINDS)))]
    color = COLORS[int(rng.integers(len(COLORS)))]
    x = int(rng.integers(0, width - size + 1))
    y = int(rng.integers(0, height - size + 1))
    return Shape(kind, color, x, y, size)


def fits(shape: Shape, placed: list[Shape]) -> bool:
    """Non-overlapping with everything placed and clear of it in x (for left-to-right order)."""
    return all(boxes_apart(shape.bbox(), other.bbox()) and abs(shape.center_x - other.center_x) >= MIN_CENTER_DX
               for other in placed)


def sample_scene(rng: np.random.Generator, num_shapes: int | None = None,
                 width: int = IMAGE_SIZE, height: int = IMAGE_SIZE) -> Scene:
    """A random still scene with `num_shapes` (default: uniform 1–4) shapes, by rejection sampling."""
    if num_shapes is None:
        num_shapes = int(rng.integers(1, MAX_SHAPES + 1))
    if not 1 <= num_shapes <= MAX_SHAPES:
        raise ConfigError(f"num_shapes must be 1..{MAX_SHAPES}, got {num_shapes}", param="num_shapes")
    background = sample_background(rng)
    for _ in range(_MAX_TRIES):
        placed: list[Shape] = []
        for _ in range(_MAX_TRIES):
            candidate = sample_shape(rng, width, height)
            if fits(candidate, placed):
                placed.append(candidate)
                if len(placed) == num_shapes:
                    return Scene(tuple(placed), background, width, height)
    raise ConfigError(f"could not place {num_shapes} shapes in {width}x{height}", param="num_shapes")


def draw_shape(draw: ImageDraw.ImageDraw, shape: Shape) -> None:
    """Circle inscribed in the box; square filling it; triangle with its base on the box's bottom."""
    x0, y0, x1, y1 = shape.bbox()
    fill = COLOR_RGB[shape.color]
    if shape.kind == "circle":
        draw.ellipse((x0, y0, x1 - 1, y1 - 1), fill=fill)
    elif shape.kind == "square":
        draw.rectangle((x0, y0, x1 - 1, y1 - 1), fill=fill)
    elif shape.kind == "triangle":
        draw.polygon([(x0, y1 - 1), (x1 - 1, y1 - 1), ((x0 + x1 - 1) / 2, y0)], fill=fill)
    else:
        raise ConfigError(f"unknown shape kind {shape.kind!r}", param="kind")


def draw_shapes(shapes: tuple[Shape, ...], background: tuple[int, int, int],
                width: int = IMAGE_SIZE, height: int = IMAGE_SIZE) -> np.ndarray:
    """Pixels of shapes on a plain background. # [H, W, 3] uint8"""
    image = Image.new("RGB", (width, height), background)
    draw = ImageDraw.Draw(image)
    for shape in shapes:
        draw_shape(draw, shape)
    return np.asarray(image, dtype=np.uint8).copy()


def draw_scene(scene: Scene) -> np.ndarray:
    """The scene's image. # [H, W, 3] uint8"""
    return draw_shapes(scene.shapes, scene.background, scene.width, scene.height)
