"""Model configuration, read from a checkpoint's config.json.

One frozen dataclass per component; field names are config.json keys. A field that defines the
checkpoint has no default, so its value always comes from the file: transformers' class defaults are
Qwen2.5-Omni leftovers and wrong for Qwen3-Omni (spec §7.1). Defaults exist only where the reference
treats a key as optional. Unknown keys are kept in `extra` (reported once at debug level) and the whole
original section is kept in `raw`, so `to_dict` round-trips exactly what was read.

Both on-disk rope spellings are accepted (spec §6): legacy `rope_scaling` + top-level `rope_theta`, and
transformers v5's folded `rope_parameters`.
"""
from __future__ import annotations

import copy
import dataclasses
import json
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from omnistream.errors import ConfigError

logger = logging.getLogger(__name__)

# Keys every transformers config carries that say nothing about the model's shape.
_BOOKKEEPING_KEYS = frozenset({
    "architectures", "model_type", "transformers_version", "_name_or_path", "dtype", "torch_dtype",
    "id2label", "label2id", "output_attentions", "output_hidden_states", "return_dict", "problem_type",
    "is_encoder_decoder", "chunk_size_feed_forward", "use_cache", "initializer_range", "tie_word_embeddings",
    "attention_dropout", "dropout", "activation_dropout", "output_router_logits", "router_aux_loss_coef",
    "pad_token_id", "bos_token_id", "eos_token_id", "use_sliding_window", "max_window_layers", "layer_types",
    "rope_scaling", "rope_parameters", "rope_theta", "sliding_window", "auto_map",
})


def _read_section(cls: type, d: Any, path: str, aliases: dict[str, str] | None = None,
                  derived: dict[str, Any] | None = None) -> dict[str, Any]:
    """Map a config.json section onto `cls`'s fields: required fields must be present, aliases accepted."""
    if not isinstance(d, dict):
        raise ConfigError(f"{path} must be a JSON object, got {type(d).__name__}", param=path)
    aliases = aliases or {}
    derived = derived or {}
    values: dict[str, Any] = {}
    used: set[str] = set()
    for f in dataclasses.fields(cls):
        if f.name in ("raw", "extra") or not f.init:
            continue
        if f.name in derived:
            values[f.name] = derived[f.name]
            continue
        keys = [f.name] + [alias for alias, target in aliases.items() if target == f.name]
        present = [k for k in keys if k in d]
        if present:
            values[f.name] = d[present[0]]
            used.update(present)
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise ConfigError(f"{path}.{f.name} is missing from config.json", param=f"{path}.{f.name}")
    extra = {k: v for k, v in d.items() if k not in used and k not in _BOOKKEEPING_KEYS
             and not k.endswith("_config")}
    if extra:
        logger.debug("%s: keeping unknown config keys %s", path, sorted(extra))
    values["extra"] = extra
    values["raw"] = copy.deepcopy(d)
    return values


def _rope(d: dict[str, Any], path: str) -> dict[str, Any]:
    """Rope settings from either spelling: `rope_parameters` (v5) or `rope_scaling` + `rope_theta` (on disk)."""
    params = d.get("rope_parameters") or {}
    scaling = d.get("rope_scaling") or {}
    theta = params.get("rope_theta", d.get("rope_theta"))
    if theta is None:
        raise ConfigError(f"{path}.rope_theta is missing (neither rope_parameters nor rope_theta given)",
                          param=f"{path}.rope_theta")
    section = params.get("mrope_section", scaling.get("mrope_section"))
    interleaved = bool(params.get("interleaved", params.get("mrope_interleaved",
                       scaling.get("interleaved", scaling.get("mrope_interleaved", False)))))
    return {"rope_theta": float(theta),
            "mrope_section": tuple(section) if section is not None else None,
            "mrope_interleaved": interleaved}


def _check(condition: bool, path: str, message: str) -> None:
    if not condition:
        raise ConfigError(f"{path}: {message}", param=path)


def _positive(cfg: Any, path: str, *names: str) -> None:
    for name in names:
        value = getattr(cfg, name)
        _check(isinstance(value, int) and not isinstance(value, bool) and value > 0,
               f"{path}.{name}", f"must be a positive integer, got {value!r}")


@dataclass(frozen=True)
class AudioEncoderConfig:
    """AuT audio encoder (`thinker_config.audio_config`, spec §2.2)."""
    num_mel_bins: int
    encoder_layers: int
    encoder_attention_heads: int
    encoder_ffn_dim: int
    d_model: int
    downsample_hidden_size: int
    output_dim: int
    n_window: int
    n_window_infer: int
    max_source_positions: int
    conv_chunksize: int = 500
    activation_function: str = "gelu"
    scale_embedding: bool = False
    extra: dict[str, Any] = field(default_factory=dict, compare=False)
    raw: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def from_dict(cls, d: dict[str, Any], path: str = "thinker_config.audio_config") -> AudioEncoderConfig:
        cfg = cls(**_read_section(cls, d, path))
        _positive(cfg, path, "num_mel_bins", "encoder_layers", "encoder_attention_heads", "encoder_ffn_dim",
                  "d_model", "downsample_hidden_size", "output_dim", "n_window", "n_window_infer",
                  "max_source_positions")
        _check(cfg.d_model % cfg.encoder_attention_heads == 0, f"{path}.encoder_attention_heads",
               f"d_model {cfg.d_model} is not divisible by {cfg.encoder_attention_heads} heads")
        _check(cfg.n_window_infer % (2 * cfg.n_window) == 0, f"{path}.n_window_infer",
               f"{cfg.n_window_infer} must be a multiple of 2*n_window = {2 * cfg.n_window}")
        return cfg

    @property
    def head_dim(self) -> int:
        return self.d_model // self.encoder_attention_heads


@dataclass(frozen=True)
class VisionEncoderConfig:
    """Vision encoder (`thinker_config.vision_config`, spec §2.3)."""
    depth: int
    hidden_size: int
    intermediate_size: int
    num_heads: int
    patch_size: int
    temporal_patch_size: int
    spatial_merge_size: int
    out_hidden_size: int
    num_position_embeddings: int
    deepstack_visual_indexes: tuple[int, ...]
    in_channels: int = 3
    hidden_act: str = "gelu_pytorch_tanh"
    extra: dict[str, Any] = field(default_factory=dict, compare=False)
    raw: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def from_dict(cls, d: dict[str, Any], path: str = "thinker_config.vision_config") -> VisionEncoderConfig:
        values = _read_section(cls, d, path)
        values["deepstack_visual_indexes"] = tuple(values["deepstack_visual_indexes"])
        cfg = cls(**values)
        _positive(cfg, path, "depth", "hidden_size", "intermediate_size", "num_heads", "patch_size",
                  "temporal_patch_size", "spatial_merge_size", "out_hidden_size", "num_position_embeddings")
        _check(cfg.hidden_size % cfg.num_heads == 0, f"{path}.num_heads",
               f"hidden_size {cfg.hidden_size} is not divisible by {cfg.num_heads} heads")
        side = math.isqrt(cfg.num_position_embeddings)
        _check(side * side == cfg.num_position_embeddings, f"{path}.num_position_embeddings",
               f"{cfg.num_position_embeddings} is not a perfect square")
        for i in cfg.deepstack_visual_indexes:
            _check(0 <= i < cfg.depth, f"{path}.deepstack_visual_indexes",
                   f"index {i} is outside the {cfg.depth} vision blocks")
        return cfg

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_heads

    @property
    def patch_dim(self) -> int:
        """Length of one flattened patch row of `pixel_values`: C · temporal · patch · patch."""
        return self.in_channels * self.temporal_patch_size * self.patch_size ** 2


@dataclass(frozen=True)
class TextDecoderConfig:
    """A Qwen3-MoE style decoder: the thinker's language model and the talker's decoder (spec §2.1, §2.4)."""
    vocab_size: int
    hidden_size: int
    intermediate_size: int
    num_hidden_layers: int
    num_attention_heads: int
    num_key_value_heads: int
    moe_intermediate_size: int
    num_experts: int
    num_experts_per_tok: int
    norm_topk_prob: bool
    rms_norm_eps: float
    max_position_embeddings: int
    rope_theta: float
    mrope_section: tuple[int, ...] | None
    mrope_interleaved: bool
    head_dim: int = 0                       # 0 → hidden_size // num_attention_heads, as the reference
    decoder_sparse_step: int = 1
    mlp_only_layers: tuple[int, ...] = ()
    shared_expert_intermediate_size: int = 0
    hidden_act: str = "silu"
    attention_bias: bool = False
    extra: dict[str, Any] = field(default_factory=dict, compare=False)
    raw: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    ALIASES: ClassVar[dict[str, str]] = {"num_local_experts": "num_experts"}

    @classmethod
    def from_dict(cls, d: dict[str, Any], path: str) -> TextDecoderConfig:
        values = _read_section(cls, d, path, cls.ALIASES, derived=_rope(d, path))
        values["mlp_only_layers"] = tuple(values.get("mlp_only_layers") or ())
        if not values.get("head_dim"):
            heads = values["num_attention_heads"]
            _check(isinstance(heads, int) and heads > 0, f"{path}.num_attention_heads",
                   f"must be a positive integer, got {heads!r}")
            values["head_dim"] = values["hidden_size"] // heads
        cfg = cls(**values)
        _positive(cfg, path, "vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads",
                  "num_key_value_heads", "num_experts", "num_experts_per_tok", "head_dim", "decoder_sparse_step")
        _check(cfg.num_attention_heads % cfg.num_key_value_heads == 0, f"{path}.num_key_value_heads",
               f"{cfg.num_attention_heads} attention heads are not a multiple of {cfg.num_key_value_heads} kv heads")
        _check(cfg.num_experts_per_tok <= cfg.num_experts, f"{path}.num_experts_per_tok",
               f"({cfg.num_experts_per_tok}) > num_experts ({cfg.num_experts})")
        if cfg.mrope_section is not None:
            _check(sum(cfg.mrope_section) == cfg.head_dim // 2, f"{path}.rope_scaling.mrope_section",
                   f"{list(cfg.mrope_section)} sums to {sum(cfg.mrope_section)}, expected head_dim/2 = {cfg.head_dim // 2}")
        return cfg

    def is_moe_layer(self, index: int) -> bool:
        """The reference's rule: MoE unless listed in mlp_only_layers, every `decoder_sparse_step` layers."""
        return index not in self.mlp_only_layers and (index + 1) % self.decoder_sparse_step == 0


@dataclass(frozen=True)
class ThinkerConfig:
    """The Thinker: audio encoder + vision encoder + MoE language model (`thinker_config`)."""
    audio_config: AudioEncoderConfig
    vision_config: VisionEncoderConfig
    text_config: TextDecoderConfig
    audio_token_id: int
    image_token_id: int
    video_token_id: int
    audio_start_token_id: int
    position_id_per_seconds: float
    audio_end_token_id: int | None = None
    vision_start_token_id: int | None = None
    vision_end_token_id: int | None = None
    extra: dict[str, Any] = field(default_factory=dict, compare=False)
    raw: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def from_dict(cls, d: dict[str, Any], path: str = "thinker_config") -> ThinkerConfig:
        subs = {
            "audio_config": AudioEncoderConfig.from_dict(_sub(d, "audio_config", path), f"{path}.audio_config"),
            "vision_config": VisionEncoderConfig.from_dict(_sub(d, "vision_config", path), f"{path}.vision_config"),
            "text_config": TextDecoderConfig.from_dict(_sub(d, "text_config", path), f"{path}.text_config"),
        }
        cfg = cls(**_read_section(cls, d, path, derived=subs))
        hidden = cfg.text_config.hidden_size
        _check(cfg.audio_config.output_dim == hidden, f"{path}.audio_config.output_dim",
               f"{cfg.audio_config.output_dim} != text_config.hidden_size {hidden}")
        _check(cfg.vision_config.out_hidden_size == hidden, f"{path}.vision_config.out_hidden_size",
               f"{cfg.vision_config.out_hidden_size} != text_config.hidden_size {hidden}")
        _check(len(cfg.vision_config.deepstack_visual_indexes) <= cfg.text_config.num_hidden_layers,
               f"{path}.vision_config.deepstack_visual_indexes",
               "more deepstack taps than thinker decoder layers")
        return cfg


@dataclass(frozen=True)
class CodePredictorConfig:
    """The talker's code predictor (MTP) for the residual codebooks (spec §2.5)."""
    vocab_size: int
    hidden_size: int
    intermediate_size: int
    num_hidden_layers: int
    num_attention_heads: int
    num_key_value_heads: int
    rms_norm_eps: float
    num_code_groups: int
    rope_theta: float
    max_position_embeddings: int = 32768
    head_dim: int = 0
    hidden_act: str = "silu"
    attention_bias: bool = False
    extra: dict[str, Any] = field(default_factory=dict, compare=False)
    raw: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def from_dict(cls, d: dict[str, Any], path: str = "talker_config.code_predictor_config") -> CodePredictorConfig:
        rope = _rope(d, path)
        values = _read_section(cls, d, path, derived={"rope_theta": rope["rope_theta"]})
        if not values.get("head_dim"):
            values["head_dim"] = values["hidden_size"] // values["num_attention_heads"]
        cfg = cls(**values)
        _positive(cfg, path, "vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers",
                  "num_attention_heads", "num_key_value_heads", "num_code_groups", "head_dim")
        _check(cfg.num_attention_heads % cfg.num_key_value_heads == 0, f"{path}.num_key_value_heads",
               f"{cfg.num_attention_heads} heads are not a multiple of {cfg.num_key_value_heads} kv heads")
        _check(cfg.num_code_groups >= 2, f"{path}.num_code_groups", "needs at least 2 codebooks")
        return cfg


@dataclass(frozen=True)
class TalkerConfig:
    """The Talker: MoE decoder over codec frames, with its code predictor (`talker_config`, spec §2.4)."""
    text_config: TextDecoderConfig
    code_predictor_config: CodePredictorConfig
    num_code_groups: int
    thinker_hidden_size: int
    accept_hidden_layer: int
    codec_eos_token_id: int
    codec_pad_id: int
    codec_bos_id: int
    codec_nothink_id: int
    codec_think_bos_id: int
    codec_think_eos_id: int
    position_id_per_seconds: float
    speaker_id: dict[str, int] = field(default_factory=dict)
    audio_token_id: int | None = None
    image_token_id: int | None = None
    video_token_id: int | None = None
    vision_start_token_id: int | None = None
    audio_start_token_id: int | None = None
    extra: dict[str, Any] = field(default_factory=dict, compare=False)
    raw: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def from_dict(cls, d: dict[str, Any], path: str = "talker_config") -> TalkerConfig:
        subs = {
            "text_config": TextDecoderConfig.from_dict(_sub(d, "text_config", path), f"{path}.text_config"),
            "code_predictor_config": CodePredictorConfig.from_dict(
                _sub(d, "code_predictor_config", path), f"{path}.code_predictor_config"),
        }
        values = _read_section(cls, d, path, derived=subs)
        values["speaker_id"] = {str(k).lower(): int(v) for k, v in (values.get("speaker_id") or {}).items()}
        cfg = cls(**values)
        _check(cfg.num_code_groups == cfg.code_predictor_config.num_code_groups,
               f"{path}.code_predictor_config.num_code_groups",
               f"{cfg.code_predictor_config.num_code_groups} != talker num_code_groups {cfg.num_code_groups}")
        return cfg

    @property
    def codebook_size(self) -> int:
        """Codes 0..codebook_size-1 are audio; the rest of the codec vocabulary are special ids (spec §4.4)."""
        return self.code_predictor_config.vocab_size


@dataclass(frozen=True)
class Code2WavConfig:
    """The causal codec decoder (`code2wav_config`, spec §2.6)."""
    codebook_size: int
    num_quantizers: int
    hidden_size: int
    intermediate_size: int
    num_hidden_layers: int
    num_attention_heads: int
    num_key_value_heads: int
    rms_norm_eps: float
    rope_theta: float
    sliding_window: int
    decoder_dim: int
    upsample_rates: tuple[int, ...]
    upsampling_ratios: tuple[int, ...]
    max_position_embeddings: int = 8000
    layer_scale_initial_scale: float = 0.01
    head_dim: int = 0
    hidden_act: str = "silu"
    attention_bias: bool = False
    extra: dict[str, Any] = field(default_factory=dict, compare=False)
    raw: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def from_dict(cls, d: dict[str, Any], path: str = "code2wav_config") -> Code2WavConfig:
        if "sliding_window" not in d:
            raise ConfigError(f"{path}.sliding_window is missing from config.json", param=f"{path}.sliding_window")
        rope = _rope(d, path)
        values = _read_section(cls, d, path, derived={"rope_theta": rope["rope_theta"],
                                                      "sliding_window": d["sliding_window"]})
        values["upsample_rates"] = tuple(values["upsample_rates"])
        values["upsampling_ratios"] = tuple(values["upsampling_ratios"])
        if not values.get("head_dim"):
            values["head_dim"] = values["hidden_size"] // values["num_attention_heads"]
        cfg = cls(**values)
        _positive(cfg, path, "codebook_size", "num_quantizers", "hidden_size", "intermediate_size",
                  "num_hidden_layers", "num_attention_heads", "num_key_value_heads", "sliding_window", "decoder_dim")
        _check(cfg.decoder_dim % (2 ** len(cfg.upsample_rates)) == 0, f"{path}.decoder_dim",
               f"{cfg.decoder_dim} must be divisible by 2**{len(cfg.upsample_rates)} (channels halve per block)")
        return cfg

    @property
    def total_upsample(self) -> int:
        """Output samples per codec frame (1920 for the real model: 2·2·8·5·4·3)."""
        return math.prod(self.upsampling_ratios) * math.prod(self.upsample_rates)


@dataclass(frozen=True)
class OmniConfig:
    """A whole checkpoint's config.json. `talker_config`/`code2wav_config` are None for thinker-only variants."""
    thinker_config: ThinkerConfig
    enable_audio_output: bool
    im_start_token_id: int
    im_end_token_id: int
    tts_pad_token_id: int
    tts_bos_token_id: int
    tts_eos_token_id: int
    system_token_id: int
    user_token_id: int
    assistant_token_id: int
    talker_config: TalkerConfig | None = None
    code2wav_config: Code2WavConfig | None = None
    extra: dict[str, Any] = field(default_factory=dict, compare=False)
    raw: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> OmniConfig:
        if not isinstance(d, dict):
            raise ConfigError("config.json must hold a JSON object")
        if d.get("model_type") not in (None, "qwen3_omni_moe"):
            raise ConfigError(f"model_type {d.get('model_type')!r} is not 'qwen3_omni_moe'", param="model_type")
        audio_out = bool(d.get("enable_audio_output", "talker_config" in d))
        subs: dict[str, Any] = {
            "thinker_config": ThinkerConfig.from_dict(_sub(d, "thinker_config", "")),
            "enable_audio_output": audio_out,
            "talker_config": None,
            "code2wav_config": None,
        }
        if audio_out:
            subs["talker_config"] = TalkerConfig.from_dict(_sub(d, "talker_config", ""))
            subs["code2wav_config"] = Code2WavConfig.from_dict(_sub(d, "code2wav_config", ""))
        cfg = cls(**_read_section(cls, d, "config", derived=subs))
        if cfg.talker_config is not None and cfg.code2wav_config is not None:
            cfg._check_speech_sizes()
        return cfg

    def _check_speech_sizes(self) -> None:
        talker, c2w, thinker = self.talker_config, self.code2wav_config, self.thinker_config
        if talker is None or c2w is None:
            raise ConfigError("enable_audio_output needs both talker_config and code2wav_config",
                              param="enable_audio_output")
        _check(talker.thinker_hidden_size == thinker.text_config.hidden_size, "talker_config.thinker_hidden_size",
               f"{talker.thinker_hidden_size} != thinker hidden_size {thinker.text_config.hidden_size}")
        _check(1 <= talker.accept_hidden_layer <= thinker.text_config.num_hidden_layers,
               "talker_config.accept_hidden_layer",
               f"{talker.accept_hidden_layer} is outside 1..{thinker.text_config.num_hidden_layers} thinker layers")
        _check(talker.code_predictor_config.vocab_size == c2w.codebook_size,
               "talker_config.code_predictor_config.vocab_size",
               f"{talker.code_predictor_config.vocab_size} != code2wav_config.codebook_size {c2w.codebook_size}")
        _check(talker.num_code_groups == c2w.num_quantizers, "code2wav_config.num_quantizers",
               f"{c2w.num_quantizers} != talker num_code_groups {talker.num_code_groups}")
        _check(talker.text_config.vocab_size > c2w.codebook_size, "talker_config.text_config.vocab_size",
               f"{talker.text_config.vocab_size} leaves no room for codec special ids above {c2w.codebook_size}")

    @classmethod
    def from_file(cls, path: str | Path) -> OmniConfig:
        path = Path(path)
        if path.is_dir():
            path = path / "config.json"
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            raise ConfigError(f"no config.json at {path}", param="config.json") from None
        except json.JSONDecodeError as e:
            raise ConfigError(f"{path} is not valid JSON: {e}", param="config.json") from None
        return cls.from_dict(data)

    def to_dict(self) -> dict[str, Any]:
        return copy.deepcopy(self.raw)

    def save(self, folder: str | Path) -> None:
        Path(folder, "config.json").write_text(json.dumps(self.raw, indent=2, sort_keys=True) + "\n")

    @property
    def has_speech(self) -> bool:
        return self.talker_config is not None and self.code2wav_config is not None


def _sub(d: dict[str, Any], key: str, path: str) -> dict[str, Any]:
    full = f"{path}.{key}" if path else key
    if key not in d or d[key] is None:
        raise ConfigError(f"{full} is missing from config.json", param=full)
    return d[key]
