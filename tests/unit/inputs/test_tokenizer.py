"""write_tokenizer, TextTokenizer and the streaming IncrementalDecoder."""
from __future__ import annotations

import json

import pytest

from omnistream.inputs import TokenIds
from omnistream.inputs.settings import read_config
from omnistream.inputs.tokenizer import IncrementalDecoder, TextTokenizer, write_tokenizer
from tests.inputs_fixtures import CORPUS

TEXTS = ["Hello world, 你好世界! émigré naïve 🙂🎉 done.", "The red circle moves.\n\nNext line: 0123456789",
         "<think>\nreasoning\n</think>\n\nanswer"]


def test_real_special_ids_and_role_ids(checkpoint):
    tokenizer = TextTokenizer.from_dir(checkpoint)
    assert tokenizer.token_to_id("<|endoftext|>") == 151643
    assert tokenizer.token_to_id("<|audio_pad|>") == 151675
    assert tokenizer.encode("<|im_start|>user\n") == [151644, 872, 198]
    assert tokenizer.pad_id == 151643
    assert 151644 in tokenizer.special_ids and tokenizer.token_to_id("<think>") not in tokenizer.special_ids


def test_small_vocab_specials_follow_the_learned_vocabulary(tmp_path):
    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|audio_pad|>"]
    write_tokenizer(tmp_path, CORPUS, specials, vocab_size=400)
    tokenizer = TextTokenizer.from_dir(tmp_path)
    ids = [tokenizer.token_to_id(s) for s in specials]
    assert ids == list(range(ids[0], ids[0] + 4)) and ids[0] <= 400
    config = json.loads((tmp_path / "tokenizer_config.json").read_text())
    assert config["extra_special_tokens"] == {"audio_token": "<|audio_pad|>"}


def test_colliding_special_ids_are_refused(tmp_path):
    with pytest.raises(ValueError, match="collide"):
        write_tokenizer(tmp_path, CORPUS, {"<|im_start|>": 5}, vocab_size=400)


@pytest.mark.parametrize("text", TEXTS)
def test_round_trip(checkpoint, text):
    tokenizer = TextTokenizer.from_dir(checkpoint)
    assert tokenizer.decode(tokenizer.encode(text)) == text


@pytest.mark.parametrize("text", TEXTS)
def test_incremental_decoding_equals_full_decoding(checkpoint, text):
    tokenizer = TextTokenizer.from_dir(checkpoint)
    ids = tokenizer.encode(text) + [151645]
    decoder = IncrementalDecoder(tokenizer)
    pieces = [decoder.push(i) for i in ids] + [decoder.flush()]
    assert "".join(pieces) == tokenizer.decode(ids)
    assert all("\ufffd" not in piece for piece in pieces)   # never half a UTF-8 character


def test_incremental_decoding_holds_back_partial_characters(checkpoint):
    tokenizer = TextTokenizer.from_dir(checkpoint)
    ids = tokenizer.encode("🙂")                # byte-level pieces of one 4-byte character
    assert len(ids) > 1
    decoder = IncrementalDecoder(tokenizer)
    assert [decoder.push(i) for i in ids[:-1]] == [""] * (len(ids) - 1)
    assert decoder.push(ids[-1]) == "🙂"


def test_processor_decode_skips_special_tokens(processor):
    ids = processor.tokenizer.encode("<|im_start|>assistant\nHi there<|im_end|>")
    assert processor.decode(ids) == "assistant\nHi there"
    assert processor.decode(ids, skip_special_tokens=False) == "<|im_start|>assistant\nHi there<|im_end|>"


def test_token_ids_come_from_config_then_tokenizer(checkpoint):
    tokenizer = TextTokenizer.from_dir(checkpoint)
    ids = TokenIds.from_config(read_config(checkpoint), tokenizer.token_to_id)
    assert (ids.im_start, ids.audio, ids.vision_end, ids.pad, ids.user, ids.tts_eos) == \
        (151644, 151675, 151653, 151643, 872, 151673)
