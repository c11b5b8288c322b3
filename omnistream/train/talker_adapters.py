"""Give an unchanged talker back the inputs it learnt from, after its thinker was trained on without it.

The talker reads the thinker through two small MLPs only (models/talker.py): `text_projection` of the thinker's
token embeddings (prompt text, the assistant header and the text track) and `hidden_projection` of its
accept-layer states at audio / image / video positions. Training the thinker alone moves both inputs, and the
talker then speaks from states it never saw: round 4 of recipes/continue.py moved the token embeddings by 22%
and the media states by 48% (relative L2 through fc1), and its intelligibility WER rose from 14.1% to 19.2%.
Retraining the talker needs targets in its codec's codes, which a lost VQ cannot give (continue.py).

So the two projections are refitted instead: new projection(new thinker) ≈ old projection(old thinker), the
talker itself untouched. Text is fitted over the whole vocabulary, the only inputs text_projection ever gets;
media over the prompts of generated examples, judged on held-out rows. Each fit starts from least squares on
fc1's pre-activations, then trains fc1 and fc2 on the projection's output.
"""
from __future__ import annotations

import copy
import logging
from dataclasses import dataclass
from typing import Mapping

import torch
import torch.nn.functional as F
from torch import nn

from omnistream.errors import ConfigError
from omnistream.inputs import Processor
from omnistream.models.omni import OmniModel
from omnistream.models.talker import TalkerPromptIds, user_turn_positions
from omnistream.synth import make_examples
from omnistream.train.talker_stage import thinker_states

logger = logging.getLogger(__name__)
FIT_STEPS = 600     # Adam steps per projection after the least-squares start (full batch; seconds on one core)

# Media prompts to fit on: every image and video task, half of them spoken (audio positions are media too).
MEDIA_MIX = {"color": 1.0, "count": 1.0, "shape_of_color": 1.0, "exists": 1.0, "describe": 1.0,
             "direction": 1.0, "moving_color": 1.0, "transcribe_digits": 0.5, "transcribe_sentence": 0.5}


@dataclass(frozen=True)
class AdapterFit:
    """One refitted projection. Errors are relative L2 against the old thinker's projected inputs: `drift` with
    the projection as it was, `residual` after the fit (on held-out rows where there are any)."""
    name: str
    rows: int
    drift: float
    residual: float


def relative_error(output: torch.Tensor, target: torch.Tensor) -> float:
    return ((output - target).norm() / target.norm().clamp_min(1e-12)).item()


@torch.no_grad()
def _least_squares_fc1(mlp: nn.Module, x: torch.Tensor, target_pre: torch.Tensor, ridge: float) -> None:
    """fc1 ← argmin ‖fc1(x) − target_pre‖² + ridge‖W‖² (bias unpenalised in effect: ridge is tiny)."""
    x1 = torch.cat([x, torch.ones(len(x), 1, dtype=x.dtype)], 1).double()
    gram = x1.T @ x1 + ridge * torch.eye(x1.shape[1], dtype=torch.float64)
    w = torch.linalg.solve(gram, x1.T @ target_pre.double()).float()
    mlp.linear_fc1.weight.copy_(w[:-1].T)
    mlp.linear_fc1.bias.copy_(w[-1])


def fit_projection(old: nn.Module, old_rows: torch.Tensor, new_rows: torch.Tensor, *, name: str,
                   holdout: float = 0.0, steps: int = FIT_STEPS, lr: float = 3e-3, ridge: float = 1e-3,
                   seed: int = 0) -> tuple[nn.Module, AdapterFit]:
    """A copy of projection `old` (a ResizeMLP: fc1 → SiLU → fc2) refitted so that new(new_rows) ≈ old(old_rows).

    Row i of `old_rows` and `new_rows` is the same input seen by the old and the new thinker. With `holdout` > 0
    that fraction of rows stays out of the fit and the errors are measured on it. `old` is left as it was."""
    if old_rows.shape != new_rows.shape or old_rows.shape[0] < 2:
        raise ConfigError(f"{name}: need >= 2 paired rows of one shape, got {tuple(old_rows.shape)} (old thinker) "
                         f"and {tuple(new_rows.shape)} (new thinker)")
    x = new_rows.detach().float()
    with torch.no_grad():
        target_pre = old.linear_fc1(old_rows.float())
        target = old(old_rows.float())
    order = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed))
    n_test = int(len(x) * holdout)
    judge, fit = (order[:n_test], order[n_test:]) if n_test else (order, order)
    new = copy.deepcopy(old).float()
    with torch.no_grad():
        drift = relative_error(new(x[judge]), target[judge])
    _least_squares_fc1(new, x[fit], target_pre[fit], ridge)
    optim = torch.optim.Adam(new.parameters(), lr=lr)
    for _ in range(steps):
        optim.zero_grad()
        F.mse_loss(new(x[fit]), target[fit]).backward()
        optim.step()
    with torch.no_grad():
        residual = relative_error(new(x[judge]), target[judge])
    if residual >= drift:           # never hand back a projection worse than the one given
        new, residual = copy.deepcopy(old), drift
    logger.info("%s: %d rows, drift %.3f -> residual %.3f", name, len(x), drift, residual)
    return new.to(old.linear_fc1.weight.dtype), AdapterFit(name, len(x), drift, residual)


@torch.no_grad()
def media_rows(model: OmniModel, processor: Processor, examples) -> torch.Tensor:
    """The thinker's accept-layer states at every media position of the examples' user turns [N, D]."""
    ids = TalkerPromptIds.from_config(model.config)
    accept = model.config.talker_config.accept_hidden_layer
    media = torch.tensor(ids.multimodal)
    rows = []
    for example in examples:
        prompt, _, hidden = thinker_states(model.thinker, accept, processor(example.messages), [])
        user = user_turn_positions(prompt, ids)
        rows.append(hidden[user][torch.isin(prompt[user], media)].float())
    return torch.cat(rows)


def refit_talker_inputs(old: OmniModel, new: OmniModel, processor: Processor, *, prompts: int = 150,
                        seed: int = 11, mix: Mapping[str, float] = MEDIA_MIX) -> list[AdapterFit]:
    """Refit `new.talker`'s text and hidden projections so that it hears `new.thinker` as `old.talker` heard
    `old.thinker`. Both models share one config and tokenizer; `new.talker` starts as a copy of `old.talker`."""
    if old.config.talker_config.accept_hidden_layer != new.config.talker_config.accept_hidden_layer:
        raise ConfigError("the two models' talkers read different thinker layers; refit needs the same one")
    old_vocab, new_vocab = old.thinker.model.embed_tokens.weight, new.thinker.model.embed_tokens.weight
    if old_vocab.shape != new_vocab.shape:
        raise ConfigError(f"the thinkers' vocabularies differ: {tuple(old_vocab.shape)} against "
                         f"{tuple(new_vocab.shape)}")
    fits = []
    new.talker.text_projection, fit = fit_projection(old.talker.text_projection, old_vocab.detach(),
                                                     new_vocab.detach(), name="text_projection")
    fits.append(fit)
    examples = make_examples("train", prompts, seed, dict(mix), spoken_fraction=0.5, workers=1)
    old_media, new_media = media_rows(old, processor, examples), media_rows(new, processor, examples)
    new.talker.hidden_projection, fit = fit_projection(old.talker.hidden_projection, old_media, new_media,
                                                       name="hidden_projection", holdout=0.1)
    fits.append(fit)
    return fits
