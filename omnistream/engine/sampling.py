"""Batched token sampling with per-row knobs and per-request random streams.

Order of operations follows the reference's logits-processor order (spec §5.1; transformers'
`_get_logits_processor`): repetition penalty → banned ids (min-new-tokens EOS ban, suppressed ids) → greedy
argmax, or temperature → top-k → top-p → draw. Logits are float32 as in the reference.

Sampling is an exponential race (equivalent to Gumbel-max): token = argmax_i p_i / e_i with e_i ~ Exp(1)
drawn for every vocabulary id from the request's own `torch.Generator` (seeded by its `seed`). The noise is
indexed by token id and drawn whole each step, so a request's tokens depend only on its own logits and
seed — never on which other requests share the batch or how wide the batch's top-k is. Unlike inverse-CDF
sampling, which can flip on a float32 rounding of a 150k-entry cumulative sum, a race only changes its
winner if the two best scores tie within rounding.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class RowSampling:
    """One row's knobs for one stage. temperature 0 → greedy; top_k 0 / top_p 1 → filter off."""
    temperature: float = 0.0
    top_k: int = 0
    top_p: float = 1.0
    repetition_penalty: float = 1.0


def apply_repetition_penalty(logits: torch.Tensor, seen: torch.Tensor, penalty: torch.Tensor) -> torch.Tensor:
    """Penalise ids already seen, in place: negative logits × p, others ÷ p (the reference's formula).

    logits [B, V] float32, seen [B, V] bool, penalty [B].
    """
    p = penalty.to(logits.dtype)[:, None]
    penalised = torch.where(logits < 0, logits * p, logits / p)
    return logits.copy_(torch.where(seen, penalised, logits))


def ban_tokens(logits: torch.Tensor, rows: torch.Tensor, token_ids: torch.Tensor) -> None:
    """Set logits[rows, token_ids] to −inf in place (e.g. EOS while fewer than min_new_tokens were made)."""
    if rows.numel() and token_ids.numel():
        logits[rows[:, None], token_ids[None, :]] = float("-inf")


def sample(logits: torch.Tensor, params: Sequence[RowSampling],
           generators: Sequence[torch.Generator | None]) -> torch.Tensor:
    """Pick one id per row of logits [B, V] → LongTensor [B]. Rows with temperature 0 take the argmax."""
    out = logits.argmax(dim=-1)
    sampled = [i for i, p in enumerate(params) if p.temperature > 0]
    if not sampled:
        return out
    device = logits.device
    index = torch.tensor(sampled, device=device)
    rows = [params[i] for i in sampled]
    temperature = torch.tensor([p.temperature for p in rows], dtype=torch.float32, device=device)
    scaled = logits.index_select(0, index).float() / temperature[:, None]          # [S, V]
    values, ids = _candidates(scaled, rows)                                        # [S, W] sorted desc
    probs = torch.softmax(values, dim=-1)
    top_p = torch.tensor([p.top_p for p in rows], dtype=torch.float32, device=device)
    before = probs.cumsum(dim=-1) - probs                                         # mass ranked above
    keep = before < top_p[:, None]
    keep[:, 0] = True                                                              # never empty
    probs = probs.masked_fill(~keep, 0.0)
    vocab = logits.shape[-1]
    noise = torch.stack([torch.empty(vocab, device=device).exponential_(generator=generators[i])
                         for i in sampled])                                     # [S, V], by token id
    pick = (probs / noise.gather(1, ids)).argmax(dim=-1, keepdim=True)          # [S, 1]
    out[index] = ids.gather(1, pick).squeeze(1)
    return out


def _candidates(scaled: torch.Tensor, rows: Sequence[RowSampling]) -> tuple[torch.Tensor, torch.Tensor]:
    """Values and ids sorted descending, restricted to each row's top-k (ties with the k-th value kept)."""
    vocab = scaled.shape[-1]
    ks = [p.top_k for p in rows]
    if all(k == 0 for k in ks) and all(p.top_p >= 1.0 for p in rows):
        ids = torch.arange(vocab, device=scaled.device).expand_as(scaled)
        return scaled, ids                                                         # no filter: no sort
    if all(k > 0 for k in ks):
        values, ids = scaled.topk(min(max(ks), vocab), dim=-1)
    else:
        values, ids = scaled.sort(dim=-1, descending=True)
    width = values.shape[-1]
    k = torch.tensor([min(k, width) if k > 0 else width for k in ks], device=scaled.device)
    kth = values.gather(1, (k - 1)[:, None])                                       # [S, 1]
    return values.masked_fill(values < kth, float("-inf")), ids


class TokenHistory:
    """Which ids each cache slot has seen, for the repetition penalty: a [num_slots, V] bool table."""

    def __init__(self, num_slots: int, vocab_size: int, device: torch.device | str | None = None) -> None:
        self.seen = torch.zeros(num_slots, vocab_size, dtype=torch.bool, device=device)

    def reset(self, slot: int, token_ids: Sequence[int] | torch.Tensor = ()) -> None:
        row = self.seen[slot]
        row.zero_()
        ids = torch.as_tensor(token_ids, dtype=torch.long, device=row.device)
        if ids.numel():
            row[ids.clamp(0, row.shape[0] - 1)] = True

    def add(self, slots: torch.Tensor, token_ids: torch.Tensor) -> None:
        """Mark token_ids[b] as seen in slots[b] (ids outside the vocabulary are ignored)."""
        valid = (token_ids >= 0) & (token_ids < self.seen.shape[1])
        self.seen[slots[valid], token_ids[valid]] = True

    def rows(self, slots: torch.Tensor) -> torch.Tensor:
        return self.seen.index_select(0, slots)
