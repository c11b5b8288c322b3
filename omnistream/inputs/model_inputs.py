"""`ModelInputs`: the tensors the Thinker consumes, with the reference processor's field names."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import torch

# Reference field names, in the order transformers' processor returns them.
REFERENCE_FIELDS = ("input_ids", "attention_mask", "input_features", "feature_attention_mask", "pixel_values",
                    "image_grid_thw", "pixel_values_videos", "video_grid_thw", "video_second_per_grid")
# Floating tensors that carry media values: `.to(dtype=...)` casts these and nothing else.
_MEDIA_FLOATS = ("input_features", "pixel_values", "pixel_values_videos")


@dataclass
class ModelInputs:
    """A batch of B prompts (left-padded) and the media they reference, in order of appearance.

    Media tensors are flat over the batch (row 0's media first); `audios_per_row`, `images_per_row`
    and `videos_per_row` say how many items each row owns so `rows()` can split the batch per request.
    """
    input_ids: torch.Tensor                                  # [B, T] int64
    attention_mask: torch.Tensor                             # [B, T] int64, 0 on padding
    position_ids: torch.Tensor                               # [3, B, T] float32 (TM-RoPE, spec §3)
    rope_deltas: torch.Tensor                                # [B] float32
    input_features: torch.Tensor | None = None               # [N_audio, mels, F] float32
    feature_attention_mask: torch.Tensor | None = None       # [N_audio, F] int32
    pixel_values: torch.Tensor | None = None                 # [N_image_patches, C·tp·p·p] float32
    image_grid_thw: torch.Tensor | None = None               # [N_image, 3] int64
    pixel_values_videos: torch.Tensor | None = None          # [N_video_patches, C·tp·p·p] float32
    video_grid_thw: torch.Tensor | None = None               # [N_video, 3] int64
    video_second_per_grid: torch.Tensor | None = None        # [N_video] float32
    use_audio_in_video: bool = False
    audios_per_row: tuple[int, ...] = ()
    images_per_row: tuple[int, ...] = ()
    videos_per_row: tuple[int, ...] = ()
    prompts: tuple[str, ...] = field(default=(), repr=False)  # rendered templates, for logs and debugging

    @property
    def batch_size(self) -> int:
        return int(self.input_ids.shape[0])

    @property
    def audio_feature_lengths(self) -> torch.Tensor | None:
        """Valid mel frames per audio, [N_audio] (the audio encoder's input lengths)."""
        return None if self.feature_attention_mask is None else self.feature_attention_mask.sum(-1)

    def as_dict(self) -> dict[str, torch.Tensor]:
        """The reference fields that are present (for `model(**inputs.as_dict())`-style calls)."""
        return {name: getattr(self, name) for name in REFERENCE_FIELDS if getattr(self, name) is not None}

    def to(self, device: torch.device | str | None = None, dtype: torch.dtype | None = None) -> ModelInputs:
        """Move every tensor to `device`; cast only the media value tensors (features, pixels) to `dtype`.

        Ids, masks, grids and position ids keep their dtype: positions stay float32 (spec §3.4).
        """
        changes = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if isinstance(value, torch.Tensor):
                cast = dtype if (dtype is not None and f.name in _MEDIA_FLOATS) else None
                changes[f.name] = value.to(device=device, dtype=cast)
        return dataclasses.replace(self, **changes)

    def rows(self) -> list[ModelInputs]:
        """Split into B single-row inputs, padding removed and each row's own media only."""
        return [self.row(i) for i in range(self.batch_size)]

    def row(self, index: int) -> ModelInputs:
        keep = self.attention_mask[index].bool()
        a0, a1 = _span(self.audios_per_row, index)
        i0, i1 = _span(self.images_per_row, index)
        v0, v1 = _span(self.videos_per_row, index)
        features = mask = None
        if self.input_features is not None and a1 > a0:
            mask = self.feature_attention_mask[a0:a1]
            frames = int(mask.sum(-1).max())  # only valid frames are ever read
            features, mask = self.input_features[a0:a1, :, :frames], mask[:, :frames]
        pixels = grid = None
        if self.pixel_values is not None and i1 > i0:
            grid = self.image_grid_thw[i0:i1]
            pixels = self.pixel_values[slice(*_patch_span(self.image_grid_thw, i0, i1))]
        video_pixels = video_grid = seconds = None
        if self.pixel_values_videos is not None and v1 > v0:
            video_grid = self.video_grid_thw[v0:v1]
            video_pixels = self.pixel_values_videos[slice(*_patch_span(self.video_grid_thw, v0, v1))]
            seconds = self.video_second_per_grid[v0:v1]
        return ModelInputs(
            input_ids=self.input_ids[index][keep][None], attention_mask=self.attention_mask[index][keep][None],
            position_ids=self.position_ids[:, index][:, keep][:, None], rope_deltas=self.rope_deltas[index:index + 1],
            input_features=features, feature_attention_mask=mask, pixel_values=pixels, image_grid_thw=grid,
            pixel_values_videos=video_pixels, video_grid_thw=video_grid, video_second_per_grid=seconds,
            use_audio_in_video=self.use_audio_in_video, audios_per_row=(a1 - a0,), images_per_row=(i1 - i0,),
            videos_per_row=(v1 - v0,), prompts=self.prompts[index:index + 1])


def _span(counts: tuple[int, ...], index: int) -> tuple[int, int]:
    start = sum(counts[:index])
    return start, start + (counts[index] if index < len(counts) else 0)


def _patch_span(grids: torch.Tensor, first: int, last: int) -> tuple[int, int]:
    patches = grids.prod(-1)
    return int(patches[:first].sum()), int(patches[:last].sum())
