"""The closed vocabulary covers everything the generators say; the grammar covers every spoken answer."""
from __future__ import annotations

import re

import numpy as np
import pytest

from omnistream.synth import sentences as say
from omnistream.synth import vocabulary
from omnistream.synth.tasks import TASKS, TRANSCRIBE_TASKS, draw_task


def _jsgf_to_regex(grammar: str) -> re.Pattern:
    """Expand the grammar's rules into one regex (the grammar has no recursion)."""
    rules = dict(re.findall(r"^(?:public )?<(\w+)> = (.*);$", grammar, flags=re.M))

    def expand(body: str) -> str:
        body = body.replace(" | ", "|").replace(" ", " +")  # words apart by spaces, alternatives by bars
        return re.sub(r"<(\w+)>", lambda m: "(?:" + expand(rules[m[1]]) + ")", body)

    return re.compile(expand(rules["sentence"]))


def _drawn(count: int):
    rng = np.random.default_rng(0)
    return [draw_task(TASKS[i % len(TASKS)], rng) for i in range(count)]


def test_generated_sentences_are_in_the_vocabulary():
    questions = set(vocabulary.all_question_sentences())
    answers = set(vocabulary.all_answer_sentences())
    words = set(vocabulary.all_words())
    for draw in _drawn(600):
        assert draw.question in questions
        if draw.task not in TRANSCRIBE_TASKS:
            assert draw.answer in answers
        for text in (draw.question, draw.answer, draw.audio_text or ""):
            assert set(say.word_tokens(text)) <= words, text


def test_vocabulary_sizes():
    assert len(vocabulary.all_question_sentences()) == len(set(vocabulary.all_question_sentences())) == 66
    assert sum(1 for _ in vocabulary.describe_sentences()) == 15 + 15**2 + 15**3 + 15**4
    assert 50 < len(vocabulary.all_words()) < 100


def test_grammar_covers_every_spoken_answer_and_transcript():
    pattern = _jsgf_to_regex(vocabulary.jsgf_grammar())
    spoken = [say.spoken_form(s) for s in vocabulary.short_answer_sentences() + vocabulary.all_question_sentences()]
    spoken += [say.spoken_form(s) for s in list(vocabulary.describe_sentences())[::997]]
    spoken += [d.answer for d in _drawn(300) if d.task in TRANSCRIBE_TASKS]
    spoken += ["zero", "nine nine nine nine nine nine"]
    for sentence in spoken:
        assert pattern.fullmatch(sentence), sentence
    for wrong in ("the circle is purple", "one two three four five six seven", "a red circle a blue square"):
        assert not pattern.fullmatch(wrong)


def test_pocketsphinx_reads_the_grammar_and_hears_the_output_voice(tmp_path):
    pocketsphinx = pytest.importorskip("pocketsphinx")
    from omnistream.synth.speech import resample, speak_answer

    decoder = pocketsphinx.Decoder(samprate=16000, jsgf=str(vocabulary.write_jsgf(tmp_path / "world.jsgf")),
                                   loglevel="FATAL")
    for text in ("The circle is red.", "There are three shapes.", "A red circle and a blue square."):
        wave = resample(speak_answer(text, "ethan"), 24000, 16000)
        decoder.start_utt()
        decoder.process_raw((wave * 32767).astype("<i2").tobytes(), full_utt=True)
        decoder.end_utt()
        assert decoder.hyp() is not None and decoder.hyp().hypstr == say.spoken_form(text)
