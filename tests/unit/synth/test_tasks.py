"""Every task's answer, checked by re-deriving it from the scene spec with an independent reading."""
from __future__ import annotations

import re

import numpy as np
import pytest

from omnistream.errors import ConfigError
from omnistream.synth.shapes import Scene
from omnistream.synth.tasks import IMAGE_TASKS, TASKS, TRAINING_VARIANTS, TRANSCRIBE_TASKS, VIDEO_TASKS, draw_task
from omnistream.synth.video import VideoScene

COLOR = "red|green|blue|yellow|black"
KIND = "circle|square|triangle"
NUMBERS = ["no", "one", "two", "three", "four"]
DIGITS = "zero one two three four five six seven eight nine".split()


def _match(shapes, color, kind):
    return [s for s in shapes if (color is None or s.color == color) and (kind in (None, "shape") or s.kind == kind)]


def _count_sentence(n: int, noun: str) -> str:
    return f"There is one {noun}." if n == 1 else f"There are {NUMBERS[n]} {noun}s."


def expected_image_answer(question: str, scene: Scene) -> str:
    shapes = scene.shapes
    if m := re.fullmatch(rf"What color is the ({KIND})\?", question):
        (only,) = _match(shapes, None, m[1])  # asked only when exactly one exists
        return f"The {m[1]} is {only.color}."
    if m := re.fullmatch(rf"How many (?:({COLOR}) )?({KIND}|shape)s are there\?", question):
        noun = f"{m[1]} {m[2]}" if m[1] else m[2]
        return _count_sentence(len(_match(shapes, m[1], m[2])), noun)
    if m := re.fullmatch(rf"What shape is ({COLOR})\?", question):
        (only,) = _match(shapes, m[1], None)
        return f"The {m[1]} shape is a {only.kind}."
    if m := re.fullmatch(rf"Is there a (?:({COLOR}) )?({KIND}|shape)\?", question):
        return "Yes." if _match(shapes, m[1], m[2]) else "No."
    if question == "Describe the image.":
        items = [f"a {s.color} {s.kind}" for s in sorted(shapes, key=lambda s: s.x + s.size / 2)]
        text = items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]
        return text[0].upper() + text[1:] + "."
    raise AssertionError(f"unexpected question {question!r}")


def expected_video_answer(question: str, scene: VideoScene) -> str:
    if question == "What color is the moving shape?":
        return f"The moving shape is {scene.moving.color}."
    m = re.fullmatch(rf"Which way does the (?:({COLOR}) )?({KIND}|shape) move\?", question)
    assert m, question
    (target,) = _match(scene.shapes, m[1], m[2])  # the name must be unambiguous
    if target is not scene.moving:
        return "It does not move."
    return {"left": "It moves to the left.", "right": "It moves to the right.",
            "up": "It moves up.", "down": "It moves down."}[scene.direction]


@pytest.mark.parametrize("task", IMAGE_TASKS + VIDEO_TASKS)
def test_answers_match_the_scene(task):
    rng = np.random.default_rng(100 + TASKS.index(task))
    questions = set()
    for _ in range(150):
        draw = draw_task(task, rng)
        questions.add(draw.question)
        if task in IMAGE_TASKS:
            assert isinstance(draw.scene, Scene)
            assert draw.answer == expected_image_answer(draw.question, draw.scene)
        else:
            assert isinstance(draw.scene, VideoScene)
            assert draw.answer == expected_video_answer(draw.question, draw.scene)
    if task not in ("describe", "moving_color"):
        assert len(questions) >= 3  # the variants are actually drawn


def test_describe_crowded_is_describe_over_four_shapes_and_never_a_test_task():
    rng = np.random.default_rng(11)
    for _ in range(60):
        draw = draw_task("describe_crowded", rng)
        assert draw.question == "Describe the image." and len(draw.scene.shapes) == 4
        assert draw.answer == expected_image_answer(draw.question, draw.scene)
    assert TRAINING_VARIANTS == {"describe_crowded": "describe"} and not set(TRAINING_VARIANTS) & set(TASKS)


def test_yes_and_no_are_balanced():
    rng = np.random.default_rng(7)
    answers = [draw_task("exists", rng).answer for _ in range(400)]
    assert 0.4 < answers.count("Yes.") / len(answers) < 0.6


def test_count_covers_every_number():
    rng = np.random.default_rng(8)
    answers = {draw_task("count", rng).answer.split()[2] for _ in range(400)}
    assert set(NUMBERS) <= answers


def test_still_shape_questions_exist():
    rng = np.random.default_rng(9)
    answers = {draw_task("direction", rng).answer for _ in range(300)}
    assert "It does not move." in answers and "It moves to the left." in answers and "It moves up." in answers


def test_transcription_targets():
    rng = np.random.default_rng(10)
    lengths = set()
    for _ in range(200):
        draw = draw_task("transcribe_digits", rng)
        words = draw.answer.split()
        lengths.add(len(words))
        assert draw.question == "Transcribe the audio." and draw.scene is None
        assert all(w in DIGITS for w in words) and draw.audio_text == draw.answer
    assert lengths == set(range(1, 7))
    for _ in range(50):
        draw = draw_task("transcribe_sentence", rng)
        assert re.fullmatch(r"[a-z]+( [a-z]+)*", draw.answer)
        assert draw.answer == " ".join(re.findall(r"[a-z]+", draw.audio_text.lower()))


def test_unknown_task():
    with pytest.raises(ConfigError):
        draw_task("juggle", np.random.default_rng(0))
    assert set(TRANSCRIBE_TASKS) < set(TASKS)
