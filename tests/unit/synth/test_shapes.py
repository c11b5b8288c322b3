"""Still scenes: reproducible, inside the picture, non-overlapping, drawn as specified."""
from __future__ import annotations

import itertools

import numpy as np
import pytest

from omnistream.errors import ConfigError
from omnistream.synth.shapes import (
    BACKGROUND_RANGE, COLOR_RGB, COLORS, IMAGE_SIZE, MIN_CENTER_DX, SHAPE_KINDS, SIZE_RANGE, draw_scene, sample_scene,
)


def _scenes(seed: int, count: int):
    rng = np.random.default_rng(seed)
    return [sample_scene(rng) for _ in range(count)]


def test_same_seed_same_scene_and_bytes():
    a, b = _scenes(11, 5), _scenes(11, 5)
    assert a == b
    assert all(draw_scene(x).tobytes() == draw_scene(y).tobytes() for x, y in zip(a, b))
    assert _scenes(12, 5) != a


def test_scenes_respect_the_world_rules():
    scenes = _scenes(0, 300)
    counts, kinds, colors = set(), set(), set()
    for scene in scenes:
        counts.add(len(scene.shapes))
        assert all(lo >= BACKGROUND_RANGE[0] for lo in scene.background)
        for s in scene.shapes:
            kinds.add(s.kind)
            colors.add(s.color)
            assert SIZE_RANGE[0] <= s.size <= SIZE_RANGE[1]
            assert 0 <= s.x and s.x + s.size <= IMAGE_SIZE and 0 <= s.y and s.y + s.size <= IMAGE_SIZE
        for a, b in itertools.combinations(scene.shapes, 2):
            ax0, ay0, ax1, ay1 = a.bbox()
            bx0, by0, bx1, by1 = b.bbox()
            overlap_x = min(ax1, bx1) - max(ax0, bx0)
            overlap_y = min(ay1, by1) - max(ay0, by0)
            assert overlap_x <= 0 or overlap_y <= 0, (a, b)
            assert abs(a.center_x - b.center_x) >= MIN_CENTER_DX
    assert counts == {1, 2, 3, 4}
    assert kinds == set(SHAPE_KINDS) and colors == set(COLORS)


def test_drawn_pixels_match_the_spec():
    for scene in _scenes(3, 40):
        image = draw_scene(scene)
        assert image.shape == (IMAGE_SIZE, IMAGE_SIZE, 3) and image.dtype == np.uint8
        for s in scene.shapes:
            # a point well inside every kind: horizontally centred, 70% down the box
            px, py = int(s.center_x), int(s.y + 0.7 * s.size)
            assert tuple(image[py, px]) == COLOR_RGB[s.color], s
        # pixels outside all boxes are background
        covered = np.zeros(image.shape[:2], bool)
        for s in scene.shapes:
            x0, y0, x1, y1 = s.bbox()
            covered[y0:y1, x0:x1] = True
        assert (image[~covered] == np.array(scene.background, np.uint8)).all()


def test_shape_kinds_are_drawn_differently():
    """Fill fraction of the box: square 1, circle ~pi/4, triangle ~1/2."""
    fractions = {}
    for scene in _scenes(4, 60):
        if len(scene.shapes) != 1:
            continue
        s = scene.shapes[0]
        x0, y0, x1, y1 = s.bbox()
        box = draw_scene(scene)[y0:y1, x0:x1]
        fractions[s.kind] = float((box == np.array(COLOR_RGB[s.color], np.uint8)).all(-1).mean())
    assert fractions["square"] == pytest.approx(1.0)
    assert fractions["circle"] == pytest.approx(np.pi / 4, abs=0.06)
    assert fractions["triangle"] == pytest.approx(0.5, abs=0.08)


def test_bad_shape_count_is_a_config_error():
    with pytest.raises(ConfigError) as info:
        sample_scene(np.random.default_rng(0), num_shapes=5)
    assert info.value.param == "num_shapes"
