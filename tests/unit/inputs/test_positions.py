"""TM-RoPE position ids: the spec §3.3 worked examples, padding, deltas and metadata checks."""
from __future__ import annotations

import pytest
import torch

from omnistream.errors import OmniInputError
from omnistream.inputs.positions import rope_index
from omnistream.inputs.settings import TokenIds

IDS = TokenIds(im_start=151644, im_end=151645, pad=151643, audio=151675, image=151655, video=151656,
               audio_start=151669, audio_end=151670, vision_start=151652, vision_end=151653)
S, USER, NL, T = IDS.im_start, 872, 198, 1000          # T: any text token
VS, VE, AS, AE = IDS.vision_start, IDS.vision_end, IDS.audio_start, IDS.audio_end


def triples(positions: torch.Tensor, row: int = 0) -> list[tuple[float, float, float]]:
    return [tuple(positions[:, row, i].tolist()) for i in range(positions.shape[2])]


def test_spec_example_a_image_audio_video():
    ids = ([S, USER, NL, VS] + [IDS.image] * 6 + [VE, T, T, AS] + [IDS.audio] * 20 + [AE, T, VS]
           + [IDS.video] * 12 + [VE, T])
    positions, deltas = rope_index(torch.tensor([ids]), None, IDS, image_grid_thw=torch.tensor([[1, 4, 6]]),
                                   video_grid_thw=torch.tensor([[3, 4, 4]]), video_second_per_grid=[1.0],
                                   audio_lengths=[150])
    p = triples(positions)
    assert p[:4] == [(0, 0, 0), (1, 1, 1), (2, 2, 2), (3, 3, 3)]
    assert p[4:10] == [(4, 4, 4), (4, 4, 5), (4, 4, 6), (4, 5, 4), (4, 5, 5), (4, 5, 6)]
    assert p[10:14] == [(7, 7, 7), (8, 8, 8), (9, 9, 9), (10, 10, 10)]
    assert [q[0] for q in p[14:34]] == list(range(11, 31))
    assert p[34:37] == [(31, 31, 31), (32, 32, 32), (33, 33, 33)]
    video = p[37:49]
    assert video[:4] == [(34, 34, 34), (34, 34, 35), (34, 35, 34), (34, 35, 35)]
    assert [v[0] for v in video[4::4]] == [47, 60]
    assert p[49:] == [(61, 61, 61), (62, 62, 62)]
    assert deltas.tolist() == [63 - 51]
    assert positions.dtype == torch.float32 and deltas.dtype == torch.float32


def test_spec_example_b_fractional_video_time():
    ids = [S, USER, NL, VS] + [IDS.video] * 12 + [VE, T]
    positions, deltas = rope_index(torch.tensor([ids]), None, IDS, video_grid_thw=torch.tensor([[3, 4, 4]]),
                                   video_second_per_grid=[0.5])
    temporal = positions[0, 0, 4:16].tolist()
    assert temporal[::4] == [4.0, 10.5, 17.0]
    assert positions[:, 0, 16].tolist() == [18, 18, 18] and positions[0, 0, 17] == 19
    assert deltas.tolist() == [20 - 18]


def test_spec_example_c_audio_in_video():
    audio, video = IDS.audio, IDS.video
    body = [video] + [audio] * 13 + [video] + [audio] * 13 + [video] + [audio] * 7 + [video]
    ids = [S, USER, NL, VS, AS] + body + [AE, VE, T]
    positions, _ = rope_index(torch.tensor([ids]), None, IDS, video_grid_thw=torch.tensor([[4, 2, 2]]),
                              video_second_per_grid=[1.0], audio_lengths=[250], use_audio_in_video=True)
    p = triples(positions)
    assert p[3:5] == [(3, 3, 3), (4, 4, 4)]
    assert p[5] == (5, 5, 5) and p[6] == (5, 5, 5) and p[18] == (17, 17, 17)
    assert p[19] == (18, 5, 5) and p[20] == (18, 18, 18)
    assert p[33] == (31, 5, 5) and p[40] == (37, 37, 37) and p[41] == (44, 5, 5)
    assert p[42:] == [(45, 45, 45), (46, 46, 46), (47, 47, 47)]


def test_audio_in_video_end_markers_follow_the_last_piece():
    # one video grid (2×2 merged tokens at T=5) then 4 audio tokens: the audio tail is appended last and
    # its max (8) is what the end markers continue from — not the block max (reference behaviour)
    ids = [S, USER, NL, VS, AS] + [IDS.video] * 16 + [IDS.audio] * 4 + [AE, VE]
    positions, _ = rope_index(torch.tensor([ids]), None, IDS, video_grid_thw=torch.tensor([[1, 8, 8]]),
                              video_second_per_grid=[1.0], audio_lengths=[30], use_audio_in_video=True)
    assert positions[:, 0, 5:21].max() == 5 + 3
    assert positions[0, 0, 21:25].tolist() == [5, 6, 7, 8]
    assert positions[0, 0, 25:].tolist() == [9, 10]


def test_text_only_batch_uses_cumsum_and_pads_with_one():
    ids = torch.tensor([[0, 0, T, T, T], [T, T, T, T, T]])
    mask = torch.tensor([[0, 0, 1, 1, 1], [1, 1, 1, 1, 1]])
    positions, deltas = rope_index(ids, mask, IDS, audio_lengths=[100])
    assert positions[0].tolist() == [[1, 1, 0, 1, 2], [0, 1, 2, 3, 4]]
    assert torch.equal(positions[0], positions[1]) and torch.equal(positions[0], positions[2])
    assert deltas.tolist() == [0, 0]


def test_left_padding_in_a_vision_batch_is_zero_and_rows_are_independent():
    image_row = [S, VS] + [IDS.image] * 4 + [VE, T]
    text_row = [0, 0, 0, 0, 0, S, T, T]
    ids = torch.tensor([image_row, text_row])
    mask = torch.tensor([[1] * 8, [0] * 5 + [1] * 3])
    positions, deltas = rope_index(ids, mask, IDS, image_grid_thw=torch.tensor([[1, 4, 4]]))
    assert positions[0, 1].tolist() == [0, 0, 0, 0, 0, 0, 1, 2]
    assert positions[:, 0, 2:6].tolist() == [[2, 2, 2, 2], [2, 2, 3, 3], [2, 3, 2, 3]]
    assert deltas.tolist() == [6 - 8, 0]


def test_metadata_mismatch_is_an_input_error():
    ids = torch.tensor([[S, VS, IDS.image, IDS.image, VE]])
    with pytest.raises(OmniInputError, match="placeholder"):
        rope_index(ids, None, IDS, image_grid_thw=torch.tensor([[1, 4, 4]]))        # grid says 4 tokens
    with pytest.raises(OmniInputError, match="metadata"):
        rope_index(ids, None, IDS, image_grid_thw=torch.tensor([[1, 2, 4], [1, 2, 2]]))
