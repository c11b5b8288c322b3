"""TextStream: think-block split, stop strings held back and cut, token ids carried, with a table decoder."""
from __future__ import annotations

from omnistream.engine.text_stream import TextStream

VOCAB = {1: "Hel", 2: "lo", 3: " wor", 4: "ld", 5: "!", 6: "<think>", 7: "</think>", 8: "", 9: "EN", 10: "D."}
OPEN, CLOSE, EOS = 6, 7, 8


class TableDecoder:
    def __init__(self) -> None:
        self.flushed = 0

    def push(self, token: int) -> str:
        return VOCAB[token]

    def flush(self) -> str:
        self.flushed += 1
        return ""


def run(tokens, **kwargs):
    stream = TextStream(TableDecoder, think_open_id=OPEN, think_close_id=CLOSE, **kwargs)
    pieces = []
    for t in tokens:
        pieces += stream.push(t)
    pieces += stream.finish()
    return stream, pieces


def test_plain_text_streams_every_token_and_ids_add_up():
    stream, pieces = run([1, 2, 3, 4, 5, EOS])
    assert "".join(p.text for p in pieces) == stream.answer == "Hello world!"
    assert [t for p in pieces for t in p.token_ids] == [1, 2, 3, 4, 5, EOS]
    assert len(pieces) >= 5 and not stream.stopped


def test_think_block_is_surfaced_separately_without_tags():
    stream, pieces = run([OPEN, 1, 2, CLOSE, 3, 4, EOS])
    assert stream.thinking == "Hello" and stream.answer == " world"
    assert [p.is_thinking for p in pieces if p.text] == [True, True, False, False]
    assert [t for p in pieces for t in p.token_ids] == [OPEN, 1, 2, CLOSE, 3, 4, EOS]
    assert stream.num_thinking_tokens == 3          # <think>'s own id counts as answer, the rest until </think>


def test_prompt_that_opened_the_think_block_starts_in_thinking():
    stream, _ = run([1, CLOSE, 2], start_thinking=True)
    assert stream.thinking == "Hel" and stream.answer == "lo"


def test_stop_string_is_never_emitted_and_ends_the_text():
    stream, pieces = run([1, 2, 9, 10, 5], stop=("END",))
    assert stream.stopped and stream.answer == "Hello"
    assert "".join(p.text for p in pieces) == "Hello"
    assert all("E" not in p.text for p in pieces)


def test_text_that_only_looks_like_a_stop_prefix_is_released_at_the_end():
    stream, pieces = run([1, 2, 9], stop=("END",))
    assert not stream.stopped and "".join(p.text for p in pieces) == "HelloEN"
