"""Text tokenizer: the checkpoint's `tokenizer.json` through the `tokenizers` library.

Also builds small byte-level BPE tokenizers (`write_tokenizer`) with the Qwen2 pre-tokenisation and
chosen special-token ids: the tests use one that carries the real Qwen3-Omni ids so transformers'
processor can read the same folder, and the built-in model uses one with a small vocabulary.
"""
from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

from omnistream.errors import CheckpointError

logger = logging.getLogger(__name__)

# Qwen2's split pattern (contractions, letters, single digits, punctuation runs, newlines, spaces).
QWEN2_SPLIT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
               r"|\s*[\r\n]+|\s+(?!\S)|\s+")

# The special tokens of Qwen3-Omni in id order from 151643 (spec §4.4); names for the processor's lookups.
QWEN3_OMNI_SPECIAL_TOKENS = (
    "<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|object_ref_start|>", "<|object_ref_end|>",
    "<|box_start|>", "<|box_end|>", "<|quad_start|>", "<|quad_end|>", "<|vision_start|>", "<|vision_end|>",
    "<|vision_pad|>", "<|image_pad|>", "<|video_pad|>", "<tool_call>", "</tool_call>", "<|fim_prefix|>",
    "<|fim_middle|>", "<|fim_suffix|>", "<|fim_pad|>", "<|repo_name|>", "<|file_sep|>", "<tool_response>",
    "</tool_response>", "<think>", "</think>", "<|audio_start|>", "<|audio_end|>", "<tts_pad>",
    "<tts_text_bos>", "<tts_text_eod>", "<tts_text_bos_single>", "<|audio_pad|>",
)
# Added tokens that are ordinary text when decoding (Qwen3 keeps think tags and tool tags visible).
NON_SPECIAL_TOKENS = frozenset({"<think>", "</think>", "<tool_call>", "</tool_call>", "<tool_response>",
                                "</tool_response>", "<|fim_prefix|>", "<|fim_middle|>", "<|fim_suffix|>",
                                "<|fim_pad|>", "<|repo_name|>", "<|file_sep|>"})
# transformers' processor reads these attribute names from tokenizer_config.json.
PROCESSOR_TOKEN_NAMES = {
    "image_token": "<|image_pad|>", "audio_token": "<|audio_pad|>", "video_token": "<|video_pad|>",
    "vision_bos_token": "<|vision_start|>", "vision_eos_token": "<|vision_end|>",
    "audio_bos_token": "<|audio_start|>", "audio_eos_token": "<|audio_end|>",
}


class TextTokenizer:
    """Encode/decode with a `tokenizers.Tokenizer`; knows which ids are special."""

    def __init__(self, tokenizer: Tokenizer, pad_token: str | None = None, eos_token: str | None = None) -> None:
        self.backend = tokenizer
        self.backend.no_padding()
        self.backend.no_truncation()
        added = tokenizer.get_added_tokens_decoder()
        self.special_ids = frozenset(i for i, tok in added.items() if tok.special)
        self.pad_token, self.eos_token = pad_token, eos_token

    @classmethod
    def from_dir(cls, folder: str | Path) -> TextTokenizer:
        folder = Path(folder)
        path = folder / "tokenizer.json"
        if not path.is_file():
            raise CheckpointError(f"no tokenizer.json in {folder}", param="tokenizer.json")
        try:
            backend = Tokenizer.from_file(str(path))
        except Exception as e:  # noqa: BLE001 - the library raises plain Exception on bad files
            raise CheckpointError(f"tokenizer.json cannot be loaded: {e}", param="tokenizer.json") from None
        config = _read_tokenizer_config(folder)
        return cls(backend, pad_token=_token_text(config.get("pad_token")),
                   eos_token=_token_text(config.get("eos_token")))

    def encode(self, text: str) -> list[int]:
        """Token ids of `text`; special-token strings in the text become their ids (as the reference)."""
        return self.backend.encode(text, add_special_tokens=False).ids

    def decode(self, ids: Sequence[int], skip_special_tokens: bool = True) -> str:
        return self.backend.decode(list(ids), skip_special_tokens=skip_special_tokens)

    def token_to_id(self, token: str) -> int | None:
        return self.backend.token_to_id(token)

    def id_to_token(self, index: int) -> str | None:
        return self.backend.id_to_token(index)

    @property
    def pad_id(self) -> int | None:
        return self.token_to_id(self.pad_token) if self.pad_token else None


class IncrementalDecoder:
    """Streaming detokenizer: `push(ids)` returns only new, complete text — never half a UTF-8 character.

    Keeps a short window of already-emitted tokens as context so byte-level pieces and leading spaces
    decode as they would in the full string (the prefix/read-offset scheme used by serving engines).
    """

    def __init__(self, tokenizer: TextTokenizer, skip_special_tokens: bool = True) -> None:
        self.tokenizer, self.skip = tokenizer, skip_special_tokens
        self.ids: list[int] = []
        self.prefix_offset = 0   # start of the context window
        self.read_offset = 0     # tokens before this are already emitted

    def push(self, ids: int | Iterable[int]) -> str:
        self.ids.extend([ids] if isinstance(ids, int) else ids)
        prefix = self.tokenizer.decode(self.ids[self.prefix_offset:self.read_offset], self.skip)
        full = self.tokenizer.decode(self.ids[self.prefix_offset:], self.skip)
        if len(full) <= len(prefix) or full.endswith("\ufffd"):
            return ""  # nothing new yet, or an incomplete multi-byte character
        self.prefix_offset, self.read_offset = self.read_offset, len(self.ids)
        return full[len(prefix):]

    def flush(self) -> str:
        """Whatever is left at the end of the stream (an incomplete character decodes as U+FFFD)."""
        prefix = self.tokenizer.decode(self.ids[self.prefix_offset:self.read_offset], self.skip)
        full = self.tokenizer.decode(self.ids[self.prefix_offset:], self.skip)
        self.prefix_offset = self.read_offset = len(self.ids)
        return full[len(prefix):] if len(full) > len(prefix) else ""


def write_tokenizer(folder: str | Path, corpus: Iterable[str], special_tokens: Sequence[str] | Mapping[str, int],
                    *, vocab_size: int = 1024, fixed_ids: Mapping[str, int] | None = None,
                    non_special: Iterable[str] = NON_SPECIAL_TOKENS, pad_token: str = "<|endoftext|>",
                    eos_token: str = "<|im_end|>", model_max_length: int = 65536) -> Path:
    """Train a byte-level BPE on `corpus` and write `tokenizer.json` + `tokenizer_config.json` to `folder`.

    Args:
        special_tokens: token strings (ids assigned after the learned vocabulary, in order) or a
            {token: id} mapping with explicit ids (e.g. Qwen3-Omni's real ids from 151643).
        fixed_ids: learned tokens to move to given ids, e.g. {"user": 872} — the learned token that held
            that id swaps places with it. Tokens are in byte-level form ("Ċ" is a newline).
        non_special: added tokens that decode as ordinary text (<think>, tool tags).
    Returns the folder.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    vocab, merges = _train_bpe(corpus, vocab_size)
    for token, index in (fixed_ids or {}).items():
        _move_token(vocab, token, index)
    specials = dict(special_tokens) if isinstance(special_tokens, Mapping) else \
        {tok: len(vocab) + i for i, tok in enumerate(special_tokens)}
    clash = {tok for tok, i in specials.items() if i in set(vocab.values()) and vocab.get(tok) != i}
    if clash:
        raise ValueError(f"special token ids collide with the learned vocabulary: {sorted(clash)}")
    vocab.update(specials)  # specials live in the model vocab so the added tokens keep their exact ids
    tokenizer = _qwen2_pipeline(vocab, merges)
    non_special = set(non_special)
    tokenizer.add_tokens([AddedToken(t, special=False, normalized=False) for t in specials if t in non_special])
    tokenizer.add_special_tokens([AddedToken(t, special=True, normalized=False)
                                  for t in specials if t not in non_special])
    tokenizer.save(str(folder / "tokenizer.json"))
    config = {
        "tokenizer_class": "Qwen2Tokenizer", "model_max_length": model_max_length, "errors": "replace",
        "pad_token": pad_token, "eos_token": eos_token, "unk_token": None, "bos_token": None,
        "clean_up_tokenization_spaces": False, "split_special_tokens": False,
        "extra_special_tokens": {k: v for k, v in PROCESSOR_TOKEN_NAMES.items() if v in specials},
    }
    (folder / "tokenizer_config.json").write_text(json.dumps(config, indent=2, ensure_ascii=False) + "\n")
    return folder


def _train_bpe(corpus: Iterable[str], vocab_size: int) -> tuple[dict[str, int], list[tuple[str, str]]]:
    tokenizer = _qwen2_pipeline({}, [])
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, show_progress=False, special_tokens=[],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tokenizer.train_from_iterator(corpus, trainer=trainer)
    model = json.loads(tokenizer.to_str())["model"]
    merges = [tuple(m.split(" ", 1)) if isinstance(m, str) else tuple(m) for m in model["merges"]]
    return dict(model["vocab"]), merges  # type: ignore[return-value]


def _move_token(vocab: dict[str, int], token: str, index: int) -> None:
    if token not in vocab:
        raise ValueError(f"fixed_ids: {token!r} is not in the learned vocabulary")
    old = vocab[token]
    holder = next((t for t, i in vocab.items() if i == index), None)
    vocab[token] = index
    if holder is not None and holder != token:
        vocab[holder] = old


def _qwen2_pipeline(vocab: dict[str, int], merges: list[tuple[str, str]]) -> Tokenizer:
    tokenizer = Tokenizer(models.BPE(vocab=vocab, merges=merges, dropout=None, unk_token=None,
                                     continuing_subword_prefix="", end_of_word_suffix="", fuse_unk=False,
                                     byte_fallback=False))
    tokenizer.normalizer = normalizers.NFC()
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(QWEN2_SPLIT), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    tokenizer.decoder = decoders.ByteLevel()
    return tokenizer


def _read_tokenizer_config(folder: Path) -> dict:
    path = folder / "tokenizer_config.json"
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise CheckpointError(f"tokenizer_config.json is not readable JSON: {e}", param="tokenizer_config.json") \
            from None
    return data if isinstance(data, dict) else {}


def _token_text(value: object) -> str | None:
    """tokenizer_config token fields are a string or an AddedToken-style {"content": ...} dict."""
    if isinstance(value, dict):
        value = value.get("content")
    return value if isinstance(value, str) else None
