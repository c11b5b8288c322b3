"""Codes a trained model speaks, recorded as talker targets: self-distillation when the codec's VQ is lost.

The talker stage's targets are the VQ codes of espeak-ng speech, and only the VQ the codec was trained with
gives codes its Code2Wav decodes. The shipped model's VQ is lost (recipes/continue.py), so a talker that must
follow a changed thinker learns instead from what the shipped model itself says: `record_codes` runs a
checkpoint on training examples (greedy, as its generation_config asks) and keeps the codes of every answer it
got right; `recorded_batches` replays them as talker batches (`TalkerStage(recorded=...)`), each example rebuilt
from its (seed, index) so only the answers and codes are stored. The student can at best speak as well as the
teacher did; train/vq_recovery.py, which reads the lost VQ back from the trained Code2Wav, can give the talker
espeak-ng targets again (`recipes/continue.py talker --targets vq`).

Layout of a recording folder: `codes-<start>.safetensors`, one per chunk of examples, holding `codes`
[Q, total frames] and `frames` [N] (frames per answer), with the chunk's examples in its metadata as JSON.
"""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Mapping

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from omnistream.errors import ConfigError
from omnistream.synth import make_examples
from omnistream.synth.sentences import spoken_form
from omnistream.synth.tasks import VIDEO_TASKS

logger = logging.getLogger(__name__)
CHUNK = 100     # examples per file: a recording can stop and resume, or run as several processes on disjoint ranges


@dataclass(frozen=True)
class Recorded:
    """One spoken answer: the training example it came from, what was said, in which voice, and its codes."""
    seed: int
    index: int
    task: str
    gold: str                # the example's own answer: rebuilding the example checks it
    answer: str              # what the model said (the gold answer, unless `keep` let others through)
    voice: str
    codes: torch.Tensor      # [Q, F] int64


def right_answer(example, reply) -> bool:
    return reply.text.strip() == example.answer


class HeardRightAnswer:
    """`keep` for a cleaner recording: a right answer whose speech an independent recogniser (pocketsphinx on
    the world's grammar, evaluation.metrics) hears word for word, so the talker learns only from what it said
    clearly. The same recogniser scores intelligibility in `omnistream eval`, so a talker trained on such a
    recording is judged by the judge that picked its targets."""

    def __init__(self) -> None:
        from omnistream.evaluation.metrics import Recogniser

        self.recogniser = Recogniser()

    def __call__(self, example, reply) -> bool:
        if not right_answer(example, reply) or reply.audio.size == 0:
            return False
        return self.recogniser.transcribe(reply.audio, reply.sample_rate) == spoken_form(reply.text)


def record_codes(checkpoint: str | Path, folder: str | Path, *, start: int, count: int, seed: int,
                 mix: Mapping[str, float], spoken_fraction: float, chunk: int = CHUNK,
                 keep: Callable = right_answer) -> int:
    """Speak training examples start..start+count-1 of (seed, mix) with `checkpoint`; returns the answers kept
    (by default those it got right: a wrong answer is no target to learn from).

    Chunks already in `folder` are skipped, so a stopped recording resumes where it was."""
    from omnistream.api import Omni
    from omnistream.evaluation.runner import talker_options

    if chunk <= 0 or start % chunk or count % chunk:
        raise ConfigError(f"record_codes: start and count must be multiples of the chunk ({chunk}), got {start} "
                          f"and {count}")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    omni = Omni.from_pretrained(checkpoint)
    options = talker_options(checkpoint)
    kept = 0
    for first in range(start, start + count, chunk):
        path = folder / f"codes-{first:07d}.safetensors"
        if path.is_file():
            continue
        rows, codes = [], []
        for offset, example in enumerate(make_examples("train", chunk, seed, dict(mix), start=first,
                                                       spoken_fraction=spoken_fraction, workers=1)):
            reply = omni.chat(example.messages, voice=example.answer_voice, return_audio=True, max_new_tokens=48,
                              **options)
            if reply.audio_codes is None or reply.audio_codes.shape[1] == 0 or not keep(example, reply):
                continue
            rows.append({"seed": seed, "index": first + offset, "task": example.task, "gold": example.answer,
                         "answer": reply.text.strip(), "voice": example.answer_voice})
            codes.append(torch.from_numpy(np.ascontiguousarray(reply.audio_codes)).long())
        tensors = {"codes": torch.cat(codes, 1) if codes else torch.zeros(0, 0, dtype=torch.long),
                   "frames": torch.tensor([c.shape[1] for c in codes], dtype=torch.long)}
        meta = {"examples": json.dumps(rows), "mix": json.dumps(dict(mix)), "spoken_fraction": str(spoken_fraction)}
        tmp = path.with_suffix(".tmp")
        save_file(tensors, str(tmp), metadata=meta)
        tmp.replace(path)
        kept += len(rows)
        logger.info("recorded %s: %d of %d answers kept", path.name, len(rows), chunk)
    return kept


def load_recording(folder: str | Path) -> tuple[list[Recorded], dict[str, float], float]:
    """Every recorded answer in `folder`, with the task mix and spoken fraction their examples were drawn with."""
    paths = sorted(Path(folder).glob("codes-*.safetensors"))
    if not paths:
        raise ConfigError(f"no recorded talker codes in {folder} (expected codes-*.safetensors)")
    records: list[Recorded] = []
    settings = set()
    for path in paths:
        with safe_open(str(path), "pt") as f:
            meta = f.metadata()
        tensors = load_file(str(path))
        settings.add((meta["mix"], meta["spoken_fraction"]))
        rows = json.loads(meta["examples"])
        pieces = torch.split(tensors["codes"], tensors["frames"].tolist(), dim=1) if rows else []
        records += [Recorded(r["seed"], r["index"], r["task"], r["gold"], r["answer"], r["voice"],
                             c.clone())
                    for r, c in zip(rows, pieces)]
    if len(settings) != 1:
        raise ConfigError(f"the chunks in {folder} were recorded with different task mixes or spoken fractions")
    mix, spoken = settings.pop()
    return records, json.loads(mix), float(spoken)


def interleave(b: int, every: int) -> tuple[bool, int]:
    """Talker batch `b` when every `every`-th batch is a video batch: (is it one, its index in its own stream)."""
    if b % every == every - 1:
        return True, b // every
    return False, b - (b + 1) // every


def recorded_batches(records: list[Recorded], batch_size: int, video_every: int, seed: int,
                     start_batch: int) -> Iterator[list[Recorded]]:
    """Batches of recorded answers from batch `start_batch` on, each pool reshuffled every epoch; every
    `video_every`-th batch holds only video examples (a video prompt pads its whole batch, see TalkerStage)."""
    if not records:
        raise ConfigError("the recording holds no answers")
    video = [r for r in records if r.task in VIDEO_TASKS]
    other = [r for r in records if r.task not in VIDEO_TASKS]
    b = start_batch
    while True:
        if video_every <= 0 or not video or not other:
            pool, salt, k = records, 0, b
        else:
            is_video, k = interleave(b, video_every)
            pool, salt = (video, 1) if is_video else (other, 0)
        per_epoch = max(1, len(pool) // batch_size)
        epoch, slot = divmod(k, per_epoch)
        order = np.random.default_rng([seed, salt, epoch]).permutation(len(pool))
        yield [pool[i] for i in order[slot * batch_size:(slot + 1) * batch_size]]
        b += 1


def rebuild_example(record: Recorded, mix: Mapping[str, float], spoken_fraction: float):
    """The training example a recorded answer came from (same seed, index, mix and spoken fraction)."""
    example = make_examples("train", 1, record.seed, dict(mix), start=record.index, spoken_fraction=spoken_fraction,
                            workers=1)[0]
    if example.answer != record.gold:
        raise ConfigError(f"recorded example {record.index} of seed {record.seed} no longer rebuilds the same "
                          f"({example.answer!r} against {record.gold!r}): the generators changed since it was "
                          "recorded")
    return example
