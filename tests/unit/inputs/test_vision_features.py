"""smart_resize, normalisation and the patch layout against direct formulas (spec §2.3, §4.2)."""
from __future__ import annotations

import math

import numpy as np
import pytest

from omnistream.errors import MediaError
from omnistream.inputs.settings import PreprocessorSettings
from omnistream.inputs.vision_features import grid_tokens, image_patches, patchify, smart_resize, video_patches

SETTINGS = PreprocessorSettings()
BOUNDS = dict(factor=32, min_pixels=3136, max_pixels=12_845_056)


@pytest.mark.parametrize("size,expected", [
    ((64, 64), (64, 64)),            # already a multiple of 32
    ((70, 100), (64, 96)),           # rounded to the nearest multiple
    ((1, 1), (64, 64)),              # below min_pixels → β = √(3136/1) = 56 → ⌈56/32⌉·32
    ((300, 37), (288, 32)),
])
def test_smart_resize_table(size, expected):
    assert smart_resize(*size, **BOUNDS) == expected


def test_smart_resize_downscales_within_max_pixels():
    h, w = smart_resize(3500, 4000, **BOUNDS)
    beta = math.sqrt(3500 * 4000 / 12_845_056)
    assert (h, w) == (math.floor(3500 / beta / 32) * 32, math.floor(4000 / beta / 32) * 32)
    assert h * w <= 12_845_056 and h % 32 == 0 and w % 32 == 0


def test_smart_resize_refuses_extreme_aspect_ratio_and_zero_size():
    with pytest.raises(MediaError, match="aspect ratio"):
        smart_resize(10, 2010, **BOUNDS)
    with pytest.raises(MediaError, match="zero"):
        smart_resize(0, 10, **BOUNDS)


def coded_frames(t: int, h: int, w: int) -> np.ndarray:
    """Frames whose pixel values encode (t, y, x, channel), so every value's origin is checkable."""
    tt, yy, xx, cc = np.meshgrid(np.arange(t), np.arange(h), np.arange(w), np.arange(3), indexing="ij")
    return ((tt * 7 + yy * 3 + xx * 5 + cc * 11) % 256).astype(np.uint8)


def test_patch_layout_matches_merge_block_order():
    frames = coded_frames(4, 64, 96)                    # grid (2, 4, 6), merge blocks 2 × 3
    rows, grid = video_patches(frames, SETTINGS)
    assert grid == (2, 4, 6) and rows.shape == (2 * 4 * 6, 3 * 2 * 16 * 16)
    norm = (frames.astype(np.float64) / 255 - 0.5) / 0.5
    index = 0
    for t in range(2):
        for block_row in range(2):
            for block_col in range(3):
                for r in range(2):
                    for c in range(2):
                        y, x = (block_row * 2 + r) * 16, (block_col * 2 + c) * 16
                        patch = norm[2 * t:2 * t + 2, y:y + 16, x:x + 16, :]            # [tp, py, px, ch]
                        expected = patch.transpose(3, 0, 1, 2).reshape(-1)             # (ch, tp, py, px)
                        np.testing.assert_allclose(rows[index], expected, atol=1e-6)
                        index += 1


def test_single_image_is_duplicated_in_time():
    image = coded_frames(1, 64, 64)[0]
    rows, grid = image_patches(image, SETTINGS)
    assert grid == (1, 4, 4)
    per_time = rows.reshape(16, 3, 2, 256)
    np.testing.assert_array_equal(per_time[:, :, 0], per_time[:, :, 1])
    assert rows.min() >= -1.0 and rows.max() <= 1.0


def test_odd_frame_count_repeats_last_frame():
    frames = coded_frames(3, 32, 32)
    rows, grid = patchify(frames, SETTINGS)
    assert grid == (2, 2, 2)
    last = rows[4:].reshape(4, 3, 2, 256)
    np.testing.assert_array_equal(last[:, :, 0], last[:, :, 1])


def test_grid_tokens():
    assert grid_tokens((1, 4, 6), 2) == 6
    assert grid_tokens((3, 4, 4), 2) == 12
