"""The `omnistream` command: run | chat | bench (and serve / train / eval, registered by their own modules).

Each subcommand is one entry of `COMMANDS`: a name, a one-line help, and "module:function" paths of a function
that adds its arguments to an argparse parser and a function that runs it (`(args) -> exit code`). Modules
are imported only when their subcommand runs, so `omnistream --help` stays fast and optional dependencies
(the server, training) are only needed by the commands that use them. To add a command, add a line here.
"""
from __future__ import annotations

import argparse
import importlib
import logging
import sys
import time
import wave
from pathlib import Path
from typing import Any, Callable

import numpy as np

logger = logging.getLogger(__name__)

# name: (help, "module:add_arguments", "module:main")
COMMANDS: dict[str, tuple[str, str, str]] = {
    "run": ("answer one question about media files, streaming the text and saving the speech",
            "omnistream.cli:add_run_arguments", "omnistream.cli:run_main"),
    "chat": ("chat in the terminal (interactive, or one question given on the command line)",
             "omnistream.cli:add_chat_arguments", "omnistream.cli:chat_main"),
    "bench": ("benchmark the engine against transformers on random-weight models (tiny / slice shapes)",
              "omnistream.cli:add_bench_arguments", "omnistream.cli:bench_main"),
    "serve": ("serve the OpenAI chat API with streamed speech, a realtime voice WebSocket and a web page",
              "omnistream.server.cli:add_arguments", "omnistream.server.cli:run_serve"),
    "train": ("train a model from a recipe file (recipes/*.py)",
              "omnistream.train.cli:add_train_arguments", "omnistream.train.cli:train_command"),
    "eval": ("evaluate a model on a fresh shapes-world test set and write the model card",
             "omnistream.evaluation.cli:add_eval_arguments", "omnistream.evaluation.cli:eval_command"),
    "demo": ("draw a picture, ask the built-in model a spoken question about it, stream and save the answer",
             "omnistream.demo:add_demo_arguments", "omnistream.demo:demo_command"),
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="omnistream", description="Run, serve and train Qwen3-Omni-style models.")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (help_text, add_arguments, _) in COMMANDS.items():
        sub = commands.add_parser(name, help=help_text, description=help_text)
        _resolve(add_arguments)(sub)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    if args.command is None:
        parser.print_help()
        return 2
    from omnistream.errors import OmnistreamError
    try:
        return int(_resolve(COMMANDS[args.command][2])(args) or 0)
    except OmnistreamError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


def _resolve(path: str) -> Callable[..., Any]:
    module, _, name = path.partition(":")
    return getattr(importlib.import_module(module), name)


# ---------------------------------------------------------------------------------------------- shared
def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", help="checkpoint folder (default: the built-in model)")
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1 or auto (default: cpu)")
    parser.add_argument("--dtype", default=None, help="bfloat16, float16 or float32 (default: the checkpoint's)")
    parser.add_argument("--compile", action="store_true", help="torch.compile the decode steps")


def add_generation_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--voice", help="speaker name (default: the checkpoint's default voice)")
    parser.add_argument("--no-audio", action="store_true", help="text only, no speech")
    parser.add_argument("--max-new-tokens", type=int, help="answer length limit in tokens")
    parser.add_argument("--temperature", type=float, help="0 for greedy (default: the checkpoint's)")
    parser.add_argument("--top-p", type=float)
    parser.add_argument("--top-k", type=int)
    parser.add_argument("--seed", type=int, help="make sampling reproducible")
    parser.add_argument("--system", help="system prompt")


def load_omni(args: argparse.Namespace):
    from omnistream.api import Omni
    started = time.perf_counter()
    omni = Omni.from_pretrained(args.model, device=args.device, dtype=args.dtype, compile=args.compile)
    print(f"[loaded {args.model or 'built-in model'} in {time.perf_counter() - started:.1f} s]", file=sys.stderr)
    return omni


def generation_options(args: argparse.Namespace) -> dict[str, Any]:
    return dict(voice=args.voice, max_new_tokens=args.max_new_tokens, temperature=args.temperature,
                top_p=args.top_p, top_k=args.top_k, seed=args.seed, return_audio=False if args.no_audio else None)


def write_text_delta(out, event, thinking_open: bool, after_thinking: str = "]\n") -> bool:
    """Write one TextDelta, thinking in brackets ("[thinking: …]"); returns whether the bracket is open after it."""
    if event.is_thinking != thinking_open:
        out.write("[thinking: " if event.is_thinking else after_thinking)
    out.write(event.text)
    out.flush()
    return event.is_thinking


def stream_answer(omni, messages: list[dict[str, Any]], options: dict[str, Any], out=sys.stdout):
    """Print text deltas as they come (thinking dimmed in brackets); return (reply, timing summary)."""
    from omnistream.api import collect
    from omnistream.engine.events import AudioChunk, Done, TextDelta

    started = time.perf_counter()
    events = []
    thinking_open = False
    for event in omni.stream(messages, **options):
        events.append(event)
        if isinstance(event, TextDelta) and event.text:
            thinking_open = write_text_delta(out, event, thinking_open)
        elif isinstance(event, (AudioChunk, Done)):
            continue
    if thinking_open:
        out.write("]")
    out.write("\n")
    reply = collect(iter(events))
    elapsed = time.perf_counter() - started
    seconds = reply.audio.size / reply.sample_rate
    parts = [f"{reply.usage.completion_tokens} tokens", f"{elapsed:.2f} s"]
    if "first_text" in reply.timings:
        parts.append(f"first text {reply.timings['first_text'] * 1000:.0f} ms")
    if "first_audio" in reply.timings:
        parts.append(f"first audio {reply.timings['first_audio'] * 1000:.0f} ms")
    if seconds:
        parts.append(f"{seconds:.2f} s of speech, real-time factor {elapsed / seconds:.2f}")
    return reply, "[" + ", ".join(parts) + "]"


def write_wav(path: str | Path, audio: np.ndarray, sample_rate: int) -> None:
    """16-bit PCM mono WAV."""
    pcm = (np.clip(audio, -1.0, 1.0) * 32767.0).astype("<i2")
    with wave.open(str(path), "wb") as f:
        f.setnchannels(1)
        f.setsampwidth(2)
        f.setframerate(sample_rate)
        f.writeframes(pcm.tobytes())


# ---------------------------------------------------------------------------------------------- run
def add_run_arguments(parser: argparse.ArgumentParser) -> None:
    add_model_arguments(parser)
    add_generation_arguments(parser)
    parser.add_argument("--image", action="append", default=[], help="image file (repeatable)")
    parser.add_argument("--audio", action="append", default=[], help="audio file (repeatable)")
    parser.add_argument("--video", action="append", default=[], help="video file (repeatable)")
    parser.add_argument("--output", default="answer.wav", help="where to write the spoken answer (answer.wav)")
    parser.add_argument("question", nargs="?", default="", help="the text of the question")


def run_main(args: argparse.Namespace) -> int:
    content: list[dict[str, Any]] = []
    for kind in ("image", "audio", "video"):
        content += [{"type": kind, kind: str(Path(p).expanduser())} for p in getattr(args, kind)]
    if args.question:
        content.append({"type": "text", "text": args.question})
    if not content:
        print("error: give a question and/or media (--image/--audio/--video)", file=sys.stderr)
        return 2
    messages = ([{"role": "system", "content": args.system}] if args.system else []) + \
        [{"role": "user", "content": content}]
    with load_omni(args) as omni:
        reply, summary = stream_answer(omni, messages, generation_options(args))
    if reply.audio.size:
        write_wav(args.output, reply.audio, reply.sample_rate)
        summary += f" [speech → {args.output}]"
    print(summary, file=sys.stderr)
    return 0


# ---------------------------------------------------------------------------------------------- chat
def add_chat_arguments(parser: argparse.ArgumentParser) -> None:
    add_model_arguments(parser)
    add_generation_arguments(parser)
    parser.add_argument("--save-audio", metavar="DIR", help="write each spoken answer to DIR/turn-N.wav")
    parser.add_argument("question", nargs="?", help="ask one question and exit (else: interactive)")


def chat_main(args: argparse.Namespace) -> int:
    history: list[dict[str, Any]] = [{"role": "system", "content": args.system}] if args.system else []
    options = generation_options(args)
    save = Path(args.save_audio) if args.save_audio else None
    if save:
        save.mkdir(parents=True, exist_ok=True)
    with load_omni(args) as omni:
        if args.question:
            reply, summary = stream_answer(omni, history + [{"role": "user", "content": args.question}], options)
            _save_turn(save, 1, reply)
            print(summary, file=sys.stderr)
            return 0
        print("[type a message; /reset clears the conversation, /exit or Ctrl-D quits]", file=sys.stderr)
        turn = 0
        while True:
            try:
                line = input("you> ").strip()
            except EOFError:
                print(file=sys.stderr)
                return 0
            if line in ("/exit", "/quit"):
                return 0
            if line == "/reset":
                history = history[:1] if args.system else []
                continue
            if not line:
                continue
            history.append({"role": "user", "content": line})
            sys.stdout.write("omni> ")
            reply, summary = stream_answer(omni, history, options)
            history.append({"role": "assistant", "content": reply.text})
            turn += 1
            _save_turn(save, turn, reply)
            print(summary, file=sys.stderr)


def _save_turn(folder: Path | None, turn: int, reply) -> None:
    if folder is not None and reply.audio.size:
        write_wav(folder / f"turn-{turn}.wav", reply.audio, reply.sample_rate)


# ---------------------------------------------------------------------------------------------- bench
def add_bench_arguments(parser: argparse.ArgumentParser) -> None:
    from omnistream.bench import add_arguments
    add_arguments(parser)


def bench_main(args: argparse.Namespace) -> int:
    from omnistream.bench import main as bench
    return bench(args)


if __name__ == "__main__":
    sys.exit(main())
