"""Seeded, reproducible train / val / test examples of the shapes world, as omnistream conversations.

Example `i` of (split, seed) is drawn from its own generator, seeded by (seed, split, i): the same
example comes out whatever `n`, `start` or worker count is used, and the splits never share a stream.
Speech is synthesized in a batch (threads over espeak processes) after all random draws are made, so
parallelism never changes a byte. Test examples speak with the held-out voices (speech.py).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Iterator, Mapping

import numpy as np

from omnistream.errors import ConfigError
from omnistream.synth import speech
from omnistream.synth.shapes import Scene, draw_scene
from omnistream.synth.tasks import (
    ALL_TASKS, IMAGE_TASKS, TASKS, TRANSCRIBE_TASKS, VIDEO_TASKS, TaskDraw, draw_task,
)
from omnistream.synth.video import VideoScene, render_video

logger = logging.getLogger(__name__)

SPLITS = ("train", "val", "test")
_SPLIT_IDS = {"train": 0, "val": 1, "test": 2}
DEFAULT_TASK_MIX: dict[str, float] = {task: 1.0 for task in TASKS}
DEFAULT_SPOKEN_FRACTION = 0.5  # share of image/video questions asked by voice instead of typed
TASK_GROUPS = {"image": IMAGE_TASKS, "video": VIDEO_TASKS, "transcribe": TRANSCRIBE_TASKS}  # for per-group reports


@dataclass(frozen=True, eq=False)
class Example:
    """One question with its media and answer.

    `messages` is the user turn in omnistream's conversation format; `answer` the target text;
    `answer_voice` the output voice the talker should say it in (`speech.speak_answer`).
    """

    uid: str
    split: str
    task: str
    question: str                 # the question's text, also when it is spoken
    question_modality: str        # "text" | "speech"
    answer: str
    messages: list[dict[str, Any]]
    answer_voice: str
    scene: Scene | VideoScene | None = None
    speech_params: speech.SpeechParams | None = None  # voice of the audio part, when there is one
    spoken_text: str | None = None                    # what the audio part says

    def conversation(self) -> list[dict[str, Any]]:
        """User turn plus the assistant's answer: the full training conversation."""
        return self.messages + [{"role": "assistant", "content": [{"type": "text", "text": self.answer}]}]


@dataclass
class _Plan:
    """Every random choice of one example, made before any speech is synthesized."""

    index: int
    draw: TaskDraw
    is_spoken: bool
    answer_voice: str
    speech_params: speech.SpeechParams | None = None
    snr_db: float = 0.0
    noise_seed: int = 0
    media: dict[str, Any] = field(default_factory=dict)


def example_rng(split: str, seed: int, index: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([seed, _SPLIT_IDS[split], index]))


def _check_args(split: str, n: int, task_mix: Mapping[str, float], spoken_fraction: float) -> None:
    if split not in _SPLIT_IDS:
        raise ConfigError(f"unknown split {split!r}; expected one of {SPLITS}", param="split")
    if n < 0:
        raise ConfigError(f"n must be >= 0, got {n}", param="n")
    unknown = sorted(set(task_mix) - set(ALL_TASKS))
    if unknown:
        raise ConfigError(f"unknown tasks {unknown}; expected some of {ALL_TASKS}", param="task_mix")
    if any(w < 0 for w in task_mix.values()) or sum(task_mix.values()) <= 0:
        raise ConfigError("task_mix weights must be >= 0 with a positive sum", param="task_mix")
    if not 0.0 <= spoken_fraction <= 1.0:
        raise ConfigError(f"spoken_fraction must be in [0, 1], got {spoken_fraction}", param="spoken_fraction")


def _plan(split: str, seed: int, index: int, tasks: list[str], weights: np.ndarray,
          spoken_fraction: float) -> _Plan:
    rng = example_rng(split, seed, index)
    task = tasks[int(rng.choice(len(tasks), p=weights))]
    draw = draw_task(task, rng)
    is_spoken = task in TRANSCRIBE_TASKS or bool(rng.random() < spoken_fraction)
    answer_voice = sorted(speech.OUTPUT_VOICES)[int(rng.integers(len(speech.OUTPUT_VOICES)))]
    plan = _Plan(index, draw, is_spoken, answer_voice)
    if is_spoken:
        plan.speech_params = speech.sample_speech_params(rng, split)
        plan.snr_db = float(rng.uniform(*speech.SNR_DB_RANGE))
        plan.noise_seed = int(rng.integers(2**63))
    return plan


def _spoken_text(plan: _Plan) -> str | None:
    if not plan.is_spoken:
        return None
    return plan.draw.audio_text if plan.draw.task in TRANSCRIBE_TASKS else plan.draw.question


def _content(plan: _Plan, wave: np.ndarray | None) -> list[dict[str, Any]]:
    """Media first, then the question (typed, or spoken as audio); transcription: audio then the ask."""
    draw = plan.draw
    content: list[dict[str, Any]] = []
    if isinstance(draw.scene, Scene):
        content.append({"type": "image", "image": draw_scene(draw.scene)})  # [H, W, 3] uint8
    elif isinstance(draw.scene, VideoScene):
        content.append({"type": "video", "video": render_video(draw.scene), "fps": draw.scene.fps})  # [T, H, W, 3]
    audio = {"type": "audio", "audio": (wave, speech.INPUT_SAMPLE_RATE)} if wave is not None else None
    if draw.task in TRANSCRIBE_TASKS:
        content += [audio, {"type": "text", "text": draw.question}]
    elif plan.is_spoken:
        content.append(audio)
    else:
        content.append({"type": "text", "text": draw.question})
    return content


def _build(split: str, seed: int, plan: _Plan, clean: np.ndarray | None) -> Example:
    wave = None
    if clean is not None:
        wave = speech.add_noise(clean, np.random.default_rng(plan.noise_seed), plan.snr_db)
    draw = plan.draw
    return Example(
        uid=f"{split}-{seed}-{plan.index}", split=split, task=draw.task, question=draw.question,
        question_modality="speech" if plan.is_spoken and draw.task not in TRANSCRIBE_TASKS else "text",
        answer=draw.answer, messages=[{"role": "user", "content": _content(plan, wave)}],
        answer_voice=plan.answer_voice, scene=draw.scene, speech_params=plan.speech_params,
        spoken_text=_spoken_text(plan),
    )


def make_examples(split: str, n: int, seed: int = 0, task_mix: Mapping[str, float] | None = None, *,
                  start: int = 0, spoken_fraction: float = DEFAULT_SPOKEN_FRACTION,
                  workers: int = 2) -> list[Example]:
    """Examples `start .. start+n-1` of (split, seed), tasks drawn by `task_mix` weights.

    `spoken_fraction` of the image/video questions come as speech; transcription is always spoken.
    Same arguments → identical examples, byte for byte, whatever `workers` is.
    """
    task_mix = dict(DEFAULT_TASK_MIX if task_mix is None else task_mix)
    _check_args(split, n, task_mix, spoken_fraction)
    tasks = [t for t in ALL_TASKS if task_mix.get(t, 0.0) > 0]
    weights = np.array([task_mix[t] for t in tasks], dtype=np.float64)
    weights /= weights.sum()
    plans = [_plan(split, seed, start + i, tasks, weights, spoken_fraction) for i in range(n)]
    spoken = [(i, _spoken_text(p), p.speech_params) for i, p in enumerate(plans) if p.is_spoken]
    waves = speech.synthesize_many([(text, params) for _, text, params in spoken], workers=workers)
    clean_by_plan: dict[int, np.ndarray] = {i: wave for (i, _, _), wave in zip(spoken, waves)}
    return [_build(split, seed, p, clean_by_plan.get(i)) for i, p in enumerate(plans)]


def iter_examples(split: str, seed: int = 0, task_mix: Mapping[str, float] | None = None, *,
                  start: int = 0, chunk: int = 64, spoken_fraction: float = DEFAULT_SPOKEN_FRACTION,
                  workers: int = 2) -> Iterator[Example]:
    """An endless stream of examples `start, start+1, ...` (the same ones `make_examples` gives)."""
    index = start
    while True:
        yield from make_examples(split, chunk, seed, task_mix, start=index,
                                 spoken_fraction=spoken_fraction, workers=workers)
        index += chunk

