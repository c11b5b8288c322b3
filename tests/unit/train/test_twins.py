"""Typed twins: a spoken question carries its typed self, and twin_consistency pulls the spoken path towards it."""
from __future__ import annotations

import pytest
import torch

from omnistream.errors import ConfigError
from omnistream.inputs import Processor
from omnistream.train.data import IGNORE, BatchSource, QuestionSpeaker, collate, encode, thinker_loss
from omnistream.train.parts import fresh_model
from omnistream.synth import make_examples


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("OMNISTREAM_CACHE", str(tmp_path_factory.getbasetemp() / "speech-cache"))


def _answer(batch, row):
    return batch["targets"][row][batch["targets"][row] != IGNORE].tolist()


def test_spoken_image_questions_carry_their_typed_twin(tiny_assets):
    processor = Processor.from_pretrained(tiny_assets)
    source = BatchSource(processor, {"exists": 1.0, "count": 1.0, "transcribe_digits": 0.5}, batch_size=6, seed=0,
                         spoken_fraction=0.5, workers=0, question_clips=2, twins=True)
    batches = source(0)
    transcription = 0
    for batch in (next(batches) for _ in range(3)):
        twin, rows = batch["twin"], batch["twin_rows"].tolist()
        assert rows and "input_features" not in twin                # the twins are typed: no audio at all
        assert twin["input_ids"].shape[0] == len(rows)
        spoken_rows = [b for b in range(6) if (batch["input_ids"][b] == processor.token_ids.audio).any()]
        assert set(rows) <= set(spoken_rows)
        transcription += len(set(spoken_rows) - set(rows))
        for i, b in enumerate(rows):
            assert _answer(batch, b) == _answer(twin, i)            # same answer, token for token
    assert transcription                                            # transcription has no typed form
    plain = next(BatchSource(processor, {"exists": 1.0}, batch_size=6, seed=0, spoken_fraction=0.5, workers=0,
                             question_clips=2)(0))
    assert "twin" not in plain


def test_twins_need_the_question_bank(tiny_assets):
    processor = Processor.from_pretrained(tiny_assets)
    with pytest.raises(ConfigError, match="question_clips"):
        BatchSource(processor, {"exists": 1.0}, spoken_fraction=0.5, workers=0, twins=True)


def _pair(processor, task, seed):
    typed = make_examples("train", 1, seed=seed, task_mix={task: 1.0}, spoken_fraction=0.0)[0]
    sample = encode(processor, QuestionSpeaker(seed, clips_per_question=1)(typed, 0))
    sample.twin = encode(processor, typed)
    return sample


def test_consistency_is_zero_for_a_row_that_matches_its_twin_and_trains_the_audio_path(tiny_assets):
    torch.manual_seed(0)
    processor = Processor.from_pretrained(tiny_assets)
    thinker = fresh_model(tiny_assets, seed=0).thinker
    typed = make_examples("train", 1, seed=4, task_mix={"exists": 1.0}, spoken_fraction=0.0)[0]
    same = encode(processor, typed)
    same.twin = encode(processor, typed)
    real = _pair(processor, "exists", 5)
    assert real.input_features is not None and real.twin.input_features is None
    with torch.no_grad():
        _, metrics = thinker_loss(thinker, collate([same], processor.pad_id), twin_weight=1.0)
    assert metrics["twin"] == pytest.approx(0.0, abs=1e-6)
    batch = collate([same, real], processor.pad_id)
    loss, metrics = thinker_loss(thinker, batch, twin_weight=2.0)
    assert metrics["twin"] > 1e-3
    without, _ = thinker_loss(thinker, batch)
    torch.testing.assert_close(loss - without, torch.tensor(2.0 * metrics["twin"]), rtol=1e-4, atol=1e-6)
    # the consistency's gradient reaches the audio encoder: only the spoken row has audio, the twin is a teacher
    thinker.zero_grad()
    (loss - without).backward()
    audio_grads = [p.grad for p in thinker.audio_tower.parameters() if p.grad is not None]
    assert audio_grads and any(g.abs().sum() > 0 for g in audio_grads)


def test_training_on_the_consistency_brings_the_spoken_row_to_its_twin(tiny_assets):
    torch.manual_seed(0)
    processor = Processor.from_pretrained(tiny_assets)
    thinker = fresh_model(tiny_assets, seed=0).thinker
    batch = collate([_pair(processor, "exists", 6), _pair(processor, "color", 7)], processor.pad_id)
    opt = torch.optim.Adam(thinker.parameters(), lr=3e-3)
    history = []
    for _ in range(30):
        opt.zero_grad()
        loss, metrics = thinker_loss(thinker, batch, twin_weight=1.0)
        loss.backward()
        opt.step()
        history.append(metrics["twin"])
    assert history[-1] < 0.5 * history[0]
