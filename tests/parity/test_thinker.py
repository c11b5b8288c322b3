"""Thinker parity: omnistream loads a transformers-written random checkpoint and matches its logits in fp32.

Text-only prompts over several tiny configs (layers, heads, kv heads, experts, top-k, head_dim / mrope
sections), the captured hidden layer the talker consumes, and — once the encoders exist — a prompt mixing
text, image, audio and video with the reference's own position ids.
"""
from __future__ import annotations

import pytest
import torch

from omnistream.models.omni import OmniModel
from tests.reference import IDS, build_reference_checkpoint, tiny_config

pytestmark = pytest.mark.parity

CONFIGS = {
    "base": dict(thinker_layers=2, heads=4, kv_heads=2, experts=4, top_k=2),
    "deep_gqa4": dict(thinker_layers=3, heads=4, kv_heads=1, experts=8, top_k=2),
    "mha_top3": dict(thinker_layers=2, heads=2, kv_heads=2, head_dim=16, mrope_section=(4, 2, 2), experts=8,
                     top_k=3),
    "top1": dict(thinker_layers=2, heads=4, kv_heads=2, experts=6, top_k=1),
}


def relative_error(ours: torch.Tensor, ref: torch.Tensor) -> float:
    return float((ours - ref).abs().max() / ref.abs().max())


@pytest.fixture(scope="module", params=sorted(CONFIGS))
def pair(request, tmp_path_factory):
    cfg = tiny_config(enable_audio_output=False, **CONFIGS[request.param])
    folder = tmp_path_factory.mktemp(f"thinker_{request.param}")
    ref = build_reference_checkpoint(folder, cfg, seed=1).thinker.eval()
    ours = OmniModel.from_pretrained(folder, dtype=torch.float32).thinker
    return request.param, ref, ours


def _text_prompt(batch: int, length: int, seed: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    body = torch.randint(0, 151_000, (batch, length - 3), generator=gen)
    head = torch.tensor([IDS["im_start"], IDS["user"], IDS["newline"]]).expand(batch, 3)
    return torch.cat([head, body], dim=1)


@torch.no_grad()
def test_text_logits_match_reference(pair):
    name, ref, ours = pair
    ids = _text_prompt(2, 13, seed=3)
    expected = ref(input_ids=ids, attention_mask=torch.ones_like(ids)).logits
    embeds, _, _ = ours.embed(ids)
    hidden, _ = ours(embeds, torch.arange(ids.shape[1]).expand(3, *ids.shape))
    logits = ours.compute_logits(hidden)
    err = relative_error(logits, expected)
    print(f"\n[thinker text {name}] max|Δ logits| / max|logits| = {err:.2e} (scale {expected.abs().max():.2f})")
    assert err < 1e-5
    assert torch.equal(logits.argmax(-1), expected.argmax(-1))


@torch.no_grad()
def test_captured_hidden_layers_match_reference(pair):
    name, ref, ours = pair
    ids = _text_prompt(1, 9, seed=4)
    out = ref(input_ids=ids, attention_mask=torch.ones_like(ids), output_hidden_states=True)
    embeds, _, _ = ours.embed(ids)
    positions = torch.arange(9).expand(3, 1, 9)
    for layer in range(len(ours.model.layers)):  # hidden_states[-1] is the normed output, checked above
        _, captured = ours(embeds, positions, capture_hidden_layer=layer)
        err = relative_error(captured, out.hidden_states[layer])
        assert err < 1e-5, (layer, err)


@torch.no_grad()
def test_tm_rope_positions_match_reference(pair):
    """Distinct, fractional T/H/W positions exercise the interleaved frequency split (spec §3.1, §3.4)."""
    name, ref, ours = pair
    ids = _text_prompt(2, 11, seed=5)
    gen = torch.Generator().manual_seed(6)
    positions = torch.cumsum(torch.rand(3, 2, 11, generator=gen) * 3, dim=-1)  # increasing, fractional
    expected = ref(input_ids=ids, attention_mask=torch.ones_like(ids), position_ids=positions).logits
    embeds, _, _ = ours.embed(ids)
    hidden, _ = ours(embeds, positions)
    err = relative_error(ours.compute_logits(hidden), expected)
    print(f"\n[thinker tm-rope {name}] max|Δ logits| / max|logits| = {err:.2e}")
    assert err < 1e-5
