"""Refitting the talker's input projections to a thinker trained on without it (train/talker_adapters.py)."""
from __future__ import annotations

import copy

import pytest
import torch

from omnistream.errors import ConfigError
from omnistream.inputs import Processor
from omnistream.models.talker import ResizeMLP
from omnistream.train.parts import fresh_model
from omnistream.train.talker_adapters import fit_projection, refit_talker_inputs, relative_error


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("OMNISTREAM_CACHE", str(tmp_path_factory.getbasetemp() / "speech-cache"))


def _moved(rows: torch.Tensor, seed: int) -> torch.Tensor:
    """The same inputs as a changed thinker would give them: an invertible linear map plus a shift."""
    g = torch.Generator().manual_seed(seed)
    d = rows.shape[1]
    mix = torch.eye(d) + 0.4 * torch.randn(d, d, generator=g) / d ** 0.5
    return rows @ mix + 0.3 * torch.randn(d, generator=g)


def test_a_moved_input_is_fitted_back_and_the_old_projection_is_untouched():
    torch.manual_seed(0)
    old = ResizeMLP(16, 32, 24)
    before = copy.deepcopy(old.state_dict())
    old_rows = torch.randn(400, 16)
    new_rows = _moved(old_rows, 1)
    new, fit = fit_projection(old, old_rows, new_rows, name="text", holdout=0.25)
    assert fit.rows == 400 and fit.drift > 0.2
    assert fit.residual < 0.1 * fit.drift
    test = torch.randn(200, 16)                       # rows no fit saw, moved the same way
    assert relative_error(new(_moved(test, 1)), old(test)) < 0.1 * relative_error(old(_moved(test, 1)), old(test))
    assert all(torch.equal(v, old.state_dict()[k]) for k, v in before.items())


def test_unrelated_inputs_give_back_the_projection_unchanged():
    torch.manual_seed(0)
    old = ResizeMLP(8, 16, 8)
    old_rows, noise = torch.randn(300, 8), torch.randn(300, 8)
    new, fit = fit_projection(old, old_rows, noise, name="media", holdout=0.5)
    assert fit.residual <= fit.drift
    if fit.residual == fit.drift:                     # the fit did not help on held-out rows: nothing changed
        assert all(torch.equal(p, q) for p, q in zip(new.parameters(), old.parameters()))


def test_rows_that_do_not_pair_are_refused():
    with pytest.raises(ConfigError, match="paired rows"):
        fit_projection(ResizeMLP(8, 16, 8), torch.randn(10, 8), torch.randn(9, 8), name="text")


def test_the_talker_hears_a_moved_thinker_as_it_heard_the_old_one(tiny_assets):
    torch.manual_seed(0)
    processor = Processor.from_pretrained(tiny_assets)
    old = fresh_model(tiny_assets, seed=0).eval()
    new = copy.deepcopy(old)
    with torch.no_grad():   # a thinker "trained on": its vocabulary moved as a whole, every other weight nudged
        embed = new.thinker.model.embed_tokens.weight
        for p in new.thinker.parameters():
            if p is not embed:
                p.add_(0.3 * p.std().nan_to_num(0.0) * torch.randn_like(p))
        embed.copy_(_moved(embed, 2))
    vocab_old, vocab_new = old.thinker.model.embed_tokens.weight, new.thinker.model.embed_tokens.weight
    fits = {f.name: f for f in refit_talker_inputs(old, new, processor, prompts=6)}
    assert set(fits) == {"text_projection", "hidden_projection"}
    assert fits["text_projection"].residual < 0.5 * fits["text_projection"].drift
    assert fits["hidden_projection"].rows > 50 and fits["hidden_projection"].residual <= fits["hidden_projection"].drift
    with torch.no_grad():
        heard = relative_error(new.talker.project_text(vocab_new), old.talker.project_text(vocab_old))
    assert heard == pytest.approx(fits["text_projection"].residual, rel=1e-3)
    for name in ("model", "codec_head", "code_predictor"):            # the talker itself is not touched
        assert all(torch.equal(p, q) for p, q in zip(getattr(new.talker, name).parameters(),
                                                     getattr(old.talker, name).parameters()))


def test_models_with_different_vocabularies_are_refused(tiny_assets):
    processor = Processor.from_pretrained(tiny_assets)
    old = fresh_model(tiny_assets, seed=0)
    new = copy.deepcopy(old)
    new.thinker.model.embed_tokens.weight = torch.nn.Parameter(torch.randn(7, old.config.thinker_config.text_config.hidden_size))
    with pytest.raises(ConfigError, match="vocabularies"):
        refit_talker_inputs(old, new, processor, prompts=2)
