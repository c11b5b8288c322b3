"""docs/model-card.md from an evaluation result, the checkpoint's config and its training summary."""
from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from omnistream.evaluation.runner import EvalResult

TARGETS = {"image": 0.95, "video": 0.90, "speech": 0.90}
# Hand-written history (what each training round changed and measured) lives between these markers in the card;
# regenerating the card keeps it, since no training.json field can hold a before/after table.
HISTORY_BEGIN, HISTORY_END = "<!-- history: kept when the card is regenerated -->", "<!-- /history -->"


def _component(key: str) -> str:
    parts = key.split(".")
    if parts[0] == "thinker":
        return f"thinker.{parts[1]}" if parts[1] in ("audio_tower", "visual") else "thinker.text"
    if parts[0] == "talker" and parts[1] == "code_predictor":
        return "talker.code_predictor"
    return parts[0]


def _sizes(folder: Path) -> dict[str, int]:
    from safetensors import safe_open

    counts: dict[str, int] = {}
    path = folder / "model.safetensors"
    if not path.is_file():
        return counts
    with safe_open(str(path), "pt") as f:
        for key in f.keys():
            name = _component(key)
            counts[name] = counts.get(name, 0) + _numel(f.get_slice(key).get_shape())
    return counts


def _numel(shape: Any) -> int:
    n = 1
    for s in shape:
        n *= int(s)
    return n


def _rounds(training: dict) -> list[int]:
    """Continuation rounds in a training summary: stage thinker_cont or talker_cont is round 1, thinker_contN or
    talker_contN round N (round 11 trained only the talker)."""
    found = (re.fullmatch(r"(?:thinker|talker)_cont(\d*)", s.get("name", "")) for s in training.get("stages", []))
    return sorted({int(m.group(1) or 1) for m in found if m})


def _say_list(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def _kept_history(path: Path) -> list[str]:
    if not path.is_file():
        return []
    text = path.read_text()
    start, end = text.find(HISTORY_BEGIN), text.find(HISTORY_END)
    if start < 0 or end < start:
        return []
    return text[start:end + len(HISTORY_END)].split("\n") + [""]


def _pct(value: float | None) -> str:
    return "—" if value is None else f"{value:.1%}"


def _by_task(result: EvalResult) -> str:
    ranked = sorted(result.intelligibility_by_task.items(), key=lambda kv: -kv[1])
    return ", ".join(f"{task} {_pct(value)} (n={result.speech_counts.get(task, 0)})" for task, value in ranked)


def write_model_card(path: str | Path, result: EvalResult, model: str | None = None) -> Path:
    from omnistream.api import BUILTIN_MODEL

    folder = Path(model) if model else BUILTIN_MODEL
    training = {}
    if (folder / "training.json").is_file():
        training = json.loads((folder / "training.json").read_text())
    sizes = _sizes(folder)
    rounds = [str(r) for r in _rounds(training)]
    continued = f", then continued by `recipes/continue.py` round{'s' if len(rounds) > 1 else ''} " \
                f"{_say_list(rounds)}" if rounds else ""
    lines = ["# Model card: the omnistream built-in model", "",
             "A small omni model in the Qwen3-Omni architecture and checkpoint format, trained from nothing on this",
             f"repository's synthetic shapes world with omnistream's own training code (`recipes/builtin.py`{continued}"
             " — the stages below). It",
             "hears (16 kHz speech), sees (images, 2 fps videos), answers in text and speaks the answer in two",
             "voices (`ethan`, `chelsie`). It knows nothing outside the shapes world.", "",
             "## Components (parameters)", "", "| component | parameters |", "|---|---|"]
    lines += [f"| {k} | {v:,} |" for k, v in sorted(sizes.items())]
    lines += [f"| **total** | **{sum(sizes.values()):,}** |", ""]
    if training:
        lines += ["## Training", "", "| stage | steps | minutes | final loss | notes |", "|---|---|---|---|---|"]
        for stage in training.get("stages", []):
            lines.append(f"| {stage.get('name')} | {stage.get('steps')} | {stage.get('minutes', 0):.0f} | "
                         f"{stage.get('loss', float('nan')):.3f} | {stage.get('notes', '')} |")
        lines += ["", training.get("notes", ""), ""]
    lines += _kept_history(Path(path))
    lines += ["## Evaluation", "",
              f"Fresh test set (`omnistream eval`, seed {result.config.get('seed')}, {result.config.get('per_task')} "
              "examples per task; spoken questions use espeak-ng voices never heard in training). Exact match of "
              "the whole answer sentence, greedy decoding.", "",
              "| task / question modality | accuracy | n | target |", "|---|---|---|---|"]
    for key, value in result.accuracy.items():
        task, modality = key.split("/")
        target = TARGETS["video"] if task in ("direction", "moving_color") else \
            TARGETS["speech"] if modality == "speech" else TARGETS["image"]
        if task.startswith("transcribe"):
            target_text = "WER ≤ 5%"
        else:
            target_text = f"≥ {target:.0%}"
        lines.append(f"| {key} | {value:.1%} | {result.counts[key]} | {target_text} |")
    lines += ["", f"- Transcription WER: **{_pct(result.transcription_wer)}** (target ≤ 5%)",
              f"- Intelligibility WER of its own speech (pocketsphinx, world grammar, {result.speech_samples} answers): "
              f"**{_pct(result.intelligibility_wer)}** (target ≤ 15%)"
              + (f"; espeak-ng's own speech of the same answers, same voices: {_pct(result.espeak_intelligibility_wer)}"
                 if result.espeak_intelligibility_wer is not None else ""),
              *([f"  - by task, worst first: {_by_task(result)}"] if result.intelligibility_by_task else []),
              f"- Real-time factor (wall time / audio duration, median): **{result.real_time_factor:.3f}**"
              if result.real_time_factor is not None else "- Real-time factor: —",
              f"- Time to first audio (median): **{result.time_to_first_audio_ms:.0f} ms**"
              if result.time_to_first_audio_ms is not None else "- Time to first audio: —",
              f"- Text answer latency (mean, no audio): {result.text_seconds_per_answer * 1000:.0f} ms"
              if result.text_seconds_per_answer else "", "", "## Sample outputs", "",
              "| task | question | expected | model |", "|---|---|---|---|"]
    for row in result.examples[:80]:           # every task's first reply and up to 3 misses, then speech
        got = row.get("reply", row.get("heard", ""))
        if row.get("thinking"):
            got = f"[thinking: {row['thinking']}] {got}"
        lines.append(f"| {row['task']} | {row.get('question', '')} | {row.get('answer', '')} | {got} |")
    retrain = f"`{training.get('recipe', 'omnistream train recipes/builtin.py')}`"
    if rounds:
        retrain += (", then `recipes/continue.py` (thinker and talker side by side, "
                    + ", then ".join(f"`--round {r}`" for r in rounds) + ", each followed by `finish`"
                    + ("; from round 4 the talker after `adapters` and `record`, see its docstring"
                       if any(int(r) >= 4 for r in rounds) else "")
                    + ")")
    command = (f"omnistream eval --per-task {result.config.get('per_task')} --speech {result.speech_samples} "
               f"--seed {result.config.get('seed')} --card docs/model-card.md")
    lines += ["", f"Reproduce: `{command}`; retrain: {retrain}.", ""]
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines))
    return path
