"""think_spoken: a spoken image or video question's target writes the question down in a thinking span first;
typed questions and transcription keep their targets."""
from __future__ import annotations

import pytest

from omnistream.errors import ConfigError
from omnistream.inputs import Processor
from omnistream.synth import make_examples
from omnistream.synth.sentences import spoken_form
from omnistream.synth.tasks import TRANSCRIBE_TASKS
from omnistream.train.data import IGNORE, BatchSource, think_heard_question

MIX = {"exists": 1.0, "count": 1.0, "transcribe_digits": 0.5}


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("OMNISTREAM_CACHE", str(tmp_path_factory.getbasetemp() / "speech-cache"))


def test_only_spoken_questions_about_what_is_seen_get_a_span():
    examples = make_examples("train", 24, seed=3, task_mix=MIX, spoken_fraction=0.5, workers=1)
    kinds = set()
    for example in examples:
        changed = think_heard_question(example)
        transcription = example.task in TRANSCRIBE_TASKS
        spoken_question = example.question_modality == "speech" and not transcription
        kinds.add((transcription, example.question_modality))
        if spoken_question:
            assert changed.answer == f"<think>{spoken_form(example.question)}</think>{example.answer}"
            assert spoken_form(example.question)                      # the span is never empty
        else:
            assert changed == example
    assert {(False, "speech"), (False, "text"), (True, "text")} <= kinds       # transcription: typed request


def _targets(batch, row):
    return batch["targets"][row][batch["targets"][row] != IGNORE].tolist()


@pytest.mark.parametrize("question_clips", [0, 2])
def test_batches_differ_from_plain_ones_by_the_span_alone(tiny_assets, question_clips):
    processor = Processor.from_pretrained(tiny_assets)
    tokenizer = processor.tokenizer
    open_id, close_id = tokenizer.token_to_id("<think>"), tokenizer.token_to_id("</think>")
    assert open_id is not None and close_id is not None

    def source(think):
        return BatchSource(processor, MIX, batch_size=6, seed=0, spoken_fraction=0.5, workers=0,
                           spoken_pool=12, question_clips=question_clips, think_spoken=think)(0)

    thinking, plain = source(True), source(False)
    spans = 0
    for _ in range(3):
        a, b = next(thinking), next(plain)
        for row in range(a["input_ids"].shape[0]):
            with_span, without = _targets(a, row), _targets(b, row)
            if with_span == without:
                assert open_id not in with_span
                continue
            spans += 1
            assert (a["input_ids"][row] == processor.token_ids.audio).any()   # only spoken questions change
            assert with_span[0] == open_id and with_span.count(close_id) == 1
            close = with_span.index(close_id)
            assert with_span[close + 1:] == without                          # the same answer after the span
            heard = tokenizer.decode(with_span[1:close])
            assert heard and heard == spoken_form(heard)                     # lowercase words, as heard
    assert spans


def test_twins_and_thinking_spans_do_not_mix(tiny_assets):
    processor = Processor.from_pretrained(tiny_assets)
    with pytest.raises(ConfigError, match="think_spoken"):
        BatchSource(processor, MIX, spoken_fraction=0.5, workers=0, question_clips=2, twins=True, think_spoken=True)
