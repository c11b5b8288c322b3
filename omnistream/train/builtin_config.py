"""The built-in model's shape: a small Qwen3-Omni-format config, its tokenizer and preprocessing files.

Everything here is written in the official formats (config.json, tokenizer.json, chat template,
preprocessor_config.json), so the built-in model is loaded by exactly the code that loads the real one.
The vocabulary is a small byte-level BPE trained on the shapes world's sentences; the special tokens
follow it at consecutive ids, and every id the layers need is written to config.json (they never assume
Qwen's 151k numbering).

Codec ids (spec §4.4 layout, scaled): codes 0..codebook-1 are audio; the special codec ids sit at the
same offsets above the codebook as in the real model, and the talker vocabulary is codebook + 1024 so the
engine's "suppress [vocab-1024, vocab) except EOS" rule leaves every audio code allowed.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omnistream.inputs.chat_template import write_chat_template
from omnistream.inputs.tokenizer import QWEN3_OMNI_SPECIAL_TOKENS, TextTokenizer, write_tokenizer


@dataclass(frozen=True)
class BuiltinSizes:
    """The knobs of the built-in model (small enough to train on two CPU cores)."""
    hidden: int = 128
    thinker_layers: int = 2
    heads: int = 4
    kv_heads: int = 2
    experts: int = 4
    top_k: int = 2
    moe_intermediate: int = 128
    vision_hidden: int = 64
    vision_depth: int = 2
    audio_d_model: int = 64
    audio_layers: int = 2
    talker_hidden: int = 128
    talker_layers: int = 2
    talker_experts: int = 2
    code_groups: int = 4
    codebook: int = 256
    code2wav_hidden: int = 64
    code2wav_layers: int = 1
    decoder_dim: int = 96
    bpe_vocab: int = 420
    # > 0: video frames are kept at most this many pixels (preprocessor_config.json video_max_pixels), instead of
    # the reference processor's default that upscales a 224x224 frame to 384x384 (576 tokens per 8-frame video
    # rather than 196, nearly half of a training step's compute at one video batch in eight).
    video_max_pixels: int = 0


PREPROCESSOR = {
    "feature_extractor_type": "WhisperFeatureExtractor", "feature_size": 128, "hop_length": 160,
    "n_fft": 400, "n_samples": 4_800_000, "nb_max_frames": 30000, "chunk_length": 300, "sampling_rate": 16000,
    "padding_side": "right", "padding_value": 0.0, "return_attention_mask": True, "dither": 0.0,
    "image_processor_type": "Qwen2VLImageProcessor", "do_resize": True, "do_rescale": True, "do_normalize": True,
    "do_convert_rgb": True, "rescale_factor": 1 / 255, "image_mean": [0.5, 0.5, 0.5],
    "image_std": [0.5, 0.5, 0.5], "min_pixels": 3136, "max_pixels": 224 * 224, "patch_size": 16,
    "temporal_patch_size": 2, "merge_size": 2, "resample": 3, "processor_class": "Qwen3OmniMoeProcessor",
}


def tokenizer_corpus() -> list[str]:
    """Every sentence form of the world plus the chat-template words, repeated so BPE learns whole words."""
    from omnistream.synth import sentences as say
    from omnistream.synth.vocabulary import all_question_sentences, short_answer_sentences
    from omnistream.synth.shapes import COLORS, SHAPE_KINDS

    lines = ["system\nuser\nassistant\n"] * 50 + ["You are a helpful assistant."] * 5
    sentences = all_question_sentences() + short_answer_sentences()
    sentences += [say.describe_answer([(c, k), (c2, k)]) for c in COLORS for k in SHAPE_KINDS for c2 in COLORS]
    sentences += [say.describe_answer([(c, k)] * 4) for c in COLORS for k in SHAPE_KINDS]
    sentences += [" ".join(say.DIGIT_WORDS)] * 20 + [say.digits_transcript([d, d]) for d in range(10)] * 5
    sentences += [say.spoken_form(s) for s in sentences]
    lines += sentences * 3
    return lines


def write_tokenizer_files(folder: str | Path, sizes: BuiltinSizes = BuiltinSizes()) -> dict[str, int]:
    """Tokenizer + chat template into `folder`; returns the special and role ids for config.json."""
    folder = Path(folder)
    write_tokenizer(folder, tokenizer_corpus(), list(QWEN3_OMNI_SPECIAL_TOKENS), vocab_size=sizes.bpe_vocab)
    write_chat_template(folder)
    tok = TextTokenizer.from_dir(folder)
    ids = {name: tok.token_to_id(token) for name, token in (
        ("endoftext", "<|endoftext|>"), ("im_start", "<|im_start|>"), ("im_end", "<|im_end|>"),
        ("vision_start", "<|vision_start|>"), ("vision_end", "<|vision_end|>"), ("image", "<|image_pad|>"),
        ("video", "<|video_pad|>"), ("audio_start", "<|audio_start|>"), ("audio_end", "<|audio_end|>"),
        ("tts_pad", "<tts_pad>"), ("tts_bos", "<tts_text_bos>"), ("tts_eos", "<tts_text_eod>"),
        ("audio", "<|audio_pad|>"))}
    for role in ("system", "user", "assistant"):
        encoded = tok.encode(role)
        if len(encoded) != 1:
            raise ValueError(f"role word {role!r} is not a single token: {encoded}")
        ids[role] = encoded[0]
    ids["vocab_size"] = tok.backend.get_vocab_size(with_added_tokens=True)
    return ids


def _rope(head_dim: int, theta: float = 1e6) -> dict[str, Any]:
    """Interleaved TM-RoPE with the real split ratio 24:20:20 scaled to head_dim/2."""
    half = head_dim // 2
    t = round(half * 24 / 64)
    h = (half - t) // 2
    return {"rope_type": "default", "rope_theta": theta, "mrope_section": [t, h, half - t - h], "interleaved": True}


def builtin_config(ids: dict[str, int], sizes: BuiltinSizes = BuiltinSizes()) -> dict[str, Any]:
    """config.json for the built-in model from the tokenizer's ids."""
    s = sizes
    head_dim = s.hidden // s.heads
    mm = dict(audio_token_id=ids["audio"], image_token_id=ids["image"], video_token_id=ids["video"],
              audio_start_token_id=ids["audio_start"], vision_start_token_id=ids["vision_start"],
              position_id_per_seconds=13)
    vocab = ids["vocab_size"]
    thinker = dict(
        **mm, audio_end_token_id=ids["audio_end"], vision_end_token_id=ids["vision_end"],
        user_token_id=ids["user"], seconds_per_chunk=2,
        audio_config=dict(num_mel_bins=128, encoder_layers=s.audio_layers, encoder_attention_heads=2,
                          encoder_ffn_dim=2 * s.audio_d_model, d_model=s.audio_d_model, downsample_hidden_size=32,
                          output_dim=s.hidden, n_window=50, n_window_infer=800, max_source_positions=1500,
                          conv_chunksize=500, activation_function="gelu", scale_embedding=False),
        vision_config=dict(depth=s.vision_depth, hidden_size=s.vision_hidden, intermediate_size=2 * s.vision_hidden,
                           num_heads=2, patch_size=16, temporal_patch_size=2, spatial_merge_size=2,
                           out_hidden_size=s.hidden, num_position_embeddings=196, deepstack_visual_indexes=[0],
                           in_channels=3, hidden_act="gelu_pytorch_tanh"),
        text_config=dict(vocab_size=vocab, hidden_size=s.hidden, intermediate_size=2 * s.hidden,
                         num_hidden_layers=s.thinker_layers, num_attention_heads=s.heads,
                         num_key_value_heads=s.kv_heads, head_dim=head_dim, moe_intermediate_size=s.moe_intermediate,
                         num_experts=s.experts, num_experts_per_tok=s.top_k, norm_topk_prob=True,
                         rope_parameters=_rope(head_dim), max_position_embeddings=4096, rms_norm_eps=1e-6,
                         decoder_sparse_step=1, mlp_only_layers=[]),
    )
    cb = s.codebook
    talker_head = s.talker_hidden // 4
    talker = dict(
        **mm, num_code_groups=s.code_groups, thinker_hidden_size=s.hidden, accept_hidden_layer=s.thinker_layers,
        codec_pad_id=cb + 100, codec_bos_id=cb + 101, codec_eos_token_id=cb + 102, codec_nothink_id=cb + 107,
        codec_think_bos_id=cb + 108, codec_think_eos_id=cb + 109,
        speaker_id={"chelsie": cb + 253, "ethan": cb + 254}, spatial_merge_size=2,
        text_config=dict(vocab_size=cb + 1024, hidden_size=s.talker_hidden, intermediate_size=2 * s.talker_hidden,
                         num_hidden_layers=s.talker_layers, num_attention_heads=4, num_key_value_heads=2,
                         head_dim=talker_head, moe_intermediate_size=2 * s.talker_hidden,
                         shared_expert_intermediate_size=2 * s.talker_hidden, num_experts=s.talker_experts,
                         num_experts_per_tok=1, norm_topk_prob=True, rope_parameters=_rope(talker_head),
                         max_position_embeddings=4096, rms_norm_eps=1e-6),
        code_predictor_config=dict(vocab_size=cb, num_code_groups=s.code_groups, hidden_size=s.talker_hidden,
                                   intermediate_size=2 * s.talker_hidden, num_hidden_layers=1,
                                   num_attention_heads=4, num_key_value_heads=2, head_dim=talker_head,
                                   rms_norm_eps=1e-6, rope_parameters={"rope_type": "default", "rope_theta": 1e6}),
    )
    code2wav = dict(
        codebook_size=cb, num_quantizers=s.code_groups, hidden_size=s.code2wav_hidden,
        intermediate_size=2 * s.code2wav_hidden, num_hidden_layers=s.code2wav_layers, num_attention_heads=2,
        num_key_value_heads=2, sliding_window=72, decoder_dim=s.decoder_dim, upsample_rates=[8, 5, 4, 3],
        upsampling_ratios=[2, 2], rope_parameters={"rope_type": "default", "rope_theta": 1e4}, rms_norm_eps=1e-5,
        layer_scale_initial_scale=0.01)
    return dict(
        model_type="qwen3_omni_moe", architectures=["Qwen3OmniMoeForConditionalGeneration"],
        enable_audio_output=True, im_start_token_id=ids["im_start"], im_end_token_id=ids["im_end"],
        system_token_id=ids["system"], user_token_id=ids["user"], assistant_token_id=ids["assistant"],
        tts_pad_token_id=ids["tts_pad"], tts_bos_token_id=ids["tts_bos"], tts_eos_token_id=ids["tts_eos"],
        thinker_config=thinker, talker_config=talker, code2wav_config=code2wav)


GENERATION_CONFIG = {
    # Greedy thinker (answers are deterministic facts); greedy talker with the reference's mild penalty.
    "do_sample": False, "max_new_tokens": 48,
    "talker_do_sample": False, "talker_repetition_penalty": 1.0, "talker_max_new_tokens": 200,
}


def write_assets(folder: str | Path, sizes: BuiltinSizes = BuiltinSizes()) -> dict[str, Any]:
    """Tokenizer, chat template, preprocessor_config.json, generation_config.json and config.json."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    ids = write_tokenizer_files(folder, sizes)
    config = builtin_config(ids, sizes)
    (folder / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    video = {"video_min_pixels": PREPROCESSOR["min_pixels"], "video_max_pixels": sizes.video_max_pixels} \
        if sizes.video_max_pixels else {}
    (folder / "preprocessor_config.json").write_text(json.dumps(PREPROCESSOR | video, indent=2) + "\n")
    (folder / "generation_config.json").write_text(json.dumps(GENERATION_CONFIG, indent=2) + "\n")
    return config
