"""TM-RoPE position ids of the talker's prompt (spec §1.1, §5.2): the thinker's rope index run over the talker's
ids, with the media of the user turns. Shared by the engine (talker prefill) and training (talker stage), so
both place every prompt token at the same position.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from omnistream.inputs.positions import rope_index

if TYPE_CHECKING:
    from omnistream.config import TalkerConfig, ThinkerConfig
    from omnistream.inputs import ModelInputs, TokenIds


def talker_prompt_positions(inputs: ModelInputs, talker_ids: torch.Tensor, user: torch.Tensor, token_ids: TokenIds,
                            thinker_config: ThinkerConfig, talker_config: TalkerConfig) -> tuple[torch.Tensor, float]:
    """Positions [3, 1, L] and rope delta of the talker prompt `talker_ids` [L] built from the thinker prompt
    in `inputs`; `user` [n] holds the thinker-prompt indices that belong to user turns. The media grids passed
    on are those of the user turns (the reference passes every grid; they coincide unless a system turn holds
    media)."""
    thinker_ids = inputs.input_ids[0].cpu()
    in_user = torch.zeros_like(thinker_ids, dtype=torch.bool)
    in_user[user] = True
    tok = token_ids
    nxt = torch.cat([thinker_ids[1:], thinker_ids.new_full((1,), -1)])
    starts = thinker_ids == tok.vision_start
    image_at = (starts & (nxt == tok.image)).nonzero().flatten()
    video_at = (starts & ((nxt == tok.video) | (nxt == tok.audio_start))).nonzero().flatten()
    audio_at = (thinker_ids == tok.audio_start).nonzero().flatten()
    lengths = inputs.audio_feature_lengths

    def pick(values, at):
        return None if values is None or at.numel() == 0 else values.cpu()[in_user[at]]

    vision = thinker_config.vision_config
    positions, deltas = rope_index(
        talker_ids[None], None, tok, image_grid_thw=pick(inputs.image_grid_thw, image_at),
        video_grid_thw=pick(inputs.video_grid_thw, video_at),
        video_second_per_grid=pick(inputs.video_second_per_grid, video_at),
        audio_lengths=pick(lengths, audio_at),
        use_audio_in_video=False,                  # the reference does not forward it (spec §7.2-2)
        spatial_merge_size=int(talker_config.extra.get("spatial_merge_size", vision.spatial_merge_size)),
        position_id_per_seconds=float(talker_config.position_id_per_seconds),
        n_window=thinker_config.audio_config.n_window)
    return positions, float(deltas[0])
