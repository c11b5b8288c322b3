"""Bidirectional attention over packed segments (the encoders' `cu_seqlens` attention, spec §2.2, §2.3).

Both encoders run on a flat token sequence [T, C] that packs several independent pieces: the audio
encoder's 104-token windows, the vision encoder's frames. A token attends to every token of its own
segment and to nothing else. The reference runs one attention call per segment; we run one SDPA call
for all of them, choosing the layout once per forward (`SegmentLayout`) and reusing it in every layer:

* one segment            → plain SDPA, no mask;
* padded batch [S, L]    → every segment gathered into a row of the longest length L; a key mask hides
                           the padding only when lengths differ (equal lengths — a video's frames, full
                           audio windows — need no mask, so fast kernels apply);
* block-diagonal [T, T]  → when padding would cost more than the dense square (many tiny segments
                           next to one huge one).

Padded query rows attend to real keys of their row, so no row is fully masked and nothing is NaN; they
are dropped when the output is unpacked. Building the layout reads the segment lengths on the host once;
the per-layer path has no host sync.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class SegmentLayout:
    """How a packed sequence of `total` tokens splits into attention segments; built by `segment_layout`."""
    total: int
    gather: torch.Tensor | None = None      # [S, L] token index of each padded slot (padded mode)
    unpad: torch.Tensor | None = None       # [T] index into the S·L padded slots, in token order
    key_mask: torch.Tensor | None = None    # [S, 1, 1, L] True where a key is real (padded mode, ragged)
    dense_mask: torch.Tensor | None = None  # [1, 1, T, T] block-diagonal (dense mode)


def segment_layout(cu_seqlens: Sequence[int] | torch.Tensor, device: torch.device | str | None = None
                   ) -> SegmentLayout:
    """Plan attention for segments with boundaries `cu_seqlens` = [0, end_0, end_1, …, T]."""
    bounds = cu_seqlens.tolist() if isinstance(cu_seqlens, torch.Tensor) else list(cu_seqlens)
    lengths = [b - a for a, b in zip(bounds[:-1], bounds[1:])]
    if bounds[0] != 0 or any(n <= 0 for n in lengths):
        raise ValueError(f"cu_seqlens must start at 0 and increase strictly, got {bounds}")
    total = bounds[-1]
    if len(lengths) == 1:
        return SegmentLayout(total=total)

    starts = torch.tensor(bounds[:-1], dtype=torch.long)
    sizes = torch.tensor(lengths, dtype=torch.long)
    longest = max(lengths)
    if len(lengths) * longest * longest > total * total:
        segment_id = torch.repeat_interleave(torch.arange(len(lengths)), sizes)  # [T]
        mask = segment_id[:, None] == segment_id[None, :]
        return SegmentLayout(total=total, dense_mask=mask[None, None].to(device))

    slot = torch.arange(longest)
    real = slot[None, :] < sizes[:, None]                              # [S, L]
    gather = torch.where(real, starts[:, None] + slot[None, :], starts[:, None])  # pads point at a real token
    unpad = real.flatten().nonzero().squeeze(1)                        # [T], segments are in token order
    ragged = min(lengths) != longest
    return SegmentLayout(total=total, gather=gather.to(device), unpad=unpad.to(device),
                         key_mask=real[:, None, None, :].to(device) if ragged else None)


def segment_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, layout: SegmentLayout,
                      scale: float | None = None) -> torch.Tensor:
    """Softmax attention of q, k, v [T, H, D] within each segment of `layout` → [T, H, D]."""
    T, H, D = q.shape
    if layout.gather is None:
        # [1, H, T, D]: one segment (no mask) or all segments in one square with the block-diagonal mask
        q4, k4, v4 = (x.transpose(0, 1).unsqueeze(0) for x in (q, k, v))
        out = F.scaled_dot_product_attention(q4, k4, v4, attn_mask=layout.dense_mask, scale=scale)
        return out.squeeze(0).transpose(0, 1)                          # [T, H, D]
    S, L = layout.gather.shape
    # [S, L, H, D] → [S, H, L, D]
    qp, kp, vp = (x[layout.gather].transpose(1, 2) for x in (q, k, v))
    out = F.scaled_dot_product_attention(qp, kp, vp, attn_mask=layout.key_mask, scale=scale)
    return out.transpose(1, 2).reshape(S * L, H, D)[layout.unpad]      # [T, H, D]
