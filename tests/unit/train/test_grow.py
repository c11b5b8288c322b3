"""A deepened thinker computes exactly what the trained one did, and its new layers can learn."""
from __future__ import annotations

import json

import pytest
import torch

from omnistream.train.grow import deepen_assets, deepen_thinker_part
from omnistream.train.parts import fresh_model, save_part


def _run(thinker, ids: torch.Tensor, capture: int):
    embeds, _, _ = thinker.embed(ids)
    positions = torch.arange(ids.shape[1]).unsqueeze(0)
    hidden, captured = thinker(embeds, positions, capture_hidden_layer=capture)
    return thinker.lm_head(hidden), captured


def test_deepened_thinker_gives_the_same_logits_and_captured_hidden(tiny_assets, tmp_path):
    trained = fresh_model(tiny_assets, seed=7)
    work = tmp_path / "work"
    save_part(work, "thinker", trained.thinker)
    deep = deepen_assets(tiny_assets, tmp_path / "deep", thinker_layers=3)
    text = json.loads((deep / "config.json").read_text())["thinker_config"]["text_config"]
    assert text["num_hidden_layers"] == 3
    assert deepen_thinker_part(work, deep, seed=3)
    assert not deepen_thinker_part(work, deep, seed=3)          # already deep: left as it is
    grown = fresh_model(deep, work, seed=0)
    assert len(grown.thinker.model.layers) == 3
    ids = torch.randint(0, 300, (2, 11), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        want_logits, want_hidden = _run(trained.thinker.eval(), ids, capture=1)
        got_logits, got_hidden = _run(grown.thinker.eval(), ids, capture=1)
    torch.testing.assert_close(got_logits, want_logits, rtol=0, atol=0)
    torch.testing.assert_close(got_hidden, want_hidden, rtol=0, atol=0)
    # the new layers are not dead: their zero writes get a gradient on the first step
    grown.thinker.train()
    logits, _ = _run(grown.thinker, ids, capture=1)
    torch.nn.functional.cross_entropy(logits.flatten(0, 1), ids.flatten()).backward()
    new_layer = grown.thinker.model.layers[2]
    assert new_layer.self_attn.o_proj.weight.grad.abs().sum() > 0
    assert new_layer.self_attn.q_proj.weight.abs().sum() > 0      # fresh init, not zero


def test_layers_are_only_ever_added(tiny_assets, tmp_path):
    deep = deepen_assets(tiny_assets, tmp_path / "deep", thinker_layers=2)
    with pytest.raises(ValueError, match="fewer than"):
        deepen_assets(deep, tmp_path / "shallow", thinker_layers=1)
    work = tmp_path / "work"
    save_part(work, "thinker", fresh_model(deep, seed=1).thinker)
    with pytest.raises(ValueError, match="unexpected weights"):
        deepen_thinker_part(work, tiny_assets)
