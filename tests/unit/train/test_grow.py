"""A deepened thinker or talker computes exactly what the trained one did, and its new layers can learn."""
from __future__ import annotations

import json

import pytest
import torch

from omnistream.train.grow import deepen_assets, deepen_talker_part, deepen_thinker_part
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


def test_deepened_talker_gives_the_same_codes_and_wakes_every_zero_write(tiny_assets, tmp_path):
    trained = fresh_model(tiny_assets, seed=7)
    work = tmp_path / "work"
    save_part(work, "talker", trained.talker)
    layers = len(trained.talker.model.layers)
    deep = deepen_assets(tiny_assets, tmp_path / "deep", talker_layers=layers + 2)
    config = json.loads((deep / "config.json").read_text())
    assert config["talker_config"]["text_config"]["num_hidden_layers"] == layers + 2
    assert config["thinker_config"]["text_config"]["num_hidden_layers"] == len(trained.thinker.model.layers)
    assert deepen_talker_part(work, deep, seed=3)
    assert not deepen_talker_part(work, deep, seed=3)
    grown = fresh_model(deep, work, seed=0)
    embeds = torch.randn(2, 9, trained.talker.config.text_config.hidden_size, generator=torch.Generator().manual_seed(0))
    positions = torch.arange(9.0).expand(3, 2, -1)
    with torch.no_grad():
        want = trained.talker.compute_logits(trained.talker.eval()(embeds, positions))
        got = grown.talker.compute_logits(grown.talker.eval()(embeds, positions))
    torch.testing.assert_close(got, want, rtol=0, atol=0)
    grown.talker.train()
    grown.talker.compute_logits(grown.talker(embeds, positions)).logsumexp(-1).sum().backward()
    new = grown.talker.model.layers[layers + 1]
    writes = [new.self_attn.o_proj.weight, new.mlp.shared_expert.down_proj.weight,
              new.mlp.experts.down_proj]
    assert all(w.abs().sum() == 0 and w.grad is not None for w in writes)
    assert new.self_attn.o_proj.weight.grad.abs().sum() > 0
    assert new.mlp.shared_expert.down_proj.weight.grad.abs().sum() > 0


def test_layers_are_only_ever_added(tiny_assets, tmp_path):
    deep = deepen_assets(tiny_assets, tmp_path / "deep", thinker_layers=2)
    with pytest.raises(ValueError, match="fewer than"):
        deepen_assets(deep, tmp_path / "shallow", thinker_layers=1)
    work = tmp_path / "work"
    save_part(work, "thinker", fresh_model(deep, seed=1).thinker)
    with pytest.raises(ValueError, match="unexpected weights"):
        deepen_thinker_part(work, tiny_assets)
