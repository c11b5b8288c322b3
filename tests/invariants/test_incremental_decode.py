"""Cached step-by-step decoding equals a full forward; a batch of ragged rows equals each row alone.

Runs on a random tiny Thinker (spec §8 sizes) with the slot-based KV cache the engine uses.
"""
from __future__ import annotations

import pytest
import torch

from omnistream.config import OmniConfig
from omnistream.models.thinker import Thinker
from tests.reference import tiny_config

ATOL = 1e-5


def assert_close_scaled(got: torch.Tensor, expected: torch.Tensor, tol: float = ATOL) -> float:
    """max|Δ| ≤ tol · max|expected| (errors relative to the output scale, as the parity tests report)."""
    err = float((got - expected).abs().max() / expected.abs().max())
    assert err <= tol, err
    return err


@pytest.fixture(scope="module")
def thinker() -> Thinker:
    cfg = tiny_config(enable_audio_output=False, thinker_layers=3, kv_heads=1, experts=8, top_k=2)
    cfg["thinker_config"]["text_config"]["vocab_size"] = 300
    torch.manual_seed(0)
    model = Thinker(OmniConfig.from_dict(cfg).thinker_config).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" not in name and p.ndim > 1:
                p.normal_(0, (4 if name.endswith("gate.weight") or "lm_head" in name else 1) / p.shape[-1] ** 0.5)
    return model


def _positions(length: int, start: int = 0) -> torch.Tensor:
    return torch.arange(start, start + length).expand(3, 1, length)


@torch.no_grad()
def _full_logits(thinker: Thinker, ids: torch.Tensor) -> torch.Tensor:
    embeds, _, _ = thinker.embed(ids)
    hidden, _ = thinker(embeds, _positions(ids.shape[1]).expand(3, ids.shape[0], -1))
    return thinker.compute_logits(hidden)


@torch.no_grad()
def test_cached_greedy_decode_equals_full_forward(thinker):
    prompt = torch.randint(0, 300, (1, 9))
    cache = thinker.new_cache(num_slots=2, max_len=32)
    slot = torch.tensor([1])
    embeds, _, _ = thinker.embed(prompt)
    hidden, _ = thinker(embeds, _positions(9), cache=cache, slots=slot, cache_positions=torch.arange(9)[None])
    step_logits = [thinker.compute_logits(hidden[:, -1])]
    tokens = prompt
    for step in range(8):
        next_id = step_logits[-1].argmax(-1, keepdim=True)  # [1, 1]
        tokens = torch.cat([tokens, next_id], 1)
        pos = tokens.shape[1] - 1
        embeds, _, _ = thinker.embed(next_id)
        hidden, _ = thinker(embeds, _positions(1, pos), cache=cache, slots=slot,
                            cache_positions=torch.tensor([[pos]]), kv_len=pos + 1)
        step_logits.append(thinker.compute_logits(hidden[:, -1]))
    full = _full_logits(thinker, tokens)  # one forward over prompt + generated tokens
    cached = torch.stack(step_logits, 1)  # logits at positions 8..16
    err = assert_close_scaled(cached, full[:, 8:])
    print(f"\n[incremental decode] max|Δ logits| / max|logits| = {err:.2e}")
    assert torch.equal(cached.argmax(-1), full[:, 8:].argmax(-1))


@torch.no_grad()
def test_cached_prefill_with_deepstack_then_decode(thinker):
    """A prompt with 'visual' positions (deepstack added after layer 0) prefilled into the cache, then decoded."""
    ids = torch.randint(0, 300, (1, 12))
    visual = torch.zeros(1, 12, dtype=torch.bool)
    visual[0, 3:7] = True
    deepstack = [torch.randn(4, 32)]
    positions = torch.tensor([0, 1, 2, 3, 3, 3, 3, 5, 6, 7, 8, 9]).expand(3, 1, 12).clone()
    positions[1, 0, 3:7] = torch.tensor([3, 3, 4, 4])  # H/W differ from T inside the image (spec §3.2)
    positions[2, 0, 3:7] = torch.tensor([3, 4, 3, 4])
    embeds, _, _ = thinker.embed(ids)
    extra = torch.randint(0, 300, (1, 3))
    extra_embeds, _, _ = thinker.embed(extra)
    all_pos = torch.cat([positions, torch.arange(10, 13).expand(3, 1, 3)], -1)
    full, _ = thinker(torch.cat([embeds, extra_embeds], 1), all_pos,
                      visual_mask=torch.cat([visual, torch.zeros(1, 3, dtype=torch.bool)], 1), deepstack=deepstack)
    cache = thinker.new_cache(1, 20)
    parts = [thinker(embeds, positions, cache=cache, cache_positions=torch.arange(12)[None], visual_mask=visual,
                     deepstack=deepstack)[0]]
    for i in range(3):
        parts.append(thinker(extra_embeds[:, i:i + 1], all_pos[:, :, 12 + i:13 + i], cache=cache,
                             cache_positions=torch.tensor([[12 + i]]))[0])
    assert_close_scaled(torch.cat(parts, 1), full)


@pytest.mark.parametrize("batched_prefill", [False, True])
@torch.no_grad()
def test_ragged_batch_equals_each_row_alone(thinker, batched_prefill):
    """Rows of lengths 4, 9, 6 in slots 2, 0, 3: batched decode steps (and optionally a right-padded batched
    prefill) give each row's own logits."""
    lengths, slots = [4, 9, 6], torch.tensor([2, 0, 3])
    steps = 4
    rows = [torch.randint(0, 300, (1, n + steps)) for n in lengths]
    alone = [_full_logits(thinker, r)[0] for r in rows]  # [n + steps, V] each
    cache = thinker.new_cache(num_slots=4, max_len=24)
    if batched_prefill:
        width = max(lengths)
        padded = torch.zeros(3, width, dtype=torch.long)
        for b, n in enumerate(lengths):
            padded[b, :n] = rows[b][0, :n]
        embeds, _, _ = thinker.embed(padded)
        pos = torch.arange(width).expand(3, width)  # pads write beyond each row's length; overwritten later
        hidden, _ = thinker(embeds, pos.expand(3, 3, width), cache=cache, slots=slots, cache_positions=pos)
        for b, n in enumerate(lengths):
            assert_close_scaled(thinker.compute_logits(hidden[b, :n]), alone[b][:n])
    else:
        for b, n in enumerate(lengths):
            embeds, _, _ = thinker.embed(rows[b][:, :n])
            thinker(embeds, _positions(n), cache=cache, slots=slots[b:b + 1], cache_positions=torch.arange(n)[None])
    for step in range(steps):
        pos = torch.tensor([[n + step] for n in lengths])  # [3, 1]: rows at different lengths
        ids = torch.stack([rows[b][0, lengths[b] + step] for b in range(3)])[:, None]
        embeds, _, _ = thinker.embed(ids)
        hidden, _ = thinker(embeds, pos[None].expand(3, 3, 1), cache=cache, slots=slots, cache_positions=pos,
                            kv_len=int(pos.max()) + 1)
        logits = thinker.compute_logits(hidden[:, 0])
        for b in range(3):
            assert_close_scaled(logits[b], alone[b][lengths[b] + step])
