"""The shipped built-in model: loads with no path, answers fixed questions correctly, and two loads give
identical greedy text and speech codes."""
from __future__ import annotations

import numpy as np
import pytest

from omnistream.api import BUILTIN_MODEL, Omni
from omnistream.synth import make_examples


# (task, index in make_examples("test", ..., seed=GOLDEN_SEED, task_mix={task: 1})) whose answers the shipped
# model gets right; the expected answer is the world's ground truth, not a recorded model output.
GOLDEN_SEED = 4242
GOLDEN = [("color", 2), ("color", 5), ("exists", 2), ("shape_of_color", 0), ("shape_of_color", 3), ("count", 0),
          ("describe", 0), ("describe", 4)]


def _golden_examples():
    out = []
    for task, index in GOLDEN:
        examples = make_examples("test", index + 1, GOLDEN_SEED, {task: 1.0}, spoken_fraction=0.0)
        out.append(examples[index])
    return out


def test_builtin_checkpoint_is_complete():
    for name in ("config.json", "tokenizer.json", "tokenizer_config.json", "chat_template.json",
                 "preprocessor_config.json", "model.safetensors"):
        assert (BUILTIN_MODEL / name).is_file(), name
    assert (BUILTIN_MODEL / "model.safetensors").stat().st_size < 40 * 2**20


def test_golden_answers_and_identical_reloads():
    examples = _golden_examples()
    runs = []
    for _ in range(2):
        with Omni.from_pretrained() as omni:
            replies = [omni.chat(e.messages, max_new_tokens=48, return_audio=False) for e in examples]
            spoken = omni.chat(examples[0].messages, voice="chelsie", max_new_tokens=48, return_audio=True,
                               talker_temperature=0.0, talker_repetition_penalty=1.0)
        runs.append((replies, spoken))
    (first, spoken_a), (second, spoken_b) = runs
    assert [r.text for r in first] == [e.answer for e in examples]
    assert [r.token_ids for r in first] == [r.token_ids for r in second]
    assert spoken_a.text == spoken_b.text
    assert spoken_a.audio.size > 0 and spoken_a.sample_rate == 24000
    np.testing.assert_array_equal(spoken_a.audio_codes, spoken_b.audio_codes)
    np.testing.assert_array_equal(spoken_a.audio, spoken_b.audio)
