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


def normalize(frames: np.ndarray, settings: PreprocessorSettings) -> np.ndarray:
    """uint8 [..., H, W, 3] → float32 [..., 3, H, W]: ×rescale_factor, then (x − mean) / std.

    Same order and precision as the reference: rescale in float64 then cast to float32, normalise in float32.
    """
    scaled = (frames.astype(np.float64) * settings.rescale_factor).astype(np.float32)
    mean = np.asarray(settings.image_mean, dtype=np.float32)
    std = np.asarray(settings.image_std, dtype=np.float32)
    scaled = (scaled - mean) / std
    return np.moveaxis(scaled, -1, -3)


def patchify(frames: np.ndarray, settings: PreprocessorSettings) -> tuple[np.ndarray, tuple[int, int, int]]:
    """Normalised frames [T, 3, H, W] → (pixel rows [grid_t·grid_h·grid_w, 3·tp·p·p], (grid_t, grid_h, grid_w)).

    T is padded to a multiple of the temporal patch by repeating the last frame (a single image becomes
    two identical frames, as in the reference).
    """
    tp, p, m = settings.temporal_patch_size, settings.patch_size, settings.merge_size
    pad = -frames.shape[0] % tp
    if pad:
        frames = np.concatenate([frames, np.repeat(frames[-1:], pad, axis=0)], axis=0)
    t, c, h, w = frames.shape
    gt, gh, gw = t // tp, h // p, w // p
    x = frames.reshape(gt, tp, c, gh // m, m, p, gw // m, m, p)
    # (gt, tp, c, bh, r, py, bw, cc, px) → (gt, bh, bw, r, cc, c, tp, py, px)
    x = x.transpose(0, 3, 6, 4, 7, 2, 1, 5, 8)
    return np.ascontiguousarray(x.reshape(gt * gh * gw, c * tp * p * p)), (gt, gh, gw)


def image_patches(image: np.ndarray, settings: PreprocessorSettings,
                  size: tuple[int, int] | None = None) -> tuple[np.ndarray, tuple[int, int, int]]:
    """One RGB uint8 image → pixel rows and grid (1, h/p, w/p); `size` defaults to `smart_resize`'s."""
    height, width = size or smart_resize(image.shape[0], image.shape[1], settings.resize_factor,
                                         settings.min_pixels, settings.max_pixels)
    resized = resize_rgb(image, height, width)
    return patchify(normalize(resized[None], settings), settings)


def video_target_size(height: int, width: int, settings: PreprocessorSettings, label: str) -> tuple[int, int]:
    return smart_resize(height, width, settings.resize_factor, settings.video_min_pixels,
                        settings.video_max_pixels, label)


def video_patches(frames: np.ndarray, settings: PreprocessorSettings) -> tuple[np.ndarray, tuple[int, int, int]]:
    """Resized RGB uint8 frames [T, H, W, 3] → pixel rows and grid (ceil(T/2), H/p, W/p)."""
    return patchify(normalize(frames, settings), settings)


def grid_tokens(grid: tuple[int, int, int], merge_size: int) -> int:
    """LLM tokens for a grid: one per merge_size² patches."""
    return grid[0] * grid[1] * grid[2] // (merge_size * merge_size)
