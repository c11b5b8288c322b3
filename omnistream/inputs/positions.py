"""TM-RoPE position ids (spec §3): a pure function of token ids and media metadata.

Used by the processor for the prompt, by the engine, and by the talker on its own ids. Positions are
float32 [3, B, T] (temporal, height, width) and may be fractional for video (s·13 not integer).

Text, audio and the start/end markers take consecutive ids on all three axes. An image takes T = cur,
H = cur + row, W = cur + col over its merged grid; a video adds k·s·position_id_per_seconds to T for
temporal grid k. After a media block the next id is max + 1. With audio-in-video, video and audio ids
start at the same `cur` and tokens appear merged by T (video first on ties), opened by two start markers
and closed by two end markers. `rope_delta = max + 1 − valid_length` continues decoding (spec §3.2).

Two reference details are kept so ids equal the reference's bit for bit:
- when the whole batch has no image or video grid, ids are cumsum(mask) − 1 with padding set to 1;
  otherwise padding positions are 0;
- float32 arithmetic in the same order as the reference.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch

from omnistream.errors import OmniInputError
from omnistream.inputs.audio_features import audio_token_count
from omnistream.inputs.settings import TokenIds


def rope_index(input_ids: torch.Tensor, attention_mask: torch.Tensor | None, ids: TokenIds, *,
               image_grid_thw: torch.Tensor | None = None, video_grid_thw: torch.Tensor | None = None,
               video_second_per_grid: torch.Tensor | Sequence[float] | None = None,
               audio_lengths: torch.Tensor | Sequence[int] | None = None, use_audio_in_video: bool = False,
               spatial_merge_size: int = 2, position_id_per_seconds: float = 13.0,
               n_window: int = 50) -> tuple[torch.Tensor, torch.Tensor]:
    """Position ids [3, B, T] float32 and rope deltas [B] float32 for a (left- or right-) padded batch.

    `audio_lengths` are valid mel-frame counts per audio in order of appearance across the batch (the
    sum of `feature_attention_mask` rows); image/video grids and seconds-per-grid likewise.
    """
    if input_ids.ndim != 2:
        raise OmniInputError(f"input_ids must be [B, T], got shape {tuple(input_ids.shape)}", param="input_ids")
    mask = torch.ones_like(input_ids) if attention_mask is None else attention_mask
    if image_grid_thw is None and video_grid_thw is None:
        return _text_positions(mask)
    walker = _Walker(ids, image_grid_thw, video_grid_thw, video_second_per_grid, audio_lengths,
                     use_audio_in_video, spatial_merge_size, position_id_per_seconds, n_window)
    batch, length = input_ids.shape
    positions = torch.zeros(3, batch, length, dtype=torch.float32)
    deltas = torch.zeros(batch, dtype=torch.float32)
    for row in range(batch):
        keep = mask[row] == 1
        tokens = input_ids[row][keep].tolist()
        row_positions = walker.walk(tokens, row)                     # [3, valid]
        positions[:, row, keep] = row_positions
        deltas[row] = row_positions.max() + 1 - len(tokens)
    walker.check_all_used()
    return positions, deltas


def _text_positions(mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Plain sequential ids (no image or video anywhere in the batch); audio needs nothing special."""
    positions = mask.float().cumsum(-1) - 1
    positions = positions.masked_fill(mask == 0, 1)
    deltas = positions.max(-1).values + 1 - mask.sum(-1)
    return positions.unsqueeze(0).expand(3, -1, -1).contiguous(), deltas.float()


class _Walker:
    """Walks one row at a time, consuming media metadata in order of appearance across the batch."""

    def __init__(self, ids: TokenIds, image_grid_thw: torch.Tensor | None, video_grid_thw: torch.Tensor | None,
                 second_per_grid: torch.Tensor | Sequence[float] | None,
                 audio_lengths: torch.Tensor | Sequence[int] | None, use_audio_in_video: bool,
                 merge: int, per_second: float, n_window: int) -> None:
        self.ids, self.merge, self.per_second, self.n_window = ids, merge, per_second, n_window
        self.use_audio_in_video = use_audio_in_video
        self.images = [tuple(int(v) for v in g) for g in (image_grid_thw.tolist() if image_grid_thw is not None
                                                           else [])]
        self.videos = [tuple(int(v) for v in g) for g in (video_grid_thw.tolist() if video_grid_thw is not None
                                                           else [])]
        self.seconds = torch.as_tensor(second_per_grid if second_per_grid is not None else
                                       [1.0] * len(self.videos), dtype=torch.float32).reshape(-1)
        self.audios = [int(a) for a in (audio_lengths.tolist() if isinstance(audio_lengths, torch.Tensor)
                                        else (audio_lengths or []))]
        self.next_image = self.next_video = self.next_audio = 0

    def walk(self, tokens: list[int], row: int) -> torch.Tensor:
        ids = self.ids
        pieces: list[torch.Tensor] = []
        i = 0
        while i < len(tokens):
            j = i
            while j < len(tokens) and tokens[j] not in (ids.vision_start, ids.audio_start):
                j += 1
            if j > i:
                pieces.append(_run(j - i, _next_start(pieces)))
            if j == len(tokens):
                break
            i = self._media_block(tokens, j, pieces, row)
        return torch.cat(pieces, dim=1).float() if pieces else torch.zeros(3, 0)

    def _media_block(self, tokens: list[int], at: int, pieces: list[torch.Tensor], row: int) -> int:
        """Position one media block starting at `tokens[at]`; return the index after it."""
        ids = self.ids
        nxt = tokens[at + 1] if at + 1 < len(tokens) else None
        interleaved = tokens[at] == ids.vision_start and nxt == ids.audio_start
        if interleaved and not self.use_audio_in_video and not self._plain_vision_after(tokens, at):
            return self._unflagged_audio_in_video(tokens, at, pieces, row)
        if tokens[at] == ids.audio_start:
            kind, markers = "audio", 1
        elif interleaved:
            kind, markers = "audio_in_video", 2
        elif nxt == ids.image:
            kind, markers = "image", 1
        elif nxt == ids.video:
            kind, markers = "video", 1
        else:  # a bare start marker with no media after it is ordinary text
            pieces.append(_run(1, _next_start(pieces)))
            return at + 1
        pieces.append(_run(markers, _next_start(pieces)))
        start = _next_start(pieces)
        if kind == "audio":
            body, expected = [self._audio(start, row)], ids.audio
        elif kind == "image":
            body, expected = [self._image(start, row)], ids.image
        elif kind == "video":
            body, expected = [self._video(start, row)], ids.video
        else:
            body, expected = self._audio_in_video(start, row), None
        count = sum(piece.shape[1] for piece in body)
        first = at + markers
        self._check_tokens(tokens, first, count, expected, kind, row)
        pieces.extend(body)
        # The end markers continue from the max of the *last* piece, not of the whole block: for
        # audio-in-video that is the tail run (reference behaviour, kept for identical ids).
        pieces.append(_run(markers, _next_start(pieces)))
        return first + count + markers

    def _plain_vision_after(self, tokens: list[int], at: int) -> bool:
        starts = (i for i in range(at + 1, len(tokens) - 1) if tokens[i] == self.ids.vision_start)
        return any(tokens[i + 1] in (self.ids.image, self.ids.video) for i in starts)

    def _unflagged_audio_in_video(self, tokens: list[int], at: int, pieces: list[torch.Tensor], row: int) -> int:
        """An interleaved block met with use_audio_in_video=False (the talker's case, spec §7.2-2).

        The reference then positions the whole block as consecutive ids (it walks it as text + an audio
        run) when no plain image or video follows; we reproduce that and consume the block's audio and
        video metadata. (With a plain image/video after it, the reference treats it as interleaved.)
        """
        end = next((i for i in range(at + 2, len(tokens)) if tokens[i] == self.ids.vision_end), len(tokens) - 1)
        self._take("audio", self.audios, row)
        self._take("video", self.videos, row)
        pieces.append(_run(end - at + 1, _next_start(pieces)))
        return end + 1

    def _audio(self, start: torch.Tensor, row: int) -> torch.Tensor:
        n = int(audio_token_count(self._take("audio", self.audios, row), self.n_window))
        return _run(n, start)

    def _image(self, start: torch.Tensor, row: int) -> torch.Tensor:
        grid = self._take("image", self.images, row)
        # images have grid_t = 1; the reference scales t by 1·position_id_per_seconds (0 for t = 0)
        t_index = (torch.arange(grid[0]) * 1 * self.per_second).float()
        return self._vision(grid, t_index, start)

    def _video(self, start: torch.Tensor, row: int, index: int | None = None) -> torch.Tensor:
        video_index = self.next_video if index is None else index
        grid = self._take("video", self.videos, row)
        seconds = self.seconds[video_index] if video_index < len(self.seconds) else torch.tensor(1.0)
        t_index = (torch.arange(grid[0]) * seconds.float() * self.per_second).float()
        return self._vision(grid, t_index, start)

    def _audio_in_video(self, start: torch.Tensor, row: int) -> list[torch.Tensor]:
        """Video and audio ids from the same start, merged by T with video first on ties (spec §3.2).

        Returns [merged head, tail] where the tail is the run left once one stream ran out: the end
        markers continue from the tail's max, as in the reference's token-by-token merge.
        """
        audio = self._audio(start, row)                                  # [3, Na]
        video = self._video(start, row)                                  # [3, Nv]
        both = torch.cat([video, audio], dim=1)
        order = torch.sort(both[0], stable=True).indices                 # stable: video first on ties
        merged = both[:, order]
        is_video = order < video.shape[1]
        # the trailing run of one kind is what remained after the other stream was exhausted
        flips = torch.nonzero(is_video != is_video[-1]).flatten()
        tail_start = int(flips[-1]) + 1 if len(flips) else 0
        return [piece for piece in (merged[:, :tail_start], merged[:, tail_start:]) if piece.shape[1] > 0]

    def _vision(self, grid: tuple[int, ...], t_index: torch.Tensor, start: torch.Tensor) -> torch.Tensor:
        gh, gw = grid[1] // self.merge, grid[2] // self.merge
        h = torch.arange(gh).view(1, -1, 1).expand(len(t_index), -1, gw).flatten().float()
        w = torch.arange(gw).view(1, 1, -1).expand(len(t_index), gh, -1).flatten().float()
        t = t_index.view(-1, 1).expand(-1, gh * gw).flatten().float()
        return torch.stack([t, h, w]) + start

    def _take(self, kind: str, items: list, row: int):
        counter = f"next_{'audio' if kind == 'audio' else kind}"
        index = getattr(self, counter)
        if index >= len(items):
            raise OmniInputError(f"row {row}: more {kind} blocks in input_ids than {kind} metadata entries "
                                 f"({len(items)})", param=f"{kind}_metadata")
        setattr(self, counter, index + 1)
        return items[index]

    def _check_tokens(self, tokens: list[int], first: int, count: int, expected: int | None, kind: str,
                      row: int) -> None:
        span = tokens[first:first + count]
        allowed = {self.ids.audio, self.ids.video} if expected is None else {expected}
        if len(span) != count or any(t not in allowed for t in span):
            raise OmniInputError(f"row {row}: a {kind} block expects {count} placeholder tokens at position "
                                 f"{first}, the ids do not match", param="input_ids")

    def check_all_used(self) -> None:
        for kind, items, used in (("image", self.images, self.next_image), ("video", self.videos, self.next_video),
                                  ("audio", self.audios, self.next_audio)):
            if used != len(items):
                raise OmniInputError(f"{len(items)} {kind} metadata entries but {used} {kind} blocks in input_ids",
                                     param=f"{kind}_metadata")


def _run(length: int, start: torch.Tensor) -> torch.Tensor:
    """`length` consecutive ids from `start` on all three axes: [3, length]."""
    return torch.arange(length).view(1, -1).expand(3, -1) + start


def _next_start(pieces: list[torch.Tensor]) -> torch.Tensor:
    return pieces[-1].max() + 1 if pieces else torch.tensor(0)
