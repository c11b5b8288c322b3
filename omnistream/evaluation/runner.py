"""Evaluate a checkpoint through the public `Omni` API, on a test set generated fresh from the synth world.

Per task and question modality: exact-match accuracy of the text answer. Transcription: WER. Speech: the
spoken answer (in the requested output voice) is transcribed by pocketsphinx restricted to the world's
grammar and compared with the model's own text answer (intelligibility WER); wall time per second of audio
(real-time factor) and time from request to the first audio chunk.
"""
from __future__ import annotations

import json
import logging
import time
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from omnistream.evaluation.metrics import Recogniser, wer
from omnistream.synth import TASKS, make_examples, speak_answer
from omnistream.synth.sentences import spoken_form
from omnistream.synth.speech import OUTPUT_SAMPLE_RATE
from omnistream.synth.tasks import TRANSCRIBE_TASKS

logger = logging.getLogger(__name__)


@dataclass
class EvalResult:
    accuracy: dict[str, float] = field(default_factory=dict)          # "task/modality" → fraction correct
    counts: dict[str, int] = field(default_factory=dict)
    transcription_wer: float | None = None
    intelligibility_wer: float | None = None
    # the recogniser on espeak-ng's own speech of the same answers in the same voices: the floor under the above
    espeak_intelligibility_wer: float | None = None
    speech_samples: int = 0
    # the same WER over each task's answers, and how many answers each had: where the speech goes wrong
    intelligibility_by_task: dict[str, float] = field(default_factory=dict)
    speech_counts: dict[str, int] = field(default_factory=dict)
    real_time_factor: float | None = None
    time_to_first_audio_ms: float | None = None
    text_seconds_per_answer: float | None = None
    examples: list[dict[str, Any]] = field(default_factory=list)       # a few (question, answer, reply) rows
    config: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=1)


def _question_text(example: Any) -> str:
    return example.question if example.task not in TRANSCRIBE_TASKS else f"{example.question} [{example.spoken_text}]"


def evaluate_text(omni: Any, per_task: int, seed: int, result: EvalResult,
                  tasks: tuple[str, ...] = TASKS) -> None:
    """Greedy text answers for `per_task` test examples of every task (half typed, half spoken questions)."""
    right: dict[str, int] = defaultdict(int)
    total: dict[str, int] = defaultdict(int)
    wrong: dict[str, int] = defaultdict(int)
    pairs, seconds = [], []
    for task in tasks:
        examples = make_examples("test", per_task, seed, {task: 1.0}, spoken_fraction=0.5)
        for e in examples:
            start = time.perf_counter()
            reply = omni.chat(e.messages, return_audio=False, max_new_tokens=48)
            seconds.append(time.perf_counter() - start)
            key = f"{task}/{e.question_modality if task not in TRANSCRIBE_TASKS else 'speech'}"
            total[key] += 1
            ok = reply.text.strip() == e.answer
            right[key] += ok
            if task in TRANSCRIBE_TASKS:
                pairs.append((e.answer, spoken_form(reply.text)))
            if total[key] == 1 or (not ok and wrong[key] < 3):     # every task's first reply, up to 3 misses
                wrong[key] += not ok
                result.examples.append({"task": key, "question": _question_text(e), "answer": e.answer,
                                        "reply": reply.text, "correct": ok,
                                        **({"thinking": reply.thinking} if reply.thinking else {})})
    result.accuracy = {k: right[k] / total[k] for k in sorted(total)}
    result.counts = dict(sorted(total.items()))
    result.transcription_wer = wer(pairs) if pairs else None
    result.text_seconds_per_answer = float(np.mean(seconds)) if seconds else None


def talker_options(folder: str | Path | None) -> dict[str, Any]:
    """talker_* generation settings the checkpoint's generation_config.json asks for (the engine reads only the
    thinker's), as Omni.chat options."""
    from omnistream.api import BUILTIN_MODEL

    path = Path(folder or BUILTIN_MODEL) / "generation_config.json"
    data = json.loads(path.read_text()) if path.is_file() else {}
    options: dict[str, Any] = {}
    if "talker_do_sample" in data and not data["talker_do_sample"]:
        options["talker_temperature"] = 0.0
    for key in ("talker_temperature", "talker_top_k", "talker_top_p", "talker_repetition_penalty",
                "talker_max_new_tokens"):
        if key in data and key not in options:
            options[key] = data[key]
    return options


def evaluate_speech(omni: Any, count: int, seed: int, result: EvalResult,
                    options: dict[str, Any] | None = None) -> None:
    """Spoken answers of `count` test examples: intelligibility WER, RTF and time to first audio."""
    if not omni.has_speech:
        return
    options = options or {}
    recogniser = Recogniser()
    examples = make_examples("test", count, seed + 1, {t: 1.0 for t in TASKS}, spoken_fraction=0.5)
    pairs, espeak_pairs, first_audio, rtf = [], [], [], []
    by_task: dict[str, list[tuple[str, str]]] = defaultdict(list)
    shown = 0                               # speech-out rows kept as samples
    for e in examples:
        start = time.perf_counter()
        first = None
        chunks, text = [], ""
        rate = 24000
        for event in omni.stream(e.messages, voice=e.answer_voice, return_audio=True, max_new_tokens=48,
                                 **options):
            name = type(event).__name__
            if name == "AudioChunk":
                if first is None and len(event.samples):
                    first = time.perf_counter() - start
                chunks.append(event.samples)
                rate = event.sample_rate
            elif name == "TextDelta" and not event.is_thinking:      # only the answer is spoken
                text += event.text
            elif name == "Failed":
                raise RuntimeError(f"generation failed: {event.error}")
        wall = time.perf_counter() - start
        audio = np.concatenate(chunks) if chunks else np.zeros(0, np.float32)
        if text.strip():
            espeak_pairs.append((spoken_form(text), recogniser.transcribe(speak_answer(text, e.answer_voice),
                                                                           OUTPUT_SAMPLE_RATE)))
        heard = recogniser.transcribe(audio, rate) if audio.size else ""
        pairs.append((spoken_form(text), heard))
        by_task[e.task].append(pairs[-1])
        if audio.size == 0:
            continue
        first_audio.append(first or wall)
        rtf.append(wall / (audio.size / rate))
        if shown < 20:
            shown += 1
            result.examples.append({"task": f"{e.task}/speech-out", "answer": text, "heard": heard,
                                    "voice": e.answer_voice})
    result.speech_samples = len(pairs)
    result.intelligibility_wer = wer(pairs)
    result.intelligibility_by_task = {t: wer(by_task[t]) for t in TASKS if t in by_task}
    result.speech_counts = {t: len(by_task[t]) for t in result.intelligibility_by_task}
    result.espeak_intelligibility_wer = wer(espeak_pairs) if espeak_pairs else None
    result.real_time_factor = float(np.median(rtf)) if rtf else None
    result.time_to_first_audio_ms = float(np.median(first_audio) * 1000) if first_audio else None


def evaluate(path: str | Path | None = None, *, per_task: int = 40, speech: int = 30, seed: int = 1234,
             tasks: tuple[str, ...] = TASKS) -> EvalResult:
    """Load the checkpoint (None → built-in) with the engine and run both evaluations."""
    from omnistream.api import Omni

    result = EvalResult(config={"path": str(path) if path else "builtin", "per_task": per_task, "speech": speech,
                                "seed": seed})
    with Omni.from_pretrained(path) as omni:
        evaluate_text(omni, per_task, seed, result, tasks)
        if speech:
            evaluate_speech(omni, speech, seed, result, talker_options(path))
    return result
