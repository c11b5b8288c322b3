"""`Processor`: conversations → `ModelInputs`, as transformers' `Qwen3OmniMoeProcessor` builds them.

    processor = Processor.from_pretrained("Qwen3-Omni-30B-A3B-Instruct")
    inputs = processor([{"role": "user", "content": [{"type": "audio", "audio": "q.wav"},
                                                      {"type": "text", "text": "Answer briefly."}]}])

Per call: validate and render every conversation, decode media (stage one: sizes and token costs
known), check the token budget, build features and pixel rows (stage two), expand placeholders, pad
on the left, and compute TM-RoPE position ids. Audio features of all conversations are computed in
one padded batch, as the reference does (spec §4.1).
"""
from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from omnistream.errors import OmniInputError
from omnistream.inputs.audio_features import audio_token_count, log_mel_features
from omnistream.inputs.chat_template import load_chat_template, render_chat
from omnistream.inputs.limits import InputLimits
from omnistream.inputs.loading import LoadedMedia, load_part, pixels
from omnistream.inputs.model_inputs import ModelInputs
from omnistream.inputs.positions import rope_index
from omnistream.inputs.prompt import Expansion, MediaPart, expand_placeholders, normalize_conversation
from omnistream.inputs.settings import PreprocessorSettings, TokenIds, read_config
from omnistream.inputs.tokenizer import IncrementalDecoder, TextTokenizer
from omnistream.inputs.vision_features import grid_tokens

logger = logging.getLogger(__name__)

Conversation = list[dict[str, Any]]


class Processor:
    """Tokenizer + chat template + media preprocessing for one checkpoint."""

    def __init__(self, tokenizer: TextTokenizer, token_ids: TokenIds, settings: PreprocessorSettings,
                 chat_template: str, limits: InputLimits | None = None, video_fps: float = 2.0) -> None:
        self.tokenizer, self.token_ids, self.settings = tokenizer, token_ids, settings
        self.chat_template = chat_template
        self.limits = limits or InputLimits()
        self.video_fps = video_fps
        self.pad_id = tokenizer.pad_id if tokenizer.pad_id is not None else token_ids.im_end
        self._reserved = {tokenizer.id_to_token(i): name for i, name in
                          ((token_ids.audio, "audio"), (token_ids.image, "image"), (token_ids.video, "video"))
                          if tokenizer.id_to_token(i)}

    @classmethod
    def from_pretrained(cls, folder: str | Path, *, limits: InputLimits | None = None,
                        video_fps: float = 2.0) -> Processor:
        """Read config.json, tokenizer.json, the chat template and preprocessor_config.json from `folder`."""
        folder = Path(folder)
        config = read_config(folder)
        tokenizer = TextTokenizer.from_dir(folder)
        ids = TokenIds.from_config(config, tokenizer.token_to_id)
        settings = PreprocessorSettings.from_checkpoint(folder, config)
        return cls(tokenizer, ids, settings, load_chat_template(folder), limits=limits, video_fps=video_fps)

    # ------------------------------------------------------------------------------------------ text

    def apply_chat_template(self, conversation: Conversation, *, add_generation_prompt: bool = True,
                            tools: list[dict[str, Any]] | None = None, **kwargs: Any) -> str:
        """The prompt string for one conversation (media as single placeholders)."""
        messages, _ = normalize_conversation(conversation, 0, self._reserved)
        return render_chat(self.chat_template, messages, add_generation_prompt=add_generation_prompt,
                           tools=tools, **kwargs)

    def decode(self, ids: Sequence[int] | torch.Tensor, skip_special_tokens: bool = True) -> str:
        if isinstance(ids, torch.Tensor):
            ids = ids.reshape(-1).tolist()
        return self.tokenizer.decode(ids, skip_special_tokens)

    def incremental_decoder(self, skip_special_tokens: bool = True) -> IncrementalDecoder:
        return IncrementalDecoder(self.tokenizer, skip_special_tokens)

    def audio_token_count(self, mel_frames: int) -> int:
        return int(audio_token_count(mel_frames, self.settings.n_window))

    # ------------------------------------------------------------------------------------------ batch

    def __call__(self, conversations: Conversation | Sequence[Conversation], *, use_audio_in_video: bool = False,
                 add_generation_prompt: bool = True, tools: list[dict[str, Any]] | None = None,
                 **template_kwargs: Any) -> ModelInputs:
        """One conversation or a list of them → one left-padded `ModelInputs` batch."""
        batch = _as_batch(conversations)
        prompts, token_rows, media_rows = [], [], []
        for index, conversation in enumerate(batch):
            messages, media = normalize_conversation(conversation, index, self._reserved)
            self.limits.check("max_media_items", len(media), self.limits.max_media_items,
                              f"conversation {index} media part count")
            prompt = render_chat(self.chat_template, messages, add_generation_prompt=add_generation_prompt,
                                 tools=tools, **template_kwargs)
            prompts.append(prompt)
            token_rows.append(self.tokenizer.encode(prompt))
            media_rows.append(media)
        loaded = [[load_part(part, self.settings, self.limits, use_audio_in_video, self.video_fps)
                   for part in media] for media in media_rows]
        for index, (ids, items) in enumerate(zip(token_rows, loaded)):
            estimate = len(ids) + sum(item.estimated_tokens(self.settings) for item in items)
            self.limits.check("max_total_tokens", estimate, self.limits.max_total_tokens,
                              f"conversation {index} prompt length in tokens")
        return self._assemble(prompts, token_rows, media_rows, loaded, use_audio_in_video)

    def _assemble(self, prompts: list[str], token_rows: list[list[int]], media_rows: list[list[MediaPart]],
                  loaded: list[list[LoadedMedia]], use_audio_in_video: bool) -> ModelInputs:
        flat = [item for items in loaded for item in items]
        waves = [item.waveform for item in flat if item.waveform is not None]
        features = mask = None
        audio_tokens: list[int] = []
        if waves:
            features, mask = log_mel_features(waves, self.settings)      # [N, mels, F], [N, F]
            audio_tokens = [int(audio_token_count(int(n), self.settings.n_window)) for n in mask.sum(-1)]
        expanded = self._expand(token_rows, media_rows, loaded, iter(audio_tokens))
        input_ids, attention_mask = self._pad(expanded)
        images = [item for item in flat if item.kind == "image"]
        videos = [item for item in flat if item.kind == "video"]
        image_grid = _grids(images)
        video_grid = _grids(videos)
        seconds = torch.tensor([v.seconds_per_grid for v in videos], dtype=torch.float32) if videos else None
        position_ids, rope_deltas = rope_index(
            input_ids, attention_mask, self.token_ids, image_grid_thw=image_grid, video_grid_thw=video_grid,
            video_second_per_grid=seconds, audio_lengths=mask.sum(-1) if mask is not None else None,
            use_audio_in_video=use_audio_in_video, spatial_merge_size=self.settings.merge_size,
            position_id_per_seconds=self.settings.position_id_per_seconds, n_window=self.settings.n_window)
        return ModelInputs(
            input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids, rope_deltas=rope_deltas,
            input_features=features, feature_attention_mask=mask,
            pixel_values=_stack_pixels(images, self.settings), image_grid_thw=image_grid,
            pixel_values_videos=_stack_pixels(videos, self.settings), video_grid_thw=video_grid,
            video_second_per_grid=seconds, use_audio_in_video=use_audio_in_video,
            audios_per_row=tuple(sum(i.waveform is not None for i in items) for items in loaded),
            images_per_row=tuple(sum(i.kind == "image" for i in items) for items in loaded),
            videos_per_row=tuple(sum(i.kind == "video" for i in items) for items in loaded),
            prompts=tuple(prompts))

    def _expand(self, token_rows: list[list[int]], media_rows: list[list[MediaPart]],
                loaded: list[list[LoadedMedia]], audio_tokens: Any) -> list[list[int]]:
        merge = self.settings.merge_size
        rows = []
        for index, (ids, media, items) in enumerate(zip(token_rows, media_rows, loaded)):
            expansions = []
            for item in items:
                audio = next(audio_tokens) if item.waveform is not None else 0
                if item.kind == "audio":
                    expansions.append(Expansion(tokens=audio))
                else:
                    expansions.append(Expansion(tokens=grid_tokens(item.grid, merge), audio_tokens=audio,
                                                grid=item.grid, seconds_per_grid=item.seconds_per_grid))
            row = expand_placeholders(ids, media, expansions, self.token_ids, merge,
                                      self.settings.position_id_per_seconds, f"conversation {index}")
            self.limits.check("max_total_tokens", len(row), self.limits.max_total_tokens,
                              f"conversation {index} prompt length in tokens")
            rows.append(row)
        return rows

    def _pad(self, rows: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
        """Left padding with the tokenizer's pad token, as the reference processor."""
        length = max(len(r) for r in rows)
        input_ids = torch.full((len(rows), length), self.pad_id, dtype=torch.int64)
        attention_mask = torch.zeros((len(rows), length), dtype=torch.int64)
        for i, row in enumerate(rows):
            if row:
                input_ids[i, length - len(row):] = torch.tensor(row, dtype=torch.int64)
                attention_mask[i, length - len(row):] = 1
        return input_ids, attention_mask


def _as_batch(conversations: Any) -> list[Conversation]:
    """A single conversation is a list of message dicts; a batch is a list of such lists."""
    if isinstance(conversations, (list, tuple)) and conversations and all(
            isinstance(c, (list, tuple)) for c in conversations):
        return list(conversations)  # type: ignore[arg-type]
    if isinstance(conversations, (list, tuple)) and conversations:
        return [conversations]  # type: ignore[list-item]
    raise OmniInputError("expected a conversation (list of messages) or a non-empty list of conversations",
                         param="messages")


def _grids(items: list[LoadedMedia]) -> torch.Tensor | None:
    return torch.tensor([item.grid for item in items], dtype=torch.int64) if items else None


def _stack_pixels(items: list[LoadedMedia], settings: PreprocessorSettings) -> torch.Tensor | None:
    if not items:
        return None
    return torch.from_numpy(np.concatenate([pixels(item, settings) for item in items], axis=0))
