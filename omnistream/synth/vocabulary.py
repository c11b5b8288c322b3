"""The closed vocabulary of the shapes world: every question, every answer, every word.

Built by running the templates of sentences.py over all their arguments, so it covers exactly what
the generators can produce. Used for the built-in model's small tokenizer (`all_words`) and for the
recogniser that checks the model's own speech (`jsgf_grammar`, pocketsphinx's JSGF dialect).
"""
from __future__ import annotations

import itertools
from pathlib import Path
from typing import Iterator

from omnistream.synth import sentences as say
from omnistream.synth.shapes import COLORS, MAX_SHAPES, SHAPE_KINDS
from omnistream.synth.video import DIRECTIONS

_OPTIONAL_COLORS = (None,) + COLORS
_OPTIONAL_KINDS = (None,) + SHAPE_KINDS


def all_question_sentences() -> list[str]:
    """Every question, typed form (also the text the spoken questions say)."""
    questions = [say.color_question(k) for k in SHAPE_KINDS]
    questions += [say.count_question(None, None)]
    questions += [say.count_question(None, k) for k in SHAPE_KINDS]
    questions += [say.count_question(c, None) for c in COLORS]
    questions += [say.shape_of_color_question(c) for c in COLORS]
    named = [(c, k) for c in _OPTIONAL_COLORS for k in _OPTIONAL_KINDS if (c, k) != (None, None)]
    questions += [say.exists_question(c, k) for c, k in named]
    questions += [say.DESCRIBE_QUESTION]
    questions += [say.direction_question(c, k) for c, k in named]
    questions += [say.MOVING_COLOR_QUESTION, say.TRANSCRIBE_QUESTION]
    return questions


def short_answer_sentences() -> list[str]:
    """Every answer except image descriptions and transcripts (a few dozen sentences)."""
    answers = [say.color_answer(k, c) for k in SHAPE_KINDS for c in COLORS]
    answers += [say.count_answer(n) for n in range(1, MAX_SHAPES + 1)]
    answers += [say.count_answer(n, None, k) for n in range(MAX_SHAPES + 1) for k in SHAPE_KINDS]
    answers += [say.count_answer(n, c, None) for n in range(MAX_SHAPES + 1) for c in COLORS]
    answers += [say.shape_of_color_answer(c, k) for c in COLORS for k in SHAPE_KINDS]
    answers += [say.YES, say.NO]
    answers += [say.direction_answer(d) for d in DIRECTIONS] + [say.direction_answer(None)]
    answers += [say.moving_color_answer(c) for c in COLORS]
    return answers


def describe_sentences() -> Iterator[str]:
    """Every "Describe the image." answer: 1–4 (colour, kind) items, 15 + 15² + 15³ + 15⁴ = 54,240."""
    items = [(c, k) for c in COLORS for k in SHAPE_KINDS]
    for length in range(1, MAX_SHAPES + 1):
        for combo in itertools.product(items, repeat=length):
            yield say.describe_answer(combo)


def digit_transcripts(max_digits: int = say.MAX_DIGITS) -> Iterator[str]:
    """Every spoken digit string of 1..max_digits digits (1,111,110 for six)."""
    for length in range(1, max_digits + 1):
        for digits in itertools.product(range(10), repeat=length):
            yield say.digits_transcript(digits)


def all_answer_sentences(include_transcripts: bool = False) -> Iterator[str]:
    """Every answer text the tasks can produce, typed form.

    Transcription answers (spoken forms of world sentences, and 1.1 M digit strings) are included only
    with `include_transcripts`; `jsgf_grammar` covers them compactly.
    """
    yield from short_answer_sentences()
    yield from describe_sentences()
    if include_transcripts:
        for sentence in itertools.chain(all_question_sentences(), short_answer_sentences(), describe_sentences()):
            yield say.spoken_form(sentence)
        yield from digit_transcripts()


def all_words() -> list[str]:
    """Sorted word and punctuation tokens of every question, answer and transcript (case kept)."""
    words: set[str] = set()
    # descriptions only combine words of their items, so a few of them cover all their tokens
    samples = all_question_sentences() + short_answer_sentences()
    samples += [say.describe_answer([(c, k)] * 2) for c in COLORS for k in SHAPE_KINDS]
    samples += [say.describe_answer([(c, k)] * 3) for c in COLORS for k in SHAPE_KINDS]
    samples += list(say.DIGIT_WORDS)
    for sentence in samples:
        words.update(say.word_tokens(sentence))
        words.update(say.spoken_form(sentence).split())
    return sorted(words)


def jsgf_grammar() -> str:
    """A JSGF grammar of everything the model may say, in spoken form (lowercase, no punctuation).

    Finite families are listed sentence by sentence; descriptions and digit strings are rules.
    """
    fixed = sorted({say.spoken_form(s) for s in short_answer_sentences() + all_question_sentences()})
    item = "a <color> <kind>"
    lines = [
        "#JSGF V1.0;",
        "grammar shapesworld;",
        f"<color> = {' | '.join(COLORS)};",
        f"<kind> = {' | '.join(SHAPE_KINDS)};",
        f"<digit> = {' | '.join(say.DIGIT_WORDS)};",
        f"<item> = {item};",
        "<describe> = <item> | <item> and <item> | <item> <item> and <item> | <item> <item> <item> and <item>;",
        "<digits> = " + " | ".join(" ".join(["<digit>"] * n) for n in range(1, say.MAX_DIGITS + 1)) + ";",
        "<fixed> = " + " | ".join(fixed) + ";",
        "public <sentence> = <fixed> | <describe> | <digits>;",
    ]
    return "\n".join(lines) + "\n"


def write_jsgf(path: str | Path) -> Path:
    """Write `jsgf_grammar()` to `path` (for pocketsphinx's `jsgf=` option) and return the path."""
    path = Path(path)
    path.write_text(jsgf_grammar(), encoding="utf-8")
    return path
