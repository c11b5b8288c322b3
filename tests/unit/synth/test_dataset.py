"""Examples: reproducible to the byte, in the conversation format, split-aware voices."""
from __future__ import annotations

import numpy as np
import pytest

from omnistream.errors import ConfigError
from omnistream.synth import speech
from omnistream.synth.dataset import make_examples
from omnistream.synth.sentences import spoken_form
from omnistream.synth.shapes import IMAGE_SIZE, Scene, draw_scene
from omnistream.synth.tasks import IMAGE_TASKS, TASKS, TRANSCRIBE_TASKS, VIDEO_TASKS
from omnistream.synth.video import NUM_FRAMES, VideoScene, render_video


def _fingerprint(example) -> tuple:
    parts = []
    for part in example.messages[0]["content"]:
        value = part[part["type"]]
        if part["type"] == "audio":
            parts.append(("audio", value[0].tobytes(), value[1]))
        elif part["type"] in ("image", "video"):
            parts.append((part["type"], value.tobytes()))
        else:
            parts.append(("text", value))
    return (example.uid, example.task, example.question, example.answer, example.answer_voice,
            example.speech_params, tuple(parts))


def test_same_seed_same_bytes_whatever_the_workers(tmp_path, monkeypatch):
    a = make_examples("train", 24, seed=5, workers=1)
    monkeypatch.setenv("OMNISTREAM_CACHE", str(tmp_path))  # the second run synthesizes afresh, in parallel
    b = make_examples("train", 24, seed=5, workers=2)
    assert list(tmp_path.rglob("*.npy"))
    assert [_fingerprint(x) for x in a] == [_fingerprint(y) for y in b]
    c = make_examples("train", 24, seed=6)
    assert [x.answer for x in a] != [y.answer for y in c]


def test_examples_do_not_depend_on_batching():
    whole = make_examples("val", 12, seed=1)
    tail = make_examples("val", 4, seed=1, start=8)
    assert [_fingerprint(x) for x in whole[8:]] == [_fingerprint(y) for y in tail]


def test_conversation_format_per_task():
    examples = make_examples("train", 60, seed=2)
    assert {e.task for e in examples} == set(TASKS)
    for e in examples:
        assert len(e.messages) == 1 and e.messages[0]["role"] == "user"
        content = e.messages[0]["content"]
        types = [part["type"] for part in content]
        question_part = "audio" if e.question_modality == "speech" else "text"
        if e.task in IMAGE_TASKS:
            assert types == ["image", question_part] and isinstance(e.scene, Scene)
            image = content[0]["image"]
            assert image.shape == (IMAGE_SIZE, IMAGE_SIZE, 3) and image.dtype == np.uint8
            assert np.array_equal(image, draw_scene(e.scene))
        elif e.task in VIDEO_TASKS:
            assert types == ["video", question_part] and isinstance(e.scene, VideoScene)
            assert content[0]["video"].shape == (NUM_FRAMES, IMAGE_SIZE, IMAGE_SIZE, 3)
            assert content[0]["fps"] == 2.0
            assert np.array_equal(content[0]["video"], render_video(e.scene))
        else:
            assert types == ["audio", "text"] and content[1]["text"] == "Transcribe the audio."
            assert e.spoken_text is not None and e.answer == spoken_form(e.spoken_text)
        if question_part == "text" and e.task not in TRANSCRIBE_TASKS:
            assert content[-1]["text"] == e.question
        for part in content:
            if part["type"] == "audio":
                wave, rate = part["audio"]
                assert rate == 16000 and wave.dtype == np.float32 and wave.size > 4000
        assert e.answer_voice in speech.OUTPUT_VOICES
        assert e.conversation()[-1] == {"role": "assistant", "content": [{"type": "text", "text": e.answer}]}


def test_spoken_question_says_the_question():
    examples = make_examples("train", 30, seed=3, task_mix={"color": 1.0}, spoken_fraction=1.0)
    assert all(e.question_modality == "speech" for e in examples)
    e = examples[0]
    clean = speech.synthesize(e.question, e.speech_params)
    wave = e.messages[0]["content"][1]["audio"][0]
    assert wave.size == clean.size
    noise = wave - clean
    assert 20 < 10 * np.log10(np.mean(clean**2) / np.mean(noise**2)) < 40  # light noise on the same speech


def test_voices_follow_the_split():
    test_names = {v.name for v in speech.held_out_voices()}
    mix = {"transcribe_digits": 1.0}
    assert all(e.speech_params.voice in test_names for e in make_examples("test", 20, seed=0, task_mix=mix))
    assert not any(e.speech_params.voice in test_names for e in make_examples("train", 20, seed=0, task_mix=mix))


def test_task_mix_and_spoken_fraction():
    examples = make_examples("train", 40, seed=4, task_mix={"describe": 1, "direction": 3}, spoken_fraction=0.0)
    assert {e.task for e in examples} == {"describe", "direction"}
    assert sum(e.task == "direction" for e in examples) > 20
    assert all(e.question_modality == "text" and e.speech_params is None for e in examples)


def test_a_training_variant_joins_a_mix_without_changing_the_other_tasks_draws():
    plain = make_examples("train", 12, seed=5, task_mix={"color": 1, "count": 1}, spoken_fraction=0.0)
    same = make_examples("train", 12, seed=5, task_mix={"color": 1, "count": 1, "describe_crowded": 0.0},
                         spoken_fraction=0.0)
    assert [e.answer for e in plain] == [e.answer for e in same]
    crowded = make_examples("train", 12, seed=5, task_mix={"describe_crowded": 1}, spoken_fraction=0.5)
    assert {e.task for e in crowded} == {"describe_crowded"} and {len(e.scene.shapes) for e in crowded} == {4}
    assert {e.question_modality for e in crowded} == {"text", "speech"}


@pytest.mark.parametrize("kwargs,param", [
    ({"split": "dev"}, "split"),
    ({"task_mix": {"juggle": 1.0}}, "task_mix"),
    ({"task_mix": {"color": 0.0}}, "task_mix"),
    ({"spoken_fraction": 1.5}, "spoken_fraction"),
])
def test_bad_arguments(kwargs, param):
    args = {"split": "train", "n": 2, "seed": 0} | kwargs
    with pytest.raises(ConfigError) as info:
        make_examples(**args)
    assert info.value.param == param
