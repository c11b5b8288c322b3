"""`omnistream eval [--model PATH] [--per-task N] [--speech N] [--tasks a,b] [--card FILE] [--json FILE]`."""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from omnistream.evaluation.card import write_model_card
from omnistream.evaluation.runner import evaluate
from omnistream.synth.tasks import TASKS


def add_eval_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of `omnistream eval` (the COMMANDS table of omnistream/cli.py)."""
    parser.add_argument("--model", default=None, help="checkpoint folder (default: the built-in model)")
    parser.add_argument("--per-task", type=int, default=40, help="test examples per task")
    parser.add_argument("--speech", type=int, default=30, help="spoken answers to check (0: skip)")
    parser.add_argument("--seed", type=int, default=1234)
    parser.add_argument("--tasks", type=_task_list, default=TASKS,
                        help="comma-separated tasks to ask (default: all), e.g. describe,direction")
    parser.add_argument("--json", default=None, help="write the raw results here")
    parser.add_argument("--card", default=None, help="write a model card (e.g. docs/model-card.md)")


def _task_list(text: str) -> tuple[str, ...]:
    names = tuple(t.strip() for t in text.split(",") if t.strip())
    unknown = [t for t in names if t not in TASKS]
    if unknown or not names:
        raise argparse.ArgumentTypeError(f"unknown task(s) {unknown or [text]}; expected some of {list(TASKS)}")
    return names


def eval_main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="omnistream eval", description=__doc__)
    add_eval_arguments(parser)
    logging.basicConfig(level=logging.WARNING)
    return eval_command(parser.parse_args(sys.argv[1:] if argv is None else argv))


def eval_command(args: argparse.Namespace) -> int:
    result = evaluate(args.model, per_task=args.per_task, speech=args.speech, seed=args.seed, tasks=args.tasks)
    for key, value in result.accuracy.items():
        print(f"{key:32s} {value:6.1%}  (n={result.counts[key]})")
    if result.transcription_wer is not None:
        print(f"{'transcription WER':32s} {result.transcription_wer:6.1%}")
    if result.intelligibility_wer is not None:
        print(f"{'intelligibility WER':32s} {result.intelligibility_wer:6.1%}  (n={result.speech_samples})")
        if result.espeak_intelligibility_wer is not None:
            print(f"{'  espeak-ng itself, same answers':32s} {result.espeak_intelligibility_wer:6.1%}")
        for task, value in result.intelligibility_by_task.items():
            print(f"{'  ' + task:32s} {value:6.1%}  (n={result.speech_counts[task]})")
        print(f"{'real-time factor':32s} {result.real_time_factor:.3f}")
        print(f"{'time to first audio':32s} {result.time_to_first_audio_ms:.0f} ms")
    if args.json:
        Path(args.json).write_text(result.to_json())
    if args.card:
        write_model_card(args.card, result, args.model)
    return 0


if __name__ == "__main__":
    raise SystemExit(eval_main())
