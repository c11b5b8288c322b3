"""Checkpoint layouts across implementations: transformers' on-disk files, its fused in-memory layout, and
our saved files loaded back by transformers (full Instruct-style model: thinker, talker, code2wav)."""
from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import save_file

from omnistream.models.omni import OmniModel
from tests.reference import IDS, build_reference_checkpoint, load_reference, tiny_config

pytestmark = pytest.mark.parity


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    folder = tmp_path_factory.mktemp("ref_full")
    ref = build_reference_checkpoint(folder, tiny_config(thinker_layers=2, experts=4, top_k=2), seed=3)
    return folder, ref.eval()


def _prompt() -> torch.Tensor:
    return torch.tensor([[IDS["im_start"], IDS["user"], IDS["newline"], 1200, 5000, 77, 151_000,
                          IDS["im_end"], IDS["newline"], IDS["im_start"], IDS["assistant"], IDS["newline"]]])


@torch.no_grad()
def _our_logits(model: OmniModel, ids: torch.Tensor) -> torch.Tensor:
    embeds, _, _ = model.thinker.embed(ids)
    hidden, _ = model.thinker(embeds, torch.arange(ids.shape[1]).expand(3, *ids.shape))
    return model.thinker.compute_logits(hidden)


def _ref_state(ref) -> dict[str, torch.Tensor]:
    return {k: v for k, v in ref.state_dict().items()}


def test_on_disk_layout_loads_every_component(reference):
    folder, ref = reference
    ours = OmniModel.from_pretrained(folder, dtype=torch.float32)
    assert ours.has_speech and not ours.thinker.missing_components()
    n_ours = sum(p.numel() for p in ours.parameters())
    n_ref = sum(p.numel() for p in ref.parameters())
    assert n_ours == n_ref
    ids = _prompt()
    expected = ref.thinker(input_ids=ids, attention_mask=torch.ones_like(ids)).logits
    torch.testing.assert_close(_our_logits(ours, ids), expected, rtol=1e-5, atol=1e-5)


def test_fused_in_memory_layout_loads(reference, tmp_path):
    """transformers v5's module names (language_model/audio_tower/visual under thinker.model) and fused experts."""
    folder, ref = reference
    state = {k: v.contiguous().clone() for k, v in _ref_state(ref).items()}
    assert any(k.startswith("thinker.model.language_model.") and k.endswith("experts.gate_up_proj") for k in state)
    save_file(state, tmp_path / "model.safetensors")
    (tmp_path / "config.json").write_text((folder / "config.json").read_text())
    fused = OmniModel.from_pretrained(tmp_path, dtype=torch.float32)
    per_expert = OmniModel.from_pretrained(folder, dtype=torch.float32)
    a, b = fused.state_dict(), per_expert.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@torch.no_grad()
def test_our_sharded_save_loads_in_transformers(reference, tmp_path):
    folder, ref = reference
    ours = OmniModel.from_pretrained(folder, dtype=torch.float32)
    files = ours.save_pretrained(tmp_path, max_shard_bytes=2 * 2**20)
    assert len(files) > 2 and (tmp_path / "model.safetensors.index.json").exists()
    reloaded = load_reference(tmp_path)
    expected, got = _ref_state(ref), _ref_state(reloaded)
    assert expected.keys() == got.keys()
    assert all(torch.equal(expected[k], got[k]) for k in expected), [k for k in expected
                                                                     if not torch.equal(expected[k], got[k])][:5]
    ids = _prompt()
    torch.testing.assert_close(reloaded.thinker(input_ids=ids).logits, ref.thinker(input_ids=ids).logits,
                               rtol=0, atol=0)
    assert json.loads((tmp_path / "config.json").read_text())["thinker_config"]["text_config"]["num_experts"] == 4


def test_bf16_save_is_bf16_on_disk(reference, tmp_path):
    folder, _ = reference
    ours = OmniModel.from_pretrained(folder, dtype=torch.float32)
    ours.save_pretrained(tmp_path, dtype=torch.bfloat16)
    reloaded = OmniModel.from_pretrained(tmp_path, dtype=torch.bfloat16)
    src = ours.state_dict()
    params = dict(reloaded.named_parameters())
    assert all(p.dtype == torch.bfloat16 for p in params.values())
    for k, v in params.items():
        assert torch.equal(v, src[k].to(torch.bfloat16)), k
