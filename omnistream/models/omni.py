"""OmniModel: the whole checkpoint — `thinker`, and `talker` + `code2wav` when the config has speech.

    model = OmniModel.from_pretrained("/models/Qwen3-Omni-30B-A3B-Instruct", dtype=torch.bfloat16, device="cuda")

Module tree = checkpoint keys, so loading is `checkpoint.load_checkpoint` plus its declared transforms.
"""
from __future__ import annotations

import logging
from pathlib import Path

import torch
from torch import nn

from omnistream.checkpoint import load_checkpoint, params_on_meta, save_checkpoint
from omnistream.config import OmniConfig
from omnistream.models.thinker import Thinker, optional_class

logger = logging.getLogger(__name__)


class OmniModel(nn.Module):
    """Thinker (+ Talker and Code2Wav for checkpoints with audio output)."""

    def __init__(self, config: OmniConfig) -> None:
        super().__init__()
        self.config = config
        self.thinker = Thinker(config.thinker_config)
        self.talker: nn.Module | None = None
        self.code2wav: nn.Module | None = None
        if config.has_speech:
            talker_cls = optional_class("omnistream.models.talker", "Talker")
            code2wav_cls = optional_class("omnistream.models.code2wav", "Code2Wav")
            self.talker = talker_cls(config.talker_config) if talker_cls is not None else None
            self.code2wav = code2wav_cls(config.code2wav_config) if code2wav_cls is not None else None

    @property
    def has_speech(self) -> bool:
        return self.talker is not None and self.code2wav is not None

    def skipped_prefixes(self) -> tuple[str, ...]:
        """Checkpoint prefixes this model does not hold: speech parts of a thinker-only config (as the reference
        ignores them), and any component whose module is not available in this build (logged)."""
        skipped = [] if self.config.has_speech else ["talker.", "code2wav."]
        absent = [f"thinker.{name}." for name in self.thinker.missing_components()]
        if self.config.has_speech:
            absent += [f"{name}." for name in ("talker", "code2wav") if getattr(self, name) is None]
        if absent:
            logger.warning("omnistream build lacks %s: their checkpoint tensors are skipped", absent)
        return tuple(skipped + absent)

    @classmethod
    def from_config(cls, config: OmniConfig) -> OmniModel:
        """The module skeleton with every parameter on the `meta` device (no memory)."""
        with params_on_meta():
            return cls(config)

    @classmethod
    def from_pretrained(cls, folder: str | Path, dtype: torch.dtype = torch.bfloat16,
                        device: torch.device | str = "cpu", progress: bool = False) -> OmniModel:
        """Load config.json and the safetensors weights of a checkpoint folder (strict, memory-mapped)."""
        config = OmniConfig.from_file(folder)
        model = cls.from_config(config)
        load_checkpoint(model, folder, dtype, device, ignore_prefixes=model.skipped_prefixes(), progress=progress)
        return model.eval()

    def save_pretrained(self, folder: str | Path, max_shard_bytes: int | None = None,
                        dtype: torch.dtype | None = None) -> list[Path]:
        """Write config.json and the official on-disk tensor layout (loadable by transformers too)."""
        return save_checkpoint(self, folder, config=self.config, max_shard_bytes=max_shard_bytes, dtype=dtype)
