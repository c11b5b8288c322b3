"""Batching invariance: four different requests run together (continuous batching, joining at different steps)
give each exactly what it gives alone — thinker ids, talker codes and audio — greedy and seeded sampling alike;
and a cancelled request leaves its slot and the batch within one step, without disturbing the others."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from omnistream.engine.config import EngineConfig
from omnistream.engine.defaults import GenerationDefaults
from omnistream.engine.engine import Engine
from omnistream.engine.events import AudioChunk, Done
from omnistream.inputs import Processor
from omnistream.models.omni import OmniModel
from tests.engine_fixtures import cached_checkpoint, conversations

REQUESTS = {
    # name: (conversation, options) — two greedy, two sampled with seeds; different voices and lengths
    "a": ("audio_image", dict(temperature=0, max_new_tokens=12, talker_temperature=0, voice="ethan")),
    "b": ("system_text", dict(temperature=0.8, top_k=40, top_p=0.9, seed=7, max_new_tokens=9, voice="chelsie")),
    "c": ("multi_turn", dict(temperature=0, max_new_tokens=5, talker_temperature=0, voice="aiden")),
    "d": ("short", dict(temperature=1.0, seed=11, max_new_tokens=7, talker_temperature=0.9, return_audio=True)),
}


@pytest.fixture(scope="module")
def parts(tmp_path_factory):
    folder = cached_checkpoint(tmp_path_factory)
    model = OmniModel.from_pretrained(folder, dtype=torch.float32)
    processor = Processor.from_pretrained(folder)
    return model, processor, GenerationDefaults.from_checkpoint(folder, model.config.im_end_token_id)


def _engine(parts, **config) -> Engine:
    model, processor, defaults = parts
    return Engine(model, text_decoder=processor.incremental_decoder, config=EngineConfig(**config),
                  defaults=defaults, token_ids=processor.token_ids)


def _add(engine: Engine, parts, name: str) -> str:
    _, processor, defaults = parts
    conversation, options = REQUESTS[name]
    params = defaults.sampling_params(talker_max_new_tokens=24, talker_min_new_tokens=3, **options)
    return engine.add_request(processor(conversations()[conversation]), params, request_id=name).request_id


def _run(engine: Engine, parts, schedule: dict[int, list[str]]) -> dict[str, dict]:
    """Add requests at the given step numbers, step until all are done; collect each one's results."""
    results = {name: {"audio": []} for names in schedule.values() for name in names}
    step = 0
    while step <= max(schedule) or engine.has_work:
        for name in schedule.get(step, []):
            _add(engine, parts, name)
        for event in engine.step():
            out = results[event.request_id]
            if isinstance(event, AudioChunk):
                out["audio"].append(event.samples)
            elif isinstance(event, Done):
                out.update(ids=event.token_ids, codes=event.audio_codes, text=event.text)
        step += 1
    for out in results.values():
        out["audio"] = np.concatenate(out["audio"]) if out["audio"] else np.zeros(0, np.float32)
    return results


@pytest.fixture(scope="module")
def alone(parts):
    return {name: _run(_engine(parts, max_num_seqs=1), parts, {0: [name]})[name] for name in REQUESTS}


def _assert_same(got: dict, want: dict) -> None:
    assert got["ids"] == want["ids"] and got["text"] == want["text"]
    assert (got["codes"] is None) == (want["codes"] is None)
    if want["codes"] is not None:
        np.testing.assert_array_equal(got["codes"], want["codes"])
    np.testing.assert_allclose(got["audio"], want["audio"], rtol=0, atol=1e-5)


def test_four_requests_together_equal_each_alone(parts, alone):
    together = _run(_engine(parts, max_num_seqs=4), parts, {0: list(REQUESTS)})
    for name in REQUESTS:
        _assert_same(together[name], alone[name])
    assert all(alone[n]["codes"] is not None and alone[n]["codes"].shape[1] > 0 for n in REQUESTS)


def test_requests_joining_and_queueing_equal_each_alone(parts, alone):
    """Staggered arrivals and only 2 slots: requests wait, join running batches and leave them."""
    together = _run(_engine(parts, max_num_seqs=2), parts, {0: ["a"], 1: ["b"], 3: ["c", "d"]})
    for name in REQUESTS:
        _assert_same(together[name], alone[name])


def test_cancelled_request_frees_its_slot_within_one_step(parts, alone):
    engine = _engine(parts, max_num_seqs=2)
    for name in ("a", "b"):
        _add(engine, parts, name)
    results = {"a": [], "b": []}
    for _ in range(3):
        for event in engine.step():
            results[event.request_id].append(event)
    free_before = engine.accounts.thinker.num_free
    done = engine.abort("b")
    assert isinstance(done[-1], Done) and done[-1].finish_reason == "abort"
    assert all(e.request_id == "b" for e in done)
    assert engine.accounts.thinker.num_free == free_before + 1          # freed at once, before any step
    assert engine.accounts.talker.num_free == 1
    assert "b" not in engine.thinker.rows and "b" not in engine.speech.talker.rows
    plan = engine.scheduler.schedule()
    assert all(r.request_id != "b" for r in plan.decode + plan.talker_decode + plan.prefill)
    while engine.has_work:
        for event in engine.step():
            assert event.request_id == "a"                              # b takes no further compute
            results["a"].append(event)
    final = [e for e in results["a"] if isinstance(e, Done)][0]
    assert final.token_ids == alone["a"]["ids"]
    np.testing.assert_array_equal(final.audio_codes, alone["a"]["codes"])
    assert engine.accounts.thinker.num_free == 2 and engine.accounts.talker.num_free == 2
