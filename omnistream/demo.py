"""`make demo`: draw a picture, ask a spoken question about it, stream the answer and save the speech.

Uses only the public API and the built-in model (nothing is downloaded): the picture comes from the shapes
world's generator, the question is spoken by espeak-ng with a voice the model never heard in training.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

from omnistream.cli import write_wav


def add_demo_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", default=None, help="checkpoint folder (default: the built-in model)")
    parser.add_argument("--out", default="out", help="folder for picture.png, question.wav and answer.wav")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--voice", default="chelsie")


def demo_main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="omnistream demo", description=__doc__)
    add_demo_arguments(parser)
    return demo_command(parser.parse_args(sys.argv[1:] if argv is None else argv))


def demo_command(args: argparse.Namespace) -> int:

    from PIL import Image

    from omnistream.api import Omni
    from omnistream.synth import draw_scene, held_out_voices, sample_scene, synthesize
    from omnistream.synth.speech import INPUT_SAMPLE_RATE, SpeechParams
    from omnistream.synth.tasks import color_task

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(args.seed)
    qa = None
    while qa is None:
        scene = sample_scene(rng)
        qa = color_task(rng, scene)
    picture = draw_scene(scene)                                                    # [224, 224, 3] uint8
    Image.fromarray(picture).save(out / "picture.png")
    voice = held_out_voices()[int(rng.integers(len(held_out_voices())))]
    question = synthesize(qa.question, SpeechParams(voice=voice.name, rate=160, pitch=50))
    write_wav(out / "question.wav", question, INPUT_SAMPLE_RATE)
    print(f"picture : {out / 'picture.png'}  ({', '.join(f'{s.color} {s.kind}' for s in scene.left_to_right())})")
    print(f"question: \"{qa.question}\" spoken by espeak-ng {voice.name} -> {out / 'question.wav'}")

    t0 = time.perf_counter()
    omni = Omni.from_pretrained(args.model)
    print(f"loaded the {'built-in' if args.model is None else args.model} model in {time.perf_counter() - t0:.2f} s")
    messages = [{"role": "user", "content": [{"type": "image", "image": picture},
                                             {"type": "audio", "audio": (question, INPUT_SAMPLE_RATE)}]}]
    start = time.perf_counter()
    first_text = first_audio = None
    chunks: list[np.ndarray] = []
    rate = 24000
    print("answer  : ", end="", flush=True)
    from omnistream.cli import write_text_delta
    from omnistream.evaluation.runner import talker_options

    speech_options = talker_options(args.model) if omni.has_speech else {}
    thinking_open = False       # the built-in model writes a spoken question down (as thinking) before answering
    for event in omni.stream(messages, voice=args.voice, return_audio=omni.has_speech, **speech_options):
        kind = type(event).__name__
        if kind == "TextDelta" and event.text:
            first_text = first_text or time.perf_counter() - start
            thinking_open = write_text_delta(sys.stdout, event, thinking_open, after_thinking="] ")
        elif kind == "AudioChunk" and len(event.samples):
            first_audio = first_audio or time.perf_counter() - start
            chunks.append(event.samples)
            rate = event.sample_rate
        elif kind == "Failed":
            print(f"\nfailed: {event.error}")
            return 1
    total = time.perf_counter() - start
    print("]" if thinking_open else "")
    print(f"expected: \"{qa.answer}\"")
    print(f"first text {1000 * (first_text or total):.0f} ms", end="")
    if chunks:
        audio = np.concatenate(chunks)
        write_wav(out / "answer.wav", audio, rate)
        seconds = audio.size / rate
        print(f", first audio {1000 * (first_audio or total):.0f} ms, {seconds:.2f} s of speech in {total:.2f} s "
              f"(real-time factor {total / max(seconds, 1e-9):.2f}) -> {out / 'answer.wav'}")
    else:
        print(f", done in {total:.2f} s (this checkpoint does not speak)")
    omni.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(demo_main())
