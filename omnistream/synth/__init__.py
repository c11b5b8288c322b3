"""The shapes world: seeded generators of images, videos, espeak-ng speech and their questions.

    from omnistream.synth import make_examples, speak_answer
    train = make_examples("train", 1000, seed=0)   # list[Example]; e.messages, e.answer
    wave_24k = speak_answer(train[0].answer, "chelsie")

Modules: shapes (still scenes), video (moving scenes, mp4), speech (espeak-ng, voices, cache),
sentences (question/answer templates), tasks (QA from scenes), dataset (splits), vocabulary
(closed word list, JSGF grammar).
"""
from __future__ import annotations

from omnistream.synth.dataset import DEFAULT_TASK_MIX, SPLITS, Example, iter_examples, make_examples
from omnistream.synth.shapes import Scene, Shape, draw_scene, sample_scene
from omnistream.synth.speech import (
    OUTPUT_VOICES, SpeechParams, Voice, held_out_voices, speak_answer, synthesize, train_voices,
)
from omnistream.synth.tasks import TASKS, TaskDraw, draw_task
from omnistream.synth.video import VideoScene, encode_mp4, render_video, sample_video_scene
from omnistream.synth.vocabulary import (
    all_answer_sentences, all_question_sentences, all_words, jsgf_grammar, write_jsgf,
)

__all__ = [
    "DEFAULT_TASK_MIX", "OUTPUT_VOICES", "SPLITS", "TASKS", "Example", "Scene", "Shape", "SpeechParams",
    "TaskDraw", "VideoScene", "Voice", "all_answer_sentences", "all_question_sentences", "all_words",
    "draw_scene", "draw_task", "encode_mp4", "held_out_voices", "iter_examples", "jsgf_grammar",
    "make_examples", "render_video", "sample_scene", "sample_video_scene", "speak_answer", "synthesize",
    "train_voices", "write_jsgf",
]
