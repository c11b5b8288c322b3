"""The inputs layer: conversations with text, audio, images and video → `ModelInputs` (see docs/inputs.md)."""
from __future__ import annotations

from omnistream.inputs.audio_features import audio_token_count, log_mel_features, mel_filter_bank
from omnistream.inputs.chat_template import (
    QWEN3_OMNI_TEMPLATE,
    load_chat_template,
    render_chat,
    write_chat_template,
)
from omnistream.inputs.limits import InputLimits
from omnistream.inputs.media import load_audio, load_image
from omnistream.inputs.model_inputs import ModelInputs
from omnistream.inputs.positions import rope_index
from omnistream.inputs.processor import Processor
from omnistream.inputs.settings import PreprocessorSettings, TokenIds
from omnistream.inputs.tokenizer import IncrementalDecoder, TextTokenizer, write_tokenizer
from omnistream.inputs.vision_features import smart_resize

__all__ = [
    "QWEN3_OMNI_TEMPLATE", "IncrementalDecoder", "InputLimits", "ModelInputs", "PreprocessorSettings", "Processor",
    "TextTokenizer", "TokenIds", "audio_token_count", "load_audio", "load_chat_template", "load_image",
    "log_mel_features", "mel_filter_bank", "render_chat", "rope_index", "smart_resize", "write_chat_template",
    "write_tokenizer",
]
