"""Vision encoder: image/video patches → thinker-sized visual tokens plus deepstack features (spec §2.3).

    pixel_values [N, C·Tp·P·P] (rows in merge-block order, spec §2.3 "patch order")
      → patch_embed (the Conv3d with kernel = stride = patch, done as one matmul)
      + learned position grid, bilinearly resampled to each image's (h, w)
      → pre-LN ViT blocks: 2-D rotary on (row, col), attention inside each temporal slice
      → after block deepstack_visual_indexes[k]: merger_list[k] (2×2 concat → LayerNorm → MLP)
      → merger (LayerNorm → 2×2 concat → MLP)                       [N/4, out_hidden_size]

Attribute names are the checkpoint keys under `thinker.visual.`.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from omnistream.config import VisionEncoderConfig
from omnistream.errors import ConfigError, OmniInputError
from omnistream.nn.segment_attention import SegmentLayout, segment_attention, segment_layout
from omnistream.nn.vision_rope import VISION_ROPE_THETA, apply_vision_rope, vision_inverse_frequencies, \
    vision_rope_tables

_ACTIVATIONS = {"gelu_pytorch_tanh": lambda x: F.gelu(x, approximate="tanh"), "gelu": F.gelu}


@dataclass(frozen=True)
class VisionGrid:
    """Per-patch metadata of a batch of grids, computed once per forward (all tensors on the model device)."""
    rows: torch.Tensor        # [N] patch row inside its frame
    cols: torch.Tensor        # [N] patch column inside its frame
    heights: torch.Tensor     # [N] grid height of the patch's image
    widths: torch.Tensor      # [N] grid width of the patch's image
    cu_seqlens: list[int]     # one attention segment per temporal slice


def vision_grid(grids: list[tuple[int, int, int]], merge: int, device: torch.device) -> VisionGrid:
    """Patch coordinates in the processor's merge-block order: per frame, block row, block col, r, c."""
    counts = torch.tensor([t * h * w for t, h, w in grids])
    frame_sizes = torch.tensor([h * w for _, h, w in grids]).repeat_interleave(counts)
    widths = torch.tensor([w for _, _, w in grids]).repeat_interleave(counts)
    heights = torch.tensor([h for _, h, _ in grids]).repeat_interleave(counts)
    first = torch.repeat_interleave(counts.cumsum(0) - counts, counts)
    within = (torch.arange(int(counts.sum())) - first) % frame_sizes  # index inside the frame
    block, inner = within // (merge * merge), within % (merge * merge)
    blocks_per_row = widths // merge
    rows = (block // blocks_per_row) * merge + inner // merge
    cols = (block % blocks_per_row) * merge + inner % merge
    bounds = [0]
    for t, h, w in grids:
        for _ in range(t):  # frames never attend to each other (spec §2.3 "attention")
            bounds.append(bounds[-1] + h * w)
    return VisionGrid(rows.to(device), cols.to(device), heights.to(device), widths.to(device), bounds)


class PatchEmbed(nn.Module):
    """Conv3d patchify with kernel = stride = (Tp, P, P): on pre-flattened patches it is a single matmul."""

    def __init__(self, cfg: VisionEncoderConfig) -> None:
        super().__init__()
        kernel = (cfg.temporal_patch_size, cfg.patch_size, cfg.patch_size)
        # Kept as a Conv3d so the checkpoint key and weight shape [E, C, Tp, P, P] match; never called as one.
        self.proj = nn.Conv3d(cfg.in_channels, cfg.hidden_size, kernel, stride=kernel)

    def forward(self, patches: torch.Tensor) -> torch.Tensor:
        # [N, C·Tp·P·P] @ [E, C·Tp·P·P]ᵀ: the patch layout (C, Tp, P, P) is the Conv3d weight's own layout.
        w = self.proj.weight
        return F.linear(patches.to(w.dtype), w.flatten(1), self.proj.bias)


class VisionAttention(nn.Module):
    """Fused-qkv attention with 2-D rotary, bidirectional within each temporal slice."""

    def __init__(self, cfg: VisionEncoderConfig) -> None:
        super().__init__()
        self.num_heads, self.head_dim = cfg.num_heads, cfg.head_dim
        self.qkv = nn.Linear(cfg.hidden_size, 3 * cfg.hidden_size)
        self.proj = nn.Linear(cfg.hidden_size, cfg.hidden_size)

    def forward(self, x: torch.Tensor, layout: SegmentLayout, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        N = x.shape[0]
        q, k, v = self.qkv(x).view(N, 3, self.num_heads, self.head_dim).unbind(1)  # each [N, H, D]
        q, k = apply_vision_rope(q, cos, sin), apply_vision_rope(k, cos, sin)
        out = segment_attention(q, k, v, layout, scale=self.head_dim ** -0.5)
        return self.proj(out.reshape(N, -1))


class VisionMLP(nn.Module):
    def __init__(self, cfg: VisionEncoderConfig) -> None:
        super().__init__()
        self.linear_fc1 = nn.Linear(cfg.hidden_size, cfg.intermediate_size)
        self.linear_fc2 = nn.Linear(cfg.intermediate_size, cfg.hidden_size)
        self.act = _ACTIVATIONS[cfg.hidden_act]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear_fc2(self.act(self.linear_fc1(x)))


class VisionBlock(nn.Module):
    """Pre-LN ViT block (LayerNorm eps 1e-6)."""

    def __init__(self, cfg: VisionEncoderConfig) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(cfg.hidden_size, eps=1e-6)
        self.norm2 = nn.LayerNorm(cfg.hidden_size, eps=1e-6)
        self.attn = VisionAttention(cfg)
        self.mlp = VisionMLP(cfg)

    def forward(self, x: torch.Tensor, layout: SegmentLayout, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x), layout, cos, sin)
        return x + self.mlp(self.norm2(x))


class PatchMerger(nn.Module):
    """2×2 patches → one token: LayerNorm, concat of 4 consecutive rows, Linear → GELU(erf) → Linear.

    The final merger normalises each patch before the concat; the deepstack mergers (`postshuffle_norm`)
    normalise the 4·hidden concat instead (spec §2.3 "deepstack").
    """

    def __init__(self, cfg: VisionEncoderConfig, postshuffle_norm: bool) -> None:
        super().__init__()
        self.merged_size = cfg.hidden_size * cfg.spatial_merge_size ** 2
        self.postshuffle_norm = postshuffle_norm
        self.ln_q = nn.LayerNorm(self.merged_size if postshuffle_norm else cfg.hidden_size, eps=1e-6)
        self.mlp = nn.Sequential(nn.Linear(self.merged_size, self.merged_size), nn.GELU(),
                                 nn.Linear(self.merged_size, cfg.out_hidden_size))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.postshuffle_norm:
            x = self.ln_q(x.reshape(-1, self.merged_size))
        else:
            x = self.ln_q(x).reshape(-1, self.merged_size)  # [N/4, 4·hidden]: rows of a block are adjacent
        return self.mlp(x)


class VisionEncoder(nn.Module):
    """Patches of a batch of images and videos → visual tokens and deepstack features."""

    def __init__(self, cfg: VisionEncoderConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.patch_embed = PatchEmbed(cfg)
        self.pos_embed = nn.Embedding(cfg.num_position_embeddings, cfg.hidden_size)
        self.blocks = nn.ModuleList(VisionBlock(cfg) for _ in range(cfg.depth))
        self.merger = PatchMerger(cfg, postshuffle_norm=False)
        self.merger_list = nn.ModuleList(PatchMerger(cfg, postshuffle_norm=True)
                                         for _ in cfg.deepstack_visual_indexes)
        self.grid_side = math.isqrt(cfg.num_position_embeddings)
        rope = cfg.raw.get("rope_parameters") or {}
        self.rope_theta = float(rope.get("rope_theta", cfg.raw.get("rope_theta", VISION_ROPE_THETA)))
        if cfg.hidden_act not in _ACTIVATIONS:
            raise ConfigError(f"vision_config.hidden_act {cfg.hidden_act!r} is not supported",
                              param="thinker_config.vision_config.hidden_act")

    def forward(self, pixel_values: torch.Tensor, grid_thw: torch.Tensor
                ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """pixel_values [N, patch_dim], grid_thw [n, 3] (t, h, w in patches)
        → tokens [N/4, out_hidden_size], deepstack features (one [N/4, out_hidden_size] per index, in
        block order)."""
        grids = self._check_inputs(pixel_values, grid_thw)
        device = pixel_values.device
        grid = vision_grid(grids, self.cfg.spatial_merge_size, device)
        layout = segment_layout(grid.cu_seqlens, device=device)
        inv_freq = vision_inverse_frequencies(self.cfg.head_dim, self.rope_theta)
        cos, sin = vision_rope_tables(torch.stack([grid.rows, grid.cols], dim=1), inv_freq)  # [N, D] fp32

        x = self.patch_embed(pixel_values)
        x = x + self._resampled_positions(grid).to(x.dtype)
        deepstack = []
        for i, block in enumerate(self.blocks):
            x = block(x, layout, cos, sin)
            if i in self.cfg.deepstack_visual_indexes:
                # Features come out in block order, each through the merger at the block's place in the
                # list, as the reference does (the same as list order when the list is sorted, as released).
                deepstack.append(self.merger_list[self.cfg.deepstack_visual_indexes.index(i)](x))
        return self.merger(x), deepstack

    def _resampled_positions(self, grid: VisionGrid) -> torch.Tensor:
        """The learned side×side position grid resampled to each image's (h, w), align_corners=True [N, C].

        Source coordinate along an axis: idx·(side−1)/(size−1) (0 when size is 1); 2 taps per axis clamped
        to the border with hat weights 1 − |src − tap|; 4 taps in all. Sums in fp32 (the reference
        multiplies the table by fp32 weights), so half-precision tables resample the same way.
        """
        side = self.grid_side
        row_taps, row_w = _axis_taps(grid.rows, grid.heights, side)   # [N, 2] each
        col_taps, col_w = _axis_taps(grid.cols, grid.widths, side)
        index = (row_taps[:, :, None] * side + col_taps[:, None, :]).flatten(1)      # [N, 4]
        weight = (row_w[:, :, None] * col_w[:, None, :]).flatten(1)                  # [N, 4]
        return F.embedding_bag(index, self.pos_embed.weight.float(), per_sample_weights=weight, mode="sum")

    def _check_inputs(self, pixel_values: torch.Tensor, grid_thw: torch.Tensor) -> list[tuple[int, int, int]]:
        if pixel_values.ndim != 2 or pixel_values.shape[1] != self.cfg.patch_dim:
            raise OmniInputError(f"pixel_values must be [patches, {self.cfg.patch_dim}], "
                                 f"got {tuple(pixel_values.shape)}", param="pixel_values")
        if grid_thw.ndim != 2 or grid_thw.shape[1] != 3:
            raise OmniInputError(f"grid_thw must be [n, 3], got {tuple(grid_thw.shape)}", param="grid_thw")
        grids = [(int(t), int(h), int(w)) for t, h, w in grid_thw.tolist()]  # host sync: the layout needs it
        m = self.cfg.spatial_merge_size
        for i, (t, h, w) in enumerate(grids):
            if t < 1 or h < 1 or w < 1 or h % m or w % m:
                raise OmniInputError(f"grid_thw[{i}] = {(t, h, w)}: entries must be positive and h, w "
                                     f"multiples of spatial_merge_size {m}", param="grid_thw")
        total = sum(t * h * w for t, h, w in grids)
        if total != pixel_values.shape[0]:
            raise OmniInputError(f"grid_thw describes {total} patches but pixel_values has "
                                 f"{pixel_values.shape[0]}", param="pixel_values")
        return grids


def _axis_taps(index: torch.Tensor, size: torch.Tensor, side: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Bilinear taps (floor, floor+1 clamped to side−1) and hat weights along one axis, align_corners=True."""
    src = index.float() * (side - 1) / (size - 1).clamp(min=1)
    low = src.floor()
    taps = low[:, None] + torch.arange(2, device=index.device)                # [N, 2]
    weights = (1 - (src[:, None] - taps).abs()).clamp(min=0)
    return taps.long().clamp(max=side - 1), weights
