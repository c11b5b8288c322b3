"""Generation defaults from the checkpoint's `generation_config.json`, read as the reference reads it.

Keys absent from the file take transformers' GenerationConfig defaults (do_sample false, temperature 1.0,
top_k 50, top_p 1.0, repetition_penalty 1.0), so a request that sets nothing generates what the reference's
`generate()` would: greedy unless the checkpoint asks for sampling. The thinker's end of text is
`<|im_end|>` (the reference's thinker_eos_token_id), plus any eos ids the file lists.
"""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from omnistream.engine.request import SamplingParams, TalkerSamplingParams
from omnistream.errors import CheckpointError, RequestError

logger = logging.getLogger(__name__)

# SamplingParams fields a caller may leave unset (None) to get the checkpoint's default.
THINKER_KEYS = ("temperature", "top_p", "top_k", "repetition_penalty", "max_new_tokens")
TALKER_PREFIX = "talker_"


@dataclass(frozen=True)
class GenerationDefaults:
    temperature: float = 0.0              # do_sample false → greedy
    top_p: float = 1.0
    top_k: int = 0
    repetition_penalty: float = 1.0
    max_new_tokens: int | None = None
    eos_token_ids: tuple[int, ...] = ()

    @classmethod
    def from_checkpoint(cls, folder: str | Path | None, im_end_token_id: int) -> GenerationDefaults:
        data: dict[str, Any] = {}
        path = Path(folder, "generation_config.json") if folder is not None else None
        if path is not None and path.is_file():
            try:
                data = json.loads(path.read_text())
            except json.JSONDecodeError as e:
                raise CheckpointError(f"{path} is not valid JSON: {e}", param="generation_config.json") from None
        return cls.from_dict(data, im_end_token_id)

    @classmethod
    def from_dict(cls, data: dict[str, Any], im_end_token_id: int) -> GenerationDefaults:
        eos = data.get("eos_token_id")
        eos_ids = tuple(eos if isinstance(eos, list) else [eos] if isinstance(eos, int) else [])
        sampling = bool(data.get("do_sample", False))
        return cls(
            temperature=float(data.get("temperature", 1.0)) if sampling else 0.0,
            top_p=float(data.get("top_p", 1.0)) if sampling else 1.0,
            top_k=int(data.get("top_k", 50)) if sampling else 0,
            repetition_penalty=float(data.get("repetition_penalty", 1.0)),
            max_new_tokens=int(data["max_new_tokens"]) if data.get("max_new_tokens") else None,
            eos_token_ids=tuple(dict.fromkeys((im_end_token_id, *eos_ids))),
        )

    def sampling_params(self, **overrides: Any) -> SamplingParams:
        """SamplingParams with every unset (None) knob taken from these defaults.

        Talker knobs are given with a `talker_` prefix (talker_temperature, talker_top_k, …,
        talker_predictor_top_p); unknown names raise RequestError.
        """
        given = {k: v for k, v in overrides.items() if v is not None}
        talker_names = {f.name for f in fields(TalkerSamplingParams)}
        talker = {}
        for key in [k for k in given if k.startswith(TALKER_PREFIX)]:
            name = key[len(TALKER_PREFIX):]
            if name not in talker_names:
                raise RequestError(f"unknown talker parameter {key!r}", param=key)
            talker[name] = given.pop(key)
        known = {f.name for f in fields(SamplingParams)}
        unknown = sorted(set(given) - known)
        if unknown:
            raise RequestError(f"unknown generation parameter(s) {unknown}", param=unknown[0])
        for key in THINKER_KEYS:
            given.setdefault(key, getattr(self, key))
        if talker:
            given["talker"] = TalkerSamplingParams(**talker)
        return SamplingParams(**given)
