"""`python -m omnistream.synth`: show samples of every task, time generation, write demo media.

    python -m omnistream.synth --samples 2          # print questions and answers
    python -m omnistream.synth --bench 100          # examples per second for each task
    python -m omnistream.synth --demo out/          # a png, an mp4 and wavs to look at and listen to
"""
from __future__ import annotations

import argparse
import logging
import time
import wave as wavfile
from pathlib import Path

import numpy as np
from PIL import Image

from omnistream.synth import speech
from omnistream.synth.dataset import make_examples
from omnistream.synth.tasks import TASKS
from omnistream.synth.video import encode_mp4

logger = logging.getLogger("omnistream.synth")


def write_wav(path: Path, samples: np.ndarray, rate: int) -> None:
    """16-bit mono WAV (standard library only)."""
    with wavfile.open(str(path), "wb") as handle:
        handle.setnchannels(1)
        handle.setsampwidth(2)
        handle.setframerate(rate)
        handle.writeframes((np.clip(samples, -1, 1) * 32767).astype("<i2").tobytes())


def show_samples(count: int, seed: int) -> None:
    for task in TASKS:
        for e in make_examples("train", count, seed, {task: 1.0}):
            voice = e.speech_params.voice if e.speech_params else "-"
            print(f"{task:20s} {e.question_modality:6s} {voice:24s} {e.question!r:45s} -> {e.answer!r}")


def bench(count: int, seed: int) -> None:
    """Examples per second per task; spoken share 0.5 (transcription always spoken)."""
    print(f"{'task':20s} {'cold ex/s':>10s} {'warm ex/s':>10s}")
    for task in TASKS:
        rates = []
        for _ in range(2):  # first run fills the speech cache, second reads it
            start = time.perf_counter()
            make_examples("train", count, seed, {task: 1.0})
            rates.append(count / (time.perf_counter() - start))
        print(f"{task:20s} {rates[0]:10.1f} {rates[1]:10.1f}")


def demo(folder: Path, seed: int) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for task in ("describe", "direction", "transcribe_digits"):
        (e,) = make_examples("test", 1, seed, {task: 1.0}, spoken_fraction=1.0)
        for part in e.messages[0]["content"]:
            if part["type"] == "image":
                Image.fromarray(part["image"]).save(folder / f"{task}.png")
            elif part["type"] == "video":
                (folder / f"{task}.mp4").write_bytes(encode_mp4(part["video"], part["fps"]))
            elif part["type"] == "audio":
                write_wav(folder / f"{task}-question.wav", *part["audio"])
        write_wav(folder / f"{task}-answer.wav", speech.speak_answer(e.answer, e.answer_voice), speech.OUTPUT_SAMPLE_RATE)
        print(f"{task}: {e.question!r} -> {e.answer!r} (answer voice {e.answer_voice})")
    print(f"wrote {folder}")


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m omnistream.synth", description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=0, help="print this many examples per task")
    parser.add_argument("--bench", type=int, default=0, help="time this many examples per task")
    parser.add_argument("--demo", type=Path, help="write demo media into this folder")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO)
    if args.samples:
        show_samples(args.samples, args.seed)
    if args.bench:
        bench(args.bench, args.seed)
    if args.demo:
        demo(args.demo, args.seed)
    if not (args.samples or args.bench or args.demo):
        parser.print_help()


if __name__ == "__main__":
    main()
