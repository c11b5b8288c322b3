"""Scheduler and cache accounting with fake requests: no model, no tensors."""
from __future__ import annotations

import pytest

from omnistream.engine.kv_cache import CacheAccounts, SlotPool
from omnistream.engine.request import Request, RequestStatus, SamplingParams, TalkerStage
from omnistream.engine.scheduler import Scheduler
from omnistream.errors import CapacityError


def fake(rid: str, prompt: int = 10, new: int = 5, speech: bool = False) -> Request:
    r = Request(request_id=rid, inputs=None, params=SamplingParams(), num_prompt_tokens=prompt, max_new_tokens=new)
    if speech:
        r.talker_stage = TalkerStage.PENDING
    return r


def make(slots: int = 2, length: int = 64, talker_len: int | None = 4200, **kw) -> Scheduler:
    return Scheduler(CacheAccounts(slots, length, talker_len), **kw)


def test_slot_pool_free_count_returns_to_initial():
    pool = SlotPool("thinker", 3, 100)
    slots = [pool.allocate(f"r{i}", 50) for i in range(3)]
    assert sorted(slots) == [0, 1, 2] and pool.num_free == 0 and not pool.can_allocate(1)
    with pytest.raises(CapacityError):
        pool.allocate("r3", 1)
    for i in range(3):
        pool.free(f"r{i}")
    assert pool.num_free == 3 and pool.num_reserved_tokens == 0
    assert pool.free("unknown") is None
    with pytest.raises(CapacityError):
        pool.allocate("big", 101)


def test_admission_under_capacity_then_continuous_batching():
    s = make(slots=2)
    for rid in "abc":
        s.add(fake(rid))
    plan = s.schedule()
    assert [r.request_id for r in plan.prefill] == ["a", "b"] and not plan.decode
    for r in plan.prefill:
        r.output_ids.append(1)                       # the engine samples g0 in the prefill
    plan = s.schedule()
    assert not plan.prefill and [r.request_id for r in plan.decode] == ["a", "b"]
    s.finish_thinker(s.get("a"), "stop")            # a leaves; c joins between steps
    assert s.get("a") is None and s.accounts.thinker.num_free == 1
    plan = s.schedule()
    assert [r.request_id for r in plan.prefill] == ["c"] and [r.request_id for r in plan.decode] == ["b"]


def test_prefill_token_budget_admits_first_request_regardless():
    s = make(slots=4, length=2000, max_prefill_tokens=100)
    s.add(fake("big", prompt=500))
    s.add(fake("small", prompt=50))
    assert [r.request_id for r in s.schedule().prefill] == ["big"]
    assert [r.request_id for r in s.schedule().prefill] == ["small"]


def test_abort_frees_slots_at_once_from_waiting_or_running():
    s = make(slots=1)
    s.add(fake("a", speech=True))
    s.add(fake("b"))
    (a,) = s.schedule().prefill
    assert s.accounts.thinker.num_free == 0 and s.accounts.talker.num_free == 0
    assert s.abort("b").status is RequestStatus.ABORTED       # still waiting
    assert s.abort("a").finish_reason == "abort"
    assert s.accounts.thinker.num_free == 1 and s.accounts.talker.num_free == 1
    assert s.abort("a") is None and not s.has_work
    assert s.schedule().is_empty


def test_speaking_request_keeps_talker_slot_after_text_is_done():
    s = make(slots=1)
    s.add(fake("a", speech=True))
    s.add(fake("b", speech=True))
    (a,) = s.schedule().prefill
    assert s.schedule().talker_decode == ()                     # still PENDING until its talker prefill
    a.output_ids.append(1)
    a.talker_stage = TalkerStage.DECODING
    plan = s.schedule()
    assert plan.decode == (a,) and plan.talker_decode == (a,) and not plan.prefill
    s.finish_thinker(a, "stop")
    assert a.status is RequestStatus.SPEAKING and s.accounts.thinker.num_free == 1
    plan = s.schedule()
    assert plan.decode == () and plan.talker_decode == (a,) and plan.prefill == ()   # b waits for the talker slot
    s.finish_talker(a)
    assert a.status is RequestStatus.FINISHED
    assert [r.request_id for r in s.schedule().prefill] == ["b"]


def test_talker_prefill_is_the_speaking_part_of_prefill():
    s = make(slots=3)
    s.add(fake("t"))
    s.add(fake("v", speech=True))
    plan = s.schedule()
    assert [r.request_id for r in plan.talker_prefill] == ["v"]
    assert plan.prefill[1].talker_max_new_tokens == min(4096, 4200 - (10 + 9))


def test_requests_that_can_never_fit_are_rejected_before_queueing():
    s = make(slots=1, length=64, talker_len=None)
    with pytest.raises(CapacityError) as info:
        s.add(fake("long", prompt=60, new=10))
    assert info.value.param == "max_new_tokens"
    with pytest.raises(CapacityError):
        s.add(fake("speech", speech=True))           # no talker cache on a thinker-only engine
    full = make(max_waiting=1)
    full.add(fake("a"))
    with pytest.raises(CapacityError):
        full.add(fake("b"))


def test_fail_retires_and_frees():
    s = make(slots=1)
    s.add(fake("a"))
    (a,) = s.schedule().prefill
    s.fail(a, RuntimeError("boom"))
    assert a.status is RequestStatus.FAILED and s.accounts.thinker.num_free == 1 and not s.has_work
