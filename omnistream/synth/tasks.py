"""Questions and answers for every task of the shapes world, derived from scene specs.

Each task function takes a generator and a scene and returns a question with its answer, or None when
the scene cannot support an unambiguous question of that kind (e.g. "What color is the circle?"
needs exactly one circle); `draw_task` then samples another scene.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from omnistream.errors import ConfigError
from omnistream.synth import sentences as say
from omnistream.synth.shapes import COLORS, MAX_SHAPES, SHAPE_KINDS, Scene, Shape, sample_scene
from omnistream.synth.video import VideoScene, sample_video_scene

IMAGE_TASKS = ("color", "count", "shape_of_color", "exists", "describe")
VIDEO_TASKS = ("direction", "moving_color")
TRANSCRIBE_TASKS = ("transcribe_digits", "transcribe_sentence")
TASKS = IMAGE_TASKS + VIDEO_TASKS + TRANSCRIBE_TASKS
# Training-only variants of a test task: its question and answer, on the scenes that task finds hardest.
# describe_crowded: "Describe the image." over four shapes, where the model swapped neighbours of one colour.
TRAINING_VARIANTS = {"describe_crowded": "describe"}
IMAGE_TRAINING_TASKS = IMAGE_TASKS + tuple(v for v, task in TRAINING_VARIANTS.items() if task in IMAGE_TASKS)
ALL_TASKS = TASKS + tuple(TRAINING_VARIANTS)
_MAX_TRIES = 100


@dataclass(frozen=True)
class QA:
    question: str
    answer: str


@dataclass(frozen=True)
class TaskDraw:
    """One drawn task: its scene (None for transcription) and, for transcription, what the audio says."""

    task: str
    question: str
    answer: str
    scene: Scene | VideoScene | None
    audio_text: str | None = None


def _pick(rng: np.random.Generator, options: list):
    return options[int(rng.integers(len(options)))]


def _matching(shapes: tuple[Shape, ...], color: str | None = None, kind: str | None = None) -> list[Shape]:
    return [s for s in shapes if (color is None or s.color == color) and (kind is None or s.kind == kind)]


# ---- image tasks ----
def color_task(rng: np.random.Generator, scene: Scene) -> QA | None:
    kinds = [k for k in SHAPE_KINDS if len(_matching(scene.shapes, kind=k)) == 1]
    if not kinds:
        return None
    kind = _pick(rng, kinds)
    return QA(say.color_question(kind), say.color_answer(kind, _matching(scene.shapes, kind=kind)[0].color))


def count_task(rng: np.random.Generator, scene: Scene) -> QA:
    """Half ask for all shapes; the rest for one kind or one colour, which may be absent ("no circles")."""
    form = rng.random()
    color = kind = None
    if form >= 0.75:
        color = _pick(rng, list(COLORS))
    elif form >= 0.5:
        kind = _pick(rng, list(SHAPE_KINDS))
    count = len(_matching(scene.shapes, color, kind))
    return QA(say.count_question(color, kind), say.count_answer(count, color, kind))


def shape_of_color_task(rng: np.random.Generator, scene: Scene) -> QA | None:
    colors = [c for c in COLORS if len(_matching(scene.shapes, color=c)) == 1]
    if not colors:
        return None
    color = _pick(rng, colors)
    return QA(say.shape_of_color_question(color),
              say.shape_of_color_answer(color, _matching(scene.shapes, color=color)[0].kind))


def exists_task(rng: np.random.Generator, scene: Scene) -> QA | None:
    """Colour+kind (60%), kind only or colour only; "Yes." and "No." equally likely when both can be asked."""
    form = rng.random()
    if form < 0.6:
        options = [(c, k) for c in COLORS for k in SHAPE_KINDS]
    elif form < 0.8:
        options = [(None, k) for k in SHAPE_KINDS]
    else:
        options = [(c, None) for c in COLORS]
    present = [o for o in options if _matching(scene.shapes, *o)]
    absent = [o for o in options if not _matching(scene.shapes, *o)]
    want_yes = bool(rng.random() < 0.5)
    pool = present if (want_yes and present) or not absent else absent
    color, kind = _pick(rng, pool)
    return QA(say.exists_question(color, kind), say.yes_no_answer(pool is present))


def describe_task(rng: np.random.Generator, scene: Scene) -> QA:
    items = [(s.color, s.kind) for s in scene.left_to_right()]
    return QA(say.DESCRIBE_QUESTION, say.describe_answer(items))


# ---- video tasks ----
def _reference(rng: np.random.Generator, shapes: tuple[Shape, ...], target: Shape) -> tuple[str | None, str | None]:
    """How to name `target`: colour and kind, or (when unique) kind alone or colour alone."""
    names = [(target.color, target.kind)]
    if len(_matching(shapes, kind=target.kind)) == 1:
        names.append((None, target.kind))
    if len(_matching(shapes, color=target.color)) == 1:
        names.append((target.color, None))
    # colour+kind (the form) half the time, otherwise any unambiguous name
    return names[0] if rng.random() < 0.5 else _pick(rng, names)


def direction_task(rng: np.random.Generator, scene: VideoScene) -> QA:
    """Mostly about the moving shape; with two shapes, a fifth of the time about the still one."""
    asks_still = len(scene.shapes) == 2 and rng.random() < 0.2
    index = 1 - scene.moving_index if asks_still else scene.moving_index
    color, kind = _reference(rng, scene.shapes, scene.shapes[index])
    return QA(say.direction_question(color, kind), say.direction_answer(None if asks_still else scene.direction))


def moving_color_task(rng: np.random.Generator, scene: VideoScene) -> QA:
    return QA(say.MOVING_COLOR_QUESTION, say.moving_color_answer(scene.moving.color))


_IMAGE_FNS: dict[str, Callable[[np.random.Generator, Scene], QA | None]] = {
    "color": color_task, "count": count_task, "shape_of_color": shape_of_color_task,
    "exists": exists_task, "describe": describe_task,
}
_IMAGE_FNS.update({variant: _IMAGE_FNS[task] for variant, task in TRAINING_VARIANTS.items()})
_SCENE_SHAPES = {"describe_crowded": MAX_SHAPES}    # shapes per scene where a task fixes it (default: 1-4)
_VIDEO_FNS: dict[str, Callable[[np.random.Generator, VideoScene], QA | None]] = {
    "direction": direction_task, "moving_color": moving_color_task,
}


# ---- transcription ----
def random_world_sentence(rng: np.random.Generator) -> str:
    """A question or an answer of a random image/video task: the sentences the world speaks."""
    draw = draw_task(_pick(rng, list(IMAGE_TASKS + VIDEO_TASKS)), rng)
    return draw.question if rng.random() < 0.5 else draw.answer


def transcribe_task(task: str, rng: np.random.Generator) -> TaskDraw:
    if task == "transcribe_digits":
        num_digits = int(rng.integers(1, say.MAX_DIGITS + 1))
        text = say.digits_transcript([int(d) for d in rng.integers(0, 10, size=num_digits)])
    else:
        text = random_world_sentence(rng)
    return TaskDraw(task, say.TRANSCRIBE_QUESTION, say.spoken_form(text), None, audio_text=text)


def draw_task(task: str, rng: np.random.Generator) -> TaskDraw:
    """Sample a scene (image, video or none) and a question of `task` it can answer."""
    if task in TRANSCRIBE_TASKS:
        return transcribe_task(task, rng)
    for _ in range(_MAX_TRIES):
        if task in _IMAGE_FNS:
            scene: Scene | VideoScene = sample_scene(rng, _SCENE_SHAPES.get(task))
            qa = _IMAGE_FNS[task](rng, scene)
        elif task in _VIDEO_FNS:
            scene = sample_video_scene(rng)
            qa = _VIDEO_FNS[task](rng, scene)
        else:
            raise ConfigError(f"unknown task {task!r}; expected one of {ALL_TASKS}", param="task")
        if qa is not None:
            return TaskDraw(task, qa.question, qa.answer, scene)
    raise ConfigError(f"no answerable scene for task {task!r} after {_MAX_TRIES} tries", param="task")
