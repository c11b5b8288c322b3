"""What the inputs layer reads from a checkpoint: special-token ids and preprocessing settings.

Nothing here is hard-coded to Qwen3-Omni's vocabulary: ids come from config.json (top level and
`thinker_config`), falling back to the tokenizer's id for the canonical token string only where the
config does not carry a key (the released config has no `audio_end_token_id`, for instance). Our
built-in small model uses a small vocabulary with different ids, so this matters.

Preprocessing settings come from `preprocessor_config.json` when present, else the values the
released checkpoints ship (spec §0 [PP], §4.1-4.3), listed once in `PreprocessorSettings`.
"""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Callable

from omnistream.config import OmniConfig
from omnistream.errors import ConfigError

logger = logging.getLogger(__name__)

# Canonical token strings (spec §4.4), used only to look ids up in the tokenizer when config.json lacks a key.
TOKEN_STRINGS = {
    "im_start": "<|im_start|>", "im_end": "<|im_end|>", "pad": "<|endoftext|>",
    "audio": "<|audio_pad|>", "image": "<|image_pad|>", "video": "<|video_pad|>",
    "audio_start": "<|audio_start|>", "audio_end": "<|audio_end|>",
    "vision_start": "<|vision_start|>", "vision_end": "<|vision_end|>",
    "tts_pad": "<tts_pad>", "tts_bos": "<tts_text_bos>", "tts_eos": "<tts_text_eod>",
}


@dataclass(frozen=True)
class TokenIds:
    """Every special id the inputs layer, the engine and the talker prompt logic need."""
    im_start: int
    im_end: int
    pad: int
    audio: int
    image: int
    video: int
    audio_start: int
    audio_end: int
    vision_start: int
    vision_end: int
    system: int | None = None
    user: int | None = None
    assistant: int | None = None
    tts_pad: int | None = None
    tts_bos: int | None = None
    tts_eos: int | None = None

    @classmethod
    def from_config(cls, config: OmniConfig, token_to_id: Callable[[str], int | None]) -> TokenIds:
        """Ids from config.json; keys the config lacks are looked up by their canonical token string."""
        thinker = config.thinker_config
        known: dict[str, int | None] = {
            "im_start": config.im_start_token_id, "im_end": config.im_end_token_id,
            "audio": thinker.audio_token_id, "image": thinker.image_token_id, "video": thinker.video_token_id,
            "audio_start": thinker.audio_start_token_id, "audio_end": thinker.audio_end_token_id,
            "vision_start": thinker.vision_start_token_id, "vision_end": thinker.vision_end_token_id,
            "system": config.system_token_id, "user": config.user_token_id,
            "assistant": config.assistant_token_id, "tts_pad": config.tts_pad_token_id,
            "tts_bos": config.tts_bos_token_id, "tts_eos": config.tts_eos_token_id, "pad": None,
        }
        values: dict[str, int | None] = {}
        for f in fields(cls):
            value = known.get(f.name)
            if value is None and f.name in TOKEN_STRINGS:
                value = token_to_id(TOKEN_STRINGS[f.name])
                if value is not None:
                    logger.debug("token id %s=%d taken from the tokenizer (not in config.json)", f.name, value)
            if value is None and f.default is not None:
                raise ConfigError(f"no id for {f.name}: config.json lacks it and the tokenizer has no "
                                  f"{TOKEN_STRINGS.get(f.name)!r}", param=f.name)
            values[f.name] = int(value) if value is not None else None
        return cls(**values)  # type: ignore[arg-type]

    @property
    def media_placeholders(self) -> frozenset[int]:
        return frozenset({self.audio, self.image, self.video})


@dataclass(frozen=True)
class PreprocessorSettings:
    """Audio feature and pixel preprocessing settings (preprocessor_config.json, spec §4.1-4.3)."""
    sampling_rate: int = 16000
    feature_size: int = 128           # mel bins
    n_fft: int = 400
    hop_length: int = 160
    padding_value: float = 0.0
    dither: float = 0.0
    min_pixels: int = 3136            # image smart-resize bounds (spec §4.2)
    max_pixels: int = 12_845_056
    # Per-frame video bounds: the reference processor's own default (spec §4.3), which it applies whatever the
    # checkpoint says. A model trained with other bounds (the built-in model's from-nothing recipe: frames kept
    # at their drawn 224x224, a third of the tokens) names them in preprocessor_config.json as
    # video_min_pixels / video_max_pixels; released checkpoints have neither key.
    video_min_pixels: int = 128 * 32 * 32
    video_max_pixels: int = 768 * 32 * 32
    image_mean: tuple[float, float, float] = (0.5, 0.5, 0.5)
    image_std: tuple[float, float, float] = (0.5, 0.5, 0.5)
    rescale_factor: float = 1 / 255
    patch_size: int = 16
    temporal_patch_size: int = 2
    merge_size: int = 2
    n_window: int = 50                # audio encoder chunk = 2·n_window mel frames (spec §2.2)
    position_id_per_seconds: float = 13.0

    @classmethod
    def from_checkpoint(cls, folder: str | Path, config: OmniConfig | None) -> PreprocessorSettings:
        """preprocessor_config.json values over the released defaults; patch/merge sizes from config.json."""
        pp = _read_json(Path(folder) / "preprocessor_config.json")
        values: dict[str, Any] = {}
        for key in ("sampling_rate", "feature_size", "n_fft", "hop_length", "padding_value", "dither",
                    "min_pixels", "max_pixels", "video_min_pixels", "video_max_pixels", "rescale_factor",
                    "patch_size", "temporal_patch_size", "merge_size"):
            if key in pp:
                values[key] = pp[key]
        size = pp.get("size") or {}
        if "shortest_edge" in size and "longest_edge" in size:  # transformers v5 spelling of min/max pixels
            values["min_pixels"], values["max_pixels"] = size["shortest_edge"], size["longest_edge"]
        for key in ("image_mean", "image_std"):
            if key in pp:
                values[key] = tuple(float(v) for v in pp[key])
        if config is not None:
            vision = config.thinker_config.vision_config
            values.update(patch_size=vision.patch_size, temporal_patch_size=vision.temporal_patch_size,
                          merge_size=vision.spatial_merge_size,
                          n_window=config.thinker_config.audio_config.n_window,
                          position_id_per_seconds=float(config.thinker_config.position_id_per_seconds))
        settings = cls(**values)
        settings.validate()
        return settings

    def validate(self) -> None:
        for name in ("sampling_rate", "feature_size", "n_fft", "hop_length", "min_pixels", "max_pixels",
                     "video_min_pixels", "video_max_pixels", "patch_size", "temporal_patch_size", "merge_size",
                     "n_window"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"preprocessor setting {name} must be positive, got {getattr(self, name)}",
                                  param=name)
        for low, high in (("min_pixels", "max_pixels"), ("video_min_pixels", "video_max_pixels")):
            if getattr(self, low) > getattr(self, high):
                raise ConfigError(f"{low} {getattr(self, low)} > {high} {getattr(self, high)}", param=low)

    @property
    def resize_factor(self) -> int:
        """Images are resized to multiples of patch·merge (32 for the released model)."""
        return self.patch_size * self.merge_size


def read_config(folder: str | Path) -> OmniConfig:
    """The checkpoint's config.json as an OmniConfig (one place, so the source can change later)."""
    return OmniConfig.from_file(Path(folder))


def _read_json(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise ConfigError(f"{path.name} is not readable JSON: {e}", param=path.name) from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path.name} must hold a JSON object", param=path.name)
    return data
