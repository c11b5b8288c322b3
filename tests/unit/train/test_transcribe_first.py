"""The transcribe-first probe asks the right three questions and writes transcripts back as the world's questions."""
from __future__ import annotations

import hashlib
from types import SimpleNamespace

import numpy as np
import pytest

from omnistream.errors import ConfigError
from omnistream.evaluation.transcribe_first import probe_task, typed_question
from omnistream.synth import make_examples
from omnistream.synth import sentences as say


def test_every_question_of_the_world_survives_its_spoken_form():
    examples = make_examples("test", 200, 5, {t: 1.0 for t in ("color", "count", "shape_of_color", "exists",
                                                                 "describe", "direction", "moving_color")})
    questions = {e.question for e in examples}
    assert len(questions) > 30
    for question in questions:
        assert typed_question(say.spoken_form(question)) == question
    assert typed_question("  ") == ""


class _HearsButCannotUseSpeech:
    """Transcribes every question's audio word for word, answers typed questions right and spoken ones wrong."""

    def __init__(self, examples):
        self.said = {_key(e): e.question for e in examples}
        self.answers = {(_media(e.messages), e.question): e.answer for e in examples}

    def chat(self, messages, **_):
        parts = messages[0]["content"]
        audio = [p for p in parts if p["type"] == "audio"]
        text = [p["text"] for p in parts if p["type"] == "text"]
        if audio and text == [say.TRANSCRIBE_QUESTION]:
            reply = say.spoken_form(self.said[_fingerprint(audio[0])])
        elif audio:
            reply = "I do not know."
        else:
            reply = self.answers.get((_media(messages), text[0]), "?")
        return SimpleNamespace(text=reply)


def _media(messages) -> str:
    image = next(p["image"] for p in messages[0]["content"] if p["type"] == "image")
    return hashlib.sha1(np.ascontiguousarray(image).tobytes()).hexdigest()


def _fingerprint(part) -> str:
    wave, _ = part["audio"]
    return hashlib.sha1(np.ascontiguousarray(wave).tobytes()).hexdigest()


def _key(example) -> str:
    return _fingerprint(next(p for p in example.messages[0]["content"] if p["type"] == "audio"))


def test_the_probe_separates_hearing_from_answering():
    examples = [e for e in make_examples("test", 12, 3, {"exists": 1.0}, spoken_fraction=0.5)
                if e.question_modality == "speech"]
    assert examples
    result = probe_task(_HearsButCannotUseSpeech(examples), "exists", 12, 3)
    assert (result.spoken, result.direct, result.transcribed, result.typed_after) == (len(examples), 0.0, 1.0, 1.0)


def test_transcription_tasks_are_refused():
    with pytest.raises(ConfigError, match="transcribe_digits"):
        probe_task(None, "transcribe_digits", 4, 1)
