"""QuestionSpeaker: spoken questions over fresh images, from a bounded bank of clips, speed-perturbed, seeded."""
from __future__ import annotations

import numpy as np
import pytest

from omnistream.inputs import Processor
from omnistream.synth import make_examples, speech
from omnistream.train.data import BatchSource, QuestionSpeaker


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("OMNISTREAM_CACHE", str(tmp_path_factory.getbasetemp() / "speech-cache"))


def _audio(example):
    parts = [p for p in example.messages[0]["content"] if p["type"] == "audio"]
    return parts[0]["audio"][0] if parts else None


def test_typed_question_becomes_speech_over_the_same_image():
    typed = make_examples("train", 4, seed=5, task_mix={"exists": 1.0}, spoken_fraction=0.0)
    speaker = QuestionSpeaker(seed=3, clips_per_question=4)
    for i, example in enumerate(typed):
        spoken = speaker(example, i)
        kinds = [p["type"] for p in spoken.messages[0]["content"]]
        assert kinds == ["image", "audio"]                          # the typed text is gone, the image kept
        assert spoken.messages[0]["content"][0] is example.messages[0]["content"][0]
        assert (spoken.question_modality, spoken.spoken_text) == ("speech", example.question)
        assert spoken.answer == example.answer
        voice = spoken.speech_params.voice
        assert voice in {v.name for v in speech.train_voices()}      # never a held-out test voice
        again = speaker(example, i)
        assert np.array_equal(_audio(again), _audio(spoken))        # a fixed function of (seed, index)


def test_bank_slots_are_fixed_and_reused_with_fresh_noise_and_speed():
    speaker = QuestionSpeaker(seed=3, clips_per_question=1)           # one clip: every use shares its voice
    text = "Is there a red circle?"
    first, params = speaker.clip(text, 0)
    assert speaker.clip(text, 0)[1] == params
    example = make_examples("train", 1, seed=8, task_mix={"exists": 1.0}, spoken_fraction=0.0)[0]
    example = type(example)(**{**example.__dict__, "question": text})
    a, b = _audio(speaker(example, 0)), _audio(speaker(example, 1))
    assert a.size != b.size or not np.allclose(a, b)                 # same clip, different speed and noise
    for wave in (a, b):
        assert 0.85 * first.size <= wave.size <= 1.15 * first.size


def test_spoken_fraction_leaves_some_questions_typed():
    typed = make_examples("train", 40, seed=2, task_mix={"color": 1.0}, spoken_fraction=0.0)
    speaker = QuestionSpeaker(seed=1, spoken_fraction=0.5, clips_per_question=2)
    spoken = sum(speaker(e, i).question_modality == "speech" for i, e in enumerate(typed))
    assert 8 <= spoken <= 32


def test_transcription_audio_is_only_speed_perturbed():
    example = make_examples("train", 1, seed=4, task_mix={"transcribe_digits": 1.0})[0]
    out = QuestionSpeaker(seed=0)(example, 0)
    assert out.answer == example.answer and out.question_modality == example.question_modality
    before, after = _audio(example), _audio(out)
    ratio = before.size / after.size
    assert 0.9 - 1e-3 <= ratio <= 1.1 + 1e-3 and after.size != before.size


def test_batch_source_with_a_question_bank_speaks_over_fresh_images(tiny_assets):
    processor = Processor.from_pretrained(tiny_assets)
    mix = {"count": 1.0, "transcribe_digits": 0.5}
    source = BatchSource(processor, mix, batch_size=4, seed=0, spoken_fraction=0.5, workers=0,
                         question_clips=2)
    batches = source(0)
    first = [next(batches) for _ in range(3)]
    assert all("input_features" in b and "pixel_values" in b for b in first)
    again = source(2)                                                # resume after two batches
    resumed = next(again)
    assert all(np.array_equal(resumed[k], first[2][k]) for k in ("input_ids", "input_features", "pixel_values"))
    # fresh images every batch, even though the spoken questions come from 2 clips per question
    assert not np.array_equal(first[0]["pixel_values"], first[1]["pixel_values"])
