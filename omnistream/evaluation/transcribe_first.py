"""Would a spoken question be answered better if the model wrote it down first? A probe, not a serving mode.

For every spoken question of a task (the eval's test examples), the same model answers three ways: directly (as
`omnistream eval` asks it), by transcribing the question's own audio ("Transcribe the audio."), and by answering
its own transcript typed, over the same image or video. The gap between the first and the last says how much the
speech path knows that the answer does not use (docs/model-card.md, twelfth session).

    python -m omnistream.evaluation.transcribe_first --model M --per-task 100 --seed 1234 exists count
"""
from __future__ import annotations

import argparse
from dataclasses import dataclass
from typing import Any

from omnistream.errors import ConfigError
from omnistream.synth import make_examples
from omnistream.synth import sentences as say
from omnistream.synth.tasks import IMAGE_TASKS, VIDEO_TASKS

_STATEMENT = say.spoken_form(say.DESCRIBE_QUESTION).split()[0]   # the one question that ends with a full stop


@dataclass
class ProbeResult:
    task: str
    spoken: int            # spoken questions among the task's test examples
    direct: float          # answered right as asked
    transcribed: float     # the question's audio transcribed word for word
    typed_after: float     # answered right when asked its own transcript, typed


def typed_question(transcript: str) -> str:
    """A transcript in spoken form ("is there a red circle") written back as the world writes its questions."""
    words = transcript.strip()
    if not words:
        return ""
    mark = "." if words.split()[0] == _STATEMENT else "?"
    return words[0].upper() + words[1:] + mark


def probe_task(omni: Any, task: str, per_task: int, seed: int) -> ProbeResult:
    if task not in IMAGE_TASKS + VIDEO_TASKS:
        raise ConfigError(f"transcribe_first: {task!r} is not an image or video task (one of "
                          f"{list(IMAGE_TASKS + VIDEO_TASKS)})")
    examples = [e for e in make_examples("test", per_task, seed, {task: 1.0}, spoken_fraction=0.5)
                if e.question_modality == "speech"]
    direct = transcribed = typed_after = 0
    for e in examples:
        content = e.messages[0]["content"]
        audio = [part for part in content if part["type"] == "audio"]
        media = [part for part in content if part["type"] in ("image", "video")]
        direct += _reply(omni, e.messages) == e.answer
        heard = _reply(omni, [{"role": "user", "content": audio + [{"type": "text", "text": say.TRANSCRIBE_QUESTION}]}])
        transcribed += heard == say.spoken_form(e.question)
        asked = [{"role": "user", "content": media + [{"type": "text", "text": typed_question(heard)}]}]
        typed_after += _reply(omni, asked) == e.answer
    n = max(len(examples), 1)
    return ProbeResult(task, len(examples), direct / n, transcribed / n, typed_after / n)


def _reply(omni: Any, messages: list[dict[str, Any]]) -> str:
    return omni.chat(messages, return_audio=False, max_new_tokens=48).text.strip()


def main(argv: list[str] | None = None) -> None:
    from omnistream.api import Omni

    parser = argparse.ArgumentParser(prog="python -m omnistream.evaluation.transcribe_first")
    parser.add_argument("tasks", nargs="+")
    parser.add_argument("--model", default=None, help="checkpoint folder (default: the built-in model)")
    parser.add_argument("--per-task", type=int, default=100)
    parser.add_argument("--seed", type=int, default=1234)
    args = parser.parse_args(argv)
    omni = Omni.from_pretrained(args.model)
    print("| spoken questions | n | answered directly | transcript exactly right | transcribe, then answer typed |")
    print("|---|---|---|---|---|")
    for task in args.tasks:
        r = probe_task(omni, task, args.per_task, args.seed)
        print(f"| {r.task} | {r.spoken} | {r.direct:.1%} | {r.transcribed:.1%} | {r.typed_after:.1%} |", flush=True)


if __name__ == "__main__":
    main()
