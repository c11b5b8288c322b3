"""Word error rate, the recogniser on clean espeak speech, and the model card writer."""
from __future__ import annotations

import json

import pytest

from omnistream.evaluation.metrics import word_errors, wer
from omnistream.evaluation.runner import EvalResult


def test_word_errors():
    assert word_errors("the circle is red", "the circle is red") == (0, 4)
    assert word_errors("the circle is red", "the square is red") == (1, 4)
    assert word_errors("seven three nine", "seven nine") == (1, 3)
    assert word_errors("no", "no no no") == (2, 1)
    assert wer([("a b", "a b"), ("c d", "")]) == pytest.approx(0.5)


def test_recogniser_hears_the_output_voices():
    pytest.importorskip("pocketsphinx")
    from omnistream.evaluation.metrics import Recogniser
    from omnistream.synth import speak_answer

    recogniser = Recogniser()
    for voice in ("ethan", "chelsie"):
        assert recogniser.transcribe(speak_answer("The circle is red.", voice), 24000) == "the circle is red"


def test_model_card(tmp_path):
    from omnistream.evaluation.card import write_model_card

    result = EvalResult(accuracy={"color/text": 1.0, "transcribe_digits/speech": 0.5},
                        counts={"color/text": 4, "transcribe_digits/speech": 2}, transcription_wer=0.1,
                        intelligibility_wer=0.2, espeak_intelligibility_wer=0.02, speech_samples=3, real_time_factor=0.3, time_to_first_audio_ms=120,
                        intelligibility_by_task={"color": 0.0, "transcribe_digits": 0.5},
                        speech_counts={"color": 2, "transcribe_digits": 1},
                        text_seconds_per_answer=0.05, config={"seed": 1, "per_task": 4},
                        examples=[{"task": "color/text", "question": "q", "answer": "a", "reply": "a"},
                                  {"task": "color/speech", "question": "q", "answer": "a", "reply": "b",
                                   "thinking": "what color"}])
    text = write_model_card(tmp_path / "card.md", result, str(tmp_path)).read_text()
    assert "| color/text | 100.0% | 4 |" in text and "20.0%" in text and "120 ms" in text
    assert "**20.0%** (target ≤ 15%); espeak-ng's own speech of the same answers, same voices: 2.0%" in text
    assert "  - by task, worst first: transcribe_digits 50.0% (n=1), color 0.0% (n=2)" in text
    assert "| color/speech | q | a | [thinking: what color] b |" in text
    # the command that reproduces the card is the one that measured it, not eval's defaults
    assert "Reproduce: `omnistream eval --per-task 4 --speech 3 --seed 1 --card docs/model-card.md`" in text


def test_model_card_names_the_rounds_and_keeps_the_hand_written_history(tmp_path):
    from omnistream.evaluation.card import HISTORY_BEGIN, HISTORY_END, write_model_card

    stages = [{"name": n, "steps": 1, "minutes": 1.0, "loss": 0.1} for n in
              ("thinker_joint", "thinker_cont", "talker_cont", "thinker_cont2", "thinker_cont3", "talker_cont4")]
    (tmp_path / "training.json").write_text(json.dumps({"stages": stages, "notes": "n"}))
    card = tmp_path / "card.md"
    card.write_text(f"# old card\n\n{HISTORY_BEGIN}\n### Round 3\n| a | b |\n{HISTORY_END}\n\n## Evaluation\nold\n")
    result = EvalResult(accuracy={"color/text": 0.5}, counts={"color/text": 2}, config={"seed": 1, "per_task": 2})
    text = write_model_card(card, result, str(tmp_path)).read_text()
    assert "`recipes/continue.py` rounds 1, 2, 3 and 4" in text            # round 4 trained only the talker
    assert "`--round 1`, then `--round 2`, then `--round 3`, then `--round 4`" in text
    assert text.count("### Round 3") == 1 and text.index("### Round 3") < text.index("## Evaluation")
    assert "old\n" not in text and "| color/text | 50.0% | 2 |" in text


def test_model_card_gives_the_recipe_command_the_run_recorded(tmp_path):
    from omnistream.evaluation.card import write_model_card

    stages = [{"name": n, "steps": 1, "minutes": 1.0, "loss": 0.1} for n in ("codec", "thinker_joint", "talker")]
    (tmp_path / "training.json").write_text(json.dumps(
        {"stages": stages, "notes": "n", "recipe": "omnistream train recipes/builtin.py --hours 2.4"}))
    result = EvalResult(accuracy={"color/text": 0.5}, counts={"color/text": 2}, config={"seed": 1, "per_task": 2})
    text = write_model_card(tmp_path / "card.md", result, str(tmp_path)).read_text()
    assert "retrain: `omnistream train recipes/builtin.py --hours 2.4`." in text
    assert "continue.py" not in text


class _ThinkingSpeaker:
    """A stand-in model that speaks every test answer perfectly (espeak) after a thinking span it never says."""
    has_speech = True

    def __init__(self, count: int, seed: int):
        from omnistream.synth import TASKS, make_examples

        self.answers = [e.answer for e in make_examples("test", count, seed + 1, {t: 1.0 for t in TASKS},
                                                        spoken_fraction=0.5)]

    def stream(self, messages, voice, **options):
        from omnistream.engine.events import AudioChunk, TextDelta
        from omnistream.synth import speak_answer

        answer = self.answers.pop(0)
        yield TextDelta("r", "what do you see in the picture", (), True)
        yield TextDelta("r", answer, (), False)
        audio = speak_answer(answer, voice)
        yield AudioChunk("r", audio, 24000, 0, 1)


def test_intelligibility_compares_speech_with_the_answer_not_the_thinking():
    pytest.importorskip("pocketsphinx")
    from omnistream.evaluation.runner import evaluate_speech

    result = EvalResult()
    evaluate_speech(_ThinkingSpeaker(6, seed=5), 6, 5, result)
    assert result.speech_samples == 6
    assert result.intelligibility_wer is not None and result.intelligibility_wer <= 0.1
    # it spoke espeak-ng's own audio, so the floor measured beside it is the same figure
    assert result.espeak_intelligibility_wer == result.intelligibility_wer
    # per task: every answer counted once, each task's WER within the whole's range
    assert sum(result.speech_counts.values()) == 6 and set(result.speech_counts) == set(result.intelligibility_by_task)
    assert all(0.0 <= v <= 0.5 for v in result.intelligibility_by_task.values())
    assert all("picture" not in row["answer"] for row in result.examples)
