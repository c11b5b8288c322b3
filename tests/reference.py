"""Random-weight reference models built with transformers (test-only), saved as checkpoints.

Parity tests build a small `Qwen3OmniMoeForConditionalGeneration`, give every weight a non-trivial random
value (spec §10: transformers' init leaves talker routers at zero, code2wav layer scales and SnakeBeta
parameters degenerate, and the waveform ~1e-7), `save_pretrained` it, and load the folder with omnistream.

    cfg = tiny_config(thinker_layers=3, experts=8, top_k=2)
    folder = build_reference_checkpoint(tmp_path, cfg, seed=0)
    ref = load_reference(folder)           # the transformers model, eval mode, float32
"""
from __future__ import annotations

import copy
import json
import math
from pathlib import Path
from typing import Any

import torch

# Real special-token ids (spec §4.4) so prompts can be written with them.
IDS = dict(im_start=151644, im_end=151645, system=8948, user=872, assistant=77091, newline=198,
           tts_pad=151671, tts_bos=151672, tts_eos=151673, audio_pad=151675, image_pad=151655,
           video_pad=151656, audio_start=151669, audio_end=151670, vision_start=151652, vision_end=151653,
           endoftext=151643)


def tiny_config(*, thinker_layers: int = 2, heads: int = 4, kv_heads: int = 2, head_dim: int = 8,
                hidden: int = 32, experts: int = 4, top_k: int = 2, deepstack: tuple[int, ...] = (0,),
                vision_depth: int = 2, audio_layers: int = 1, talker_layers: int = 2, talker_experts: int = 4,
                talker_top_k: int = 2, code_groups: int = 4, codebook: int = 32, cp_layers: int = 1,
                code2wav_layers: int = 1, accept_hidden_layer: int = 1, sliding_window: int = 72,
                mrope_section: tuple[int, int, int] = (2, 1, 1), enable_audio_output: bool = True) -> dict[str, Any]:
    """The spec §8 tiny model as a config.json dict, with the knobs parity tests vary."""
    if sum(mrope_section) != head_dim // 2:
        raise ValueError("mrope_section must sum to head_dim/2")
    rope = {"rope_type": "default", "rope_theta": 1e6, "mrope_section": list(mrope_section), "interleaved": True}
    mm_ids = dict(audio_token_id=IDS["audio_pad"], image_token_id=IDS["image_pad"],
                  video_token_id=IDS["video_pad"], audio_start_token_id=IDS["audio_start"],
                  vision_start_token_id=IDS["vision_start"], position_id_per_seconds=13)
    thinker = dict(
        **mm_ids, audio_end_token_id=IDS["audio_end"], vision_end_token_id=IDS["vision_end"],
        user_token_id=IDS["user"], seconds_per_chunk=2,
        audio_config=dict(num_mel_bins=128, encoder_layers=audio_layers, encoder_attention_heads=2,
                          encoder_ffn_dim=64, d_model=32, downsample_hidden_size=8, output_dim=hidden,
                          n_window=50, n_window_infer=800, max_source_positions=1500, conv_chunksize=500),
        vision_config=dict(depth=vision_depth, hidden_size=32, intermediate_size=64, num_heads=2, patch_size=16,
                           temporal_patch_size=2, spatial_merge_size=2, out_hidden_size=hidden,
                           num_position_embeddings=16, deepstack_visual_indexes=list(deepstack), in_channels=3),
        text_config=dict(vocab_size=151676, hidden_size=hidden, intermediate_size=64,
                         num_hidden_layers=thinker_layers, num_attention_heads=heads, num_key_value_heads=kv_heads,
                         head_dim=head_dim, moe_intermediate_size=16, num_experts=experts,
                         num_experts_per_tok=top_k, norm_topk_prob=True, rope_parameters=dict(rope),
                         max_position_embeddings=4096, rms_norm_eps=1e-6),
    )
    cfg: dict[str, Any] = dict(
        model_type="qwen3_omni_moe", enable_audio_output=enable_audio_output,
        im_start_token_id=IDS["im_start"], im_end_token_id=IDS["im_end"], system_token_id=IDS["system"],
        user_token_id=IDS["user"], assistant_token_id=IDS["assistant"], tts_pad_token_id=IDS["tts_pad"],
        tts_bos_token_id=IDS["tts_bos"], tts_eos_token_id=IDS["tts_eos"], thinker_config=thinker)
    if enable_audio_output:
        cfg["talker_config"] = dict(
            **mm_ids, num_code_groups=code_groups, thinker_hidden_size=hidden,
            accept_hidden_layer=accept_hidden_layer, codec_pad_id=codebook, codec_bos_id=codebook + 1,
            codec_eos_token_id=codebook + 2, codec_nothink_id=codebook + 7, codec_think_bos_id=codebook + 8,
            codec_think_eos_id=codebook + 9,
            speaker_id={"chelsie": codebook + 153, "ethan": codebook + 154, "aiden": codebook + 155},
            spatial_merge_size=2,
            text_config=dict(vocab_size=1024 + codebook, hidden_size=32, intermediate_size=64,
                             num_hidden_layers=talker_layers, num_attention_heads=4, num_key_value_heads=2,
                             head_dim=8, moe_intermediate_size=16, shared_expert_intermediate_size=32,
                             num_experts=talker_experts, num_experts_per_tok=talker_top_k, norm_topk_prob=True,
                             rope_parameters=dict(rope), max_position_embeddings=4096, rms_norm_eps=1e-6),
            code_predictor_config=dict(vocab_size=codebook, num_code_groups=code_groups, hidden_size=32,
                                       intermediate_size=64, num_hidden_layers=cp_layers, num_attention_heads=4,
                                       num_key_value_heads=2, head_dim=8, rms_norm_eps=1e-6,
                                       rope_parameters={"rope_type": "default", "rope_theta": 1e6}),
        )
        cfg["code2wav_config"] = dict(
            codebook_size=codebook, num_quantizers=code_groups, hidden_size=32, intermediate_size=64,
            num_hidden_layers=code2wav_layers, num_attention_heads=2, num_key_value_heads=2,
            sliding_window=sliding_window, decoder_dim=32, upsample_rates=[8, 5, 4, 3], upsampling_ratios=[2, 2],
            rope_parameters={"rope_type": "default", "rope_theta": 1e4}, rms_norm_eps=1e-5)
    return cfg


def _hf_config(cfg: dict[str, Any]):
    from transformers import Qwen3OmniMoeConfig

    cfg = copy.deepcopy(cfg)
    hf = Qwen3OmniMoeConfig(**cfg)
    if cfg.get("enable_audio_output", True):
        # spec §7.2-1: the talker reads audio_config from its own config when a prompt mixes audio and vision.
        hf.talker_config.audio_config = hf.thinker_config.audio_config
    return hf


@torch.no_grad()
def reinitialize(model: torch.nn.Module, seed: int, scale: float = 1.0) -> None:
    """Give every parameter a non-degenerate random value (spec §10).

    Matrices get N(0, 1/fan_in)·scale so activations keep their size through the stacks; routers and output
    heads are scaled up so expert routing and greedy choices are far from ties; norms and layer scales get
    values around their natural size; SnakeBeta log-parameters land near 0 (α, β ≈ 1).
    """
    gen = torch.Generator().manual_seed(seed)
    for name, p in model.named_parameters():
        shape = p.shape
        if name.endswith(("alpha", "beta")):
            value = 0.1 * torch.randn(shape, generator=gen)
        elif "layer_scale" in name or name.endswith(".gamma"):
            value = 0.3 + 0.1 * torch.rand(shape, generator=gen)
        elif p.ndim == 1:
            is_norm = "norm" in name or "ln_" in name or name.split(".")[-2].startswith("ln")
            value = (1.0 + 0.1 * torch.randn(shape, generator=gen)) if (is_norm and name.endswith("weight")) \
                else 0.05 * torch.randn(shape, generator=gen)
        else:
            fan_in = math.prod(shape[1:]) if p.ndim > 1 else shape[0]
            if p.ndim == 3 and ("experts" in name):  # fused [E, out, in] experts
                fan_in = shape[-1]
            if "conv" in name and "transpose" not in name and p.ndim == 3:
                fan_in = shape[1] * shape[2]
            std = scale / math.sqrt(max(fan_in, 1))
            if name.endswith("gate.weight") or "codec_head" in name or "lm_head" in name:
                std *= 4.0  # routers and heads: spread logits so top-k / argmax are not near-ties
            value = std * torch.randn(shape, generator=gen)
        p.copy_(value.to(p.dtype))


def build_reference_checkpoint(folder: str | Path, cfg: dict[str, Any], seed: int = 0):
    """Build the transformers model for `cfg`, reinitialise its weights, save it to `folder`; return the model."""
    from transformers import Qwen3OmniMoeForConditionalGeneration

    folder = Path(folder)
    torch.manual_seed(seed)
    model = Qwen3OmniMoeForConditionalGeneration(_hf_config(cfg)).float().eval()
    reinitialize(model, seed)
    model.save_pretrained(folder)
    # Keep the exact config we asked for next to the weights transformers wrote (it adds its own defaults).
    (folder / "omnistream_test_config.json").write_text(json.dumps(cfg, indent=2))
    return model


def load_reference(folder: str | Path):
    """Load a saved checkpoint back into transformers, float32, eval mode."""
    from transformers import Qwen3OmniMoeForConditionalGeneration

    model = Qwen3OmniMoeForConditionalGeneration.from_pretrained(folder, dtype=torch.float32)
    if model.config.enable_audio_output:
        model.talker.config.audio_config = model.config.thinker_config.audio_config
    return model.eval()


def load_component(folder: str | Path, build, key_prefix: str, ignore_prefixes: tuple[str, ...]):
    """Load one omnistream component from a saved checkpoint through our loader, float32, eval mode.

    `build(config: OmniConfig) -> nn.Module` constructs it (on meta); only tensors under `key_prefix` are read.
    """
    from omnistream.checkpoint import load_checkpoint, params_on_meta
    from omnistream.config import OmniConfig

    config = OmniConfig.from_file(folder)
    with params_on_meta():
        model = build(config)
    load_checkpoint(model, folder, torch.float32, key_prefix=key_prefix, ignore_prefixes=ignore_prefixes)
    return model.eval()


def assert_relative_parity(got: torch.Tensor, want: torch.Tensor, tolerance: float = 1e-5) -> float:
    """max|got − want| ≤ tolerance · max|want|; returns the relative error for reporting."""
    assert got.shape == want.shape
    scale = want.abs().max().item()
    error = (got - want).abs().max().item()
    assert error <= tolerance * scale, f"max abs error {error:.3g} vs output scale {scale:.3g}"
    return error / scale
