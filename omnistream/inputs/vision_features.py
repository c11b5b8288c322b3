"""Images and video frames → `pixel_values` rows and `grid_thw` (spec §2.3, §4.2-4.3).

Resizing uses Pillow's bicubic filter on uint8 RGB, exactly as the reference's PIL image backend
(`Qwen2VLImageProcessorPil`); frames of a video go through the same resize. (The reference's *video*
processor resizes with torchvision, whose bicubic differs from Pillow's by one 8-bit level on a few
pixels — spec §10; we use Pillow for both, so images match the reference exactly.)

Patch layout (one row per 16×16 patch, 4 consecutive rows = one 2×2 merge block):
for t in grid_t, for block row, block col, for r in 0..1, c in 0..1 → vector (channel, time, 16, 16).
"""
from __future__ import annotations

import math

import numpy as np
from PIL import Image

from omnistream.errors import MediaError
from omnistream.inputs.settings import PreprocessorSettings


def smart_resize(height: int, width: int, factor: int, min_pixels: int, max_pixels: int,
                 label: str = "image", max_aspect_ratio: float = 200.0) -> tuple[int, int]:
    """Target (height, width): multiples of `factor`, area within [min_pixels, max_pixels] (spec §4.2)."""
    if height <= 0 or width <= 0:
        raise MediaError(f"{label}: zero-sized image ({width}x{height})", param=label)
    if max(height, width) / min(height, width) > max_aspect_ratio:
        raise MediaError(f"{label}: aspect ratio {max(height, width) / min(height, width):.1f} is over "
                         f"{max_aspect_ratio:g}", param=label)
    h_bar = round(height / factor) * factor
    w_bar = round(width / factor) * factor
    if h_bar * w_bar > max_pixels:
        beta = math.sqrt((height * width) / max_pixels)
        h_bar = max(factor, math.floor(height / beta / factor) * factor)
        w_bar = max(factor, math.floor(width / beta / factor) * factor)
    elif h_bar * w_bar < min_pixels:
        beta = math.sqrt(min_pixels / (height * width))
        h_bar = math.ceil(height * beta / factor) * factor
        w_bar = math.ceil(width * beta / factor) * factor
    return h_bar, w_bar


def resize_rgb(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """Bicubic resize of an RGB uint8 [H, W, 3] array with Pillow (the reference PIL backend's filter)."""
    if image.shape[0] == height and image.shape[1] == width:
        return image
    resized = Image.fromarray(image, mode="RGB").resize((width, height), resample=Image.Resampling.BICUBIC)
    return np.asarray(resized, dtype=np.uint8)


def normalization_table(settings: PreprocessorSettings) -> np.ndarray:
    """float32 [3, 256]: the normalised value of every 8-bit level per channel.

    Same operations and precision as the reference (×rescale_factor in float64, cast to float32, then
    (x − mean) / std in float32), computed once per level instead of once per pixel.
    """
    levels = (np.arange(256, dtype=np.float64) * settings.rescale_factor).astype(np.float32)
    mean = np.asarray(settings.image_mean, dtype=np.float32)[:, None]
    std = np.asarray(settings.image_std, dtype=np.float32)[:, None]
    return (levels[None, :] - mean) / std


def patchify(frames: np.ndarray, settings: PreprocessorSettings) -> tuple[np.ndarray, tuple[int, int, int]]:
    """RGB uint8 frames [T, H, W, 3] → (normalised pixel rows [gt·gh·gw, 3·tp·p·p] float32, (gt, gh, gw)).

    T is padded to a multiple of the temporal patch by repeating the last frame (a single image becomes
    two identical frames, as in the reference). The patch layout is rearranged on uint8 and normalised
    last, through a per-level table: the big float tensor is written once.
    """
    tp, p, m = settings.temporal_patch_size, settings.patch_size, settings.merge_size
    pad = -frames.shape[0] % tp
    if pad:
        frames = np.concatenate([frames, np.repeat(frames[-1:], pad, axis=0)], axis=0)
    t, h, w, c = frames.shape
    gt, gh, gw = t // tp, h // p, w // p
    x = frames.reshape(gt, tp, gh // m, m, p, gw // m, m, p, c)
    # (gt, tp, bh, r, py, bw, cc, px, ch) → (gt, bh, bw, r, cc, ch, tp, py, px)
    x = np.ascontiguousarray(x.transpose(0, 2, 5, 3, 6, 8, 1, 4, 7)).reshape(gt * gh * gw, c, tp * p * p)
    table = normalization_table(settings)
    rows = np.empty(x.shape, dtype=np.float32)
    for channel in range(c):
        rows[:, channel] = table[channel][x[:, channel]]
    return rows.reshape(gt * gh * gw, c * tp * p * p), (gt, gh, gw)


def image_patches(image: np.ndarray, settings: PreprocessorSettings,
                  size: tuple[int, int] | None = None) -> tuple[np.ndarray, tuple[int, int, int]]:
    """One RGB uint8 image → pixel rows and grid (1, h/p, w/p); `size` defaults to `smart_resize`'s."""
    height, width = size or smart_resize(image.shape[0], image.shape[1], settings.resize_factor,
                                         settings.min_pixels, settings.max_pixels)
    return patchify(resize_rgb(image, height, width)[None], settings)


def video_patches(frames: np.ndarray, settings: PreprocessorSettings) -> tuple[np.ndarray, tuple[int, int, int]]:
    """Resized RGB uint8 frames [T, H, W, 3] → pixel rows and grid (ceil(T/2), H/p, W/p)."""
    return patchify(frames, settings)


def grid_tokens(grid: tuple[int, int, int], merge_size: int) -> int:
    """LLM tokens for a grid: one per merge_size² patches."""
    return grid[0] * grid[1] * grid[2] // (merge_size * merge_size)
