"""The language of the shapes world: every question and answer template, in one place.

Tasks (tasks.py) fill these templates from scenes; the vocabulary (vocabulary.py) enumerates them, so
the tokenizer and the recogniser's grammar can never drift from what the generators produce.
"""
from __future__ import annotations

import re
from typing import Sequence

NUMBER_WORDS = ("no", "one", "two", "three", "four")  # counts 0–4 (a scene holds at most four shapes)
DIGIT_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
MAX_DIGITS = 6

DESCRIBE_QUESTION = "Describe the image."
MOVING_COLOR_QUESTION = "What color is the moving shape?"
TRANSCRIBE_QUESTION = "Transcribe the audio."
YES = "Yes."
NO = "No."
NOT_MOVING_ANSWER = "It does not move."


def _noun(color: str | None, kind: str | None) -> str:
    """'red square', 'square', 'red shape' or 'shape'."""
    return " ".join(w for w in (color, kind or "shape") if w)


def _plural(noun: str) -> str:
    return noun + "s"  # every noun of the world (circle, square, triangle, shape) is regular


# ---- questions ----
def color_question(kind: str) -> str:
    return f"What color is the {kind}?"


def count_question(color: str | None = None, kind: str | None = None) -> str:
    return f"How many {_plural(_noun(color, kind))} are there?"


def shape_of_color_question(color: str) -> str:
    return f"What shape is {color}?"


def exists_question(color: str | None, kind: str | None) -> str:
    return f"Is there a {_noun(color, kind)}?"


def direction_question(color: str | None, kind: str | None) -> str:
    return f"Which way does the {_noun(color, kind)} move?"


# ---- answers ----
def color_answer(kind: str, color: str) -> str:
    return f"The {kind} is {color}."


def count_answer(count: int, color: str | None = None, kind: str | None = None) -> str:
    noun = _noun(color, kind)
    if count == 1:
        return f"There is one {noun}."
    return f"There are {NUMBER_WORDS[count]} {_plural(noun)}."


def shape_of_color_answer(color: str, kind: str) -> str:
    return f"The {color} shape is a {kind}."


def yes_no_answer(is_yes: bool) -> str:
    return YES if is_yes else NO


def describe_answer(items: Sequence[tuple[str, str]]) -> str:
    """(colour, kind) pairs left to right → 'A red circle, a blue square and a green triangle.'"""
    phrases = [f"a {color} {kind}" for color, kind in items]
    text = phrases[0] if len(phrases) == 1 else ", ".join(phrases[:-1]) + " and " + phrases[-1]
    return text[0].upper() + text[1:] + "."


def direction_answer(direction: str | None) -> str:
    """'left'/'right' → 'It moves to the left.'; 'up'/'down' → 'It moves up.'; None → does not move."""
    if direction is None:
        return NOT_MOVING_ANSWER
    if direction in ("left", "right"):
        return f"It moves to the {direction}."
    return f"It moves {direction}."


def moving_color_answer(color: str) -> str:
    return f"The moving shape is {color}."


def digits_transcript(digits: Sequence[int]) -> str:
    """[7, 3, 9] → 'seven three nine' (what the audio says and what transcription answers)."""
    return " ".join(DIGIT_WORDS[d] for d in digits)


# ---- forms ----
_WORD_OR_PUNCT = re.compile(r"[A-Za-z]+|[.,?]")


def spoken_form(text: str) -> str:
    """Lowercase words without punctuation: transcription answers and the recogniser's output form."""
    return " ".join(re.findall(r"[a-z]+", text.lower()))


def word_tokens(text: str) -> list[str]:
    """Words and punctuation marks as they appear: 'The circle is red.' → ['The', 'circle', 'is', 'red', '.']"""
    return _WORD_OR_PUNCT.findall(text)
