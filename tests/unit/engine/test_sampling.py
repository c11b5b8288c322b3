"""Sampling against independent formulas: the distribution each filter defines, computed with numpy."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from omnistream.engine.sampling import RowSampling, TokenHistory, apply_repetition_penalty, ban_tokens, sample

LOGITS = torch.tensor([2.0, 1.0, 0.5, 0.0, -1.0, -3.0])


def _expected(logits: np.ndarray, temperature: float, top_k: int, top_p: float) -> np.ndarray:
    """The target distribution written out directly: softmax(l/T), keep top-k, keep the smallest prefix
    (by descending probability) whose mass reaches top_p, renormalise."""
    z = logits / temperature
    order = np.argsort(-z, kind="stable")
    keep = np.zeros_like(z, dtype=bool)
    keep[order[: top_k if top_k else len(z)]] = True
    p = np.where(keep, np.exp(z - z.max()), 0.0)
    p /= p.sum()
    mass = 0.0
    final = np.zeros_like(keep)
    for i in order:
        if not keep[i] or mass >= top_p:
            continue
        final[i] = True
        mass += p[i]
    q = np.where(final, p, 0.0)
    return q / q.sum()


@pytest.mark.parametrize("temperature,top_k,top_p", [(1.0, 0, 1.0), (0.7, 0, 1.0), (1.0, 3, 1.0),
                                                      (1.3, 0, 0.8), (0.9, 4, 0.9)])
def test_empirical_distribution_matches_formula(temperature, top_k, top_p):
    n = 20000
    rows = [RowSampling(temperature, top_k, top_p)] * n
    generators = [torch.Generator().manual_seed(i) for i in range(n)]
    tokens = sample(LOGITS.expand(n, -1).clone(), rows, generators).numpy()
    freq = np.bincount(tokens, minlength=LOGITS.numel()) / n
    expected = _expected(LOGITS.double().numpy(), temperature, top_k, top_p)
    assert np.all(freq[expected == 0] == 0), "a filtered-out token was drawn"
    np.testing.assert_allclose(freq, expected, atol=0.015)


def test_greedy_is_argmax_with_first_index_on_ties():
    logits = torch.tensor([[0.0, 3.0, 3.0, 1.0], [5.0, -1.0, 2.0, 5.0]])
    out = sample(logits, [RowSampling(0.0)] * 2, [None, None])
    assert out.tolist() == [1, 0]


def test_same_seed_same_tokens_and_rows_independent_of_batch():
    logits = torch.randn(4, 50)
    params = [RowSampling(1.0, 10, 0.9)] * 4
    def gens(seeds):
        return [torch.Generator().manual_seed(s) for s in seeds]

    alone = [sample(logits[i:i + 1].clone(), [params[i]], gens([7 + i])).item() for i in range(4)]
    batched = sample(logits.clone(), params, gens(range(7, 11))).tolist()
    assert alone == batched
    # other rows' filters (a greedy row, a wider top-k, no top-p) do not change a row's draw
    others = [RowSampling(0.0), RowSampling(1.0, 0, 0.5), RowSampling(1.0, 45, 1.0)]
    mixed = sample(logits.clone(), [others[0], params[1], others[1], params[3]], [None, *gens([8, 1, 10])])
    assert mixed[1].item() == batched[1] and mixed[3].item() == batched[3]
    assert mixed[0].item() == logits[0].argmax().item()
    assert sample(logits.clone(), params, gens(range(7, 11))).tolist() == batched       # same seeds, same tokens


def test_repetition_penalty_formula():
    logits = torch.tensor([[2.0, -2.0, 1.0, -1.0]])
    seen = torch.tensor([[True, True, False, False]])
    apply_repetition_penalty(logits, seen, torch.tensor([2.0]))
    assert logits.tolist() == [[1.0, -4.0, 1.0, -1.0]]


def test_ban_tokens_only_touches_given_rows():
    logits = torch.zeros(3, 5)
    ban_tokens(logits, torch.tensor([0, 2]), torch.tensor([1, 4]))
    assert torch.isinf(logits).nonzero().tolist() == [[0, 1], [0, 4], [2, 1], [2, 4]]


def test_token_history_reset_and_add():
    history = TokenHistory(num_slots=2, vocab_size=6)
    history.reset(1, [0, 5])
    history.add(torch.tensor([1, 0]), torch.tensor([2, 3]))
    assert history.seen.nonzero().tolist() == [[0, 3], [1, 0], [1, 2], [1, 5]]
    history.reset(1)
    assert history.rows(torch.tensor([1])).sum().item() == 0
