"""Sparse mixture of experts with stacked expert weights (spec §2.1 thinker, §2.4 talker).

Parameters, named as transformers v5 holds them in memory so that layout loads as identity:
  gate.weight                [E, H]       router
  experts.gate_up_proj       [E, 2I, H]   per expert cat(gate_proj, up_proj) rows, gate first
  experts.down_proj          [E, H, I]
  shared_expert.*, shared_expert_gate.weight [1, H]   (talker only)
The on-disk per-expert names are mapped to these by omnistream.checkpoint.

Routing (spec §2 "Common numerics"): logits in the activation dtype, softmax in fp32 over all experts,
top-k, optional renormalisation, cast back; output = Σ_k w_k · expert_k(x) (+ σ(g·x) · shared(x)).

Two execution paths with the same result:
  decode  — few tokens: gather just the selected experts' matrices by the [N, K] ids and run one batched
            matmul; unselected experts are never read and the host never waits on the device.
  prefill — many tokens: sort the N·K (token, expert) pairs by expert and run each active expert once on
            its contiguous group (one host sync for the group sizes).
`forward` picks decode when N·K ≤ E, i.e. when gathering costs no more weight reads than grouping.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from omnistream.nn.fast_linear import linear
from omnistream.nn.mlp import SwiGLU


class StackedExperts(nn.Module):
    """E SwiGLU experts stored as two stacked tensors (the fused v5 layout)."""

    def __init__(self, num_experts: int, hidden_size: int, intermediate_size: int) -> None:
        super().__init__()
        self.gate_up_proj = nn.Parameter(torch.empty(num_experts, 2 * intermediate_size, hidden_size))
        self.down_proj = nn.Parameter(torch.empty(num_experts, hidden_size, intermediate_size))
        nn.init.normal_(self.gate_up_proj, std=hidden_size ** -0.5)
        nn.init.normal_(self.down_proj, std=intermediate_size ** -0.5)

    def run(self, expert: int, x: torch.Tensor) -> torch.Tensor:
        """Expert `expert` on its tokens x [n, H] → [n, H], reading its weight views in place (one token on a
        bf16 CPU: the native GEMV, nn/fast_linear.py)."""
        gate, up = linear(x, self.gate_up_proj[expert]).chunk(2, dim=-1)
        return linear(F.silu(gate) * up, self.down_proj[expert])


class SparseMoe(nn.Module):
    """Router + stacked experts, with an optional sigmoid-gated shared expert."""

    def __init__(self, hidden_size: int, intermediate_size: int, num_experts: int, top_k: int,
                 norm_topk_prob: bool, shared_expert_intermediate_size: int = 0) -> None:
        super().__init__()
        self.num_experts, self.top_k, self.norm_topk_prob = num_experts, top_k, norm_topk_prob
        self.gate = nn.Linear(hidden_size, num_experts, bias=False)
        self.experts = StackedExperts(num_experts, hidden_size, intermediate_size)
        if shared_expert_intermediate_size > 0:
            self.shared_expert = SwiGLU(hidden_size, shared_expert_intermediate_size)
            self.shared_expert_gate = nn.Linear(hidden_size, 1, bias=False)
        else:
            self.shared_expert = None
            self.shared_expert_gate = None

    def route(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x [N, H] → (weights [N, K] in x's dtype, expert ids [N, K])."""
        logits = self.gate(x)  # [N, E]
        probs = torch.softmax(logits, dim=-1, dtype=torch.float32)
        weights, ids = torch.topk(probs, self.top_k, dim=-1)
        if self.norm_topk_prob:
            weights = weights / weights.sum(dim=-1, keepdim=True)
        return weights.to(logits.dtype), ids

    def forward(self, x: torch.Tensor, path: str | None = None) -> torch.Tensor:
        """x [..., H] → [..., H]. `path` forces "decode" or "prefill" (tests); default picks by N·K vs E."""
        shape = x.shape
        flat = x.reshape(-1, shape[-1])  # [N, H]
        weights, ids = self.route(flat)
        if path is None:
            path = self.choose_path(flat)
        if path == "decode":
            out = self.decode_path(flat, weights, ids)
        elif path == "prefill":
            out = self.prefill_path(flat, weights, ids)
        else:
            raise ValueError(f"unknown MoE path {path!r}")
        if self.shared_expert is not None:
            out = out + torch.sigmoid(self.shared_expert_gate(flat)) * self.shared_expert(flat)
        return out.reshape(shape)

    def choose_path(self, flat: torch.Tensor) -> str:
        """Gather-bmm for few tokens on accelerators and under torch.compile (no host sync, graph-friendly;
        compile fuses the gather into the reduction). Eager on CPU the grouped path wins at every batch
        size: `F.linear` on each selected expert's weight *view* streams it once, while the gather first
        copies N·K expert matrices (measured on the slice widths, bf16, 1 thread: 11 ms vs 58 ms per layer
        at N=1, 64 ms vs 600 ms at N=8). Both read only the selected experts."""
        if flat.device.type == "cpu" and not torch.compiler.is_compiling():
            return "prefill"
        return "decode" if flat.shape[0] * self.top_k <= self.num_experts else "prefill"

    def decode_path(self, x: torch.Tensor, weights: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
        """Gather the N·K selected experts and run them as one batched matmul: x [N, H] → [N, H]."""
        N, K = ids.shape
        gate_up = self.experts.gate_up_proj[ids.reshape(-1)]  # [N·K, 2I, H]
        down = self.experts.down_proj[ids.reshape(-1)]  # [N·K, H, I]
        xk = x.repeat_interleave(K, dim=0).unsqueeze(-1)  # [N·K, H, 1]
        gate, up = torch.bmm(gate_up, xk).squeeze(-1).chunk(2, dim=-1)  # [N·K, I] each
        y = torch.bmm(down, (F.silu(gate) * up).unsqueeze(-1)).squeeze(-1)  # [N·K, H]
        return (y.view(N, K, -1) * weights.unsqueeze(-1)).sum(dim=1)

    def prefill_path(self, x: torch.Tensor, weights: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
        """Group (token, expert) pairs by expert; each active expert runs once: x [N, H] → [N, H]."""
        if x.shape[0] == 1:
            return self._one_token(x, weights, ids)
        K = ids.shape[1]
        flat_ids = ids.reshape(-1)  # [N·K]
        order = torch.argsort(flat_ids, stable=True)
        tokens = order // K  # which token each sorted pair belongs to
        counts = torch.bincount(flat_ids, minlength=self.num_experts).tolist()  # the one host sync
        groups = torch.split(x[tokens], counts)
        outputs = []
        for expert, group in enumerate(groups):
            if group.shape[0] == 0:
                continue
            outputs.append(self.experts.run(expert, group))
        y = torch.cat(outputs) * weights.reshape(-1)[order].unsqueeze(-1)  # [N·K, H]
        return torch.zeros_like(x).index_add_(0, tokens, y)

    def _one_token(self, x: torch.Tensor, weights: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
        """The grouped path for one token (every decode step at batch 1) without its sort/split/scatter
        bookkeeping: the same experts, products and summation order (ascending expert id)."""
        order = torch.argsort(ids[0], stable=True)
        y = torch.cat([self.experts.run(e, x) for e in ids[0][order].tolist()]) * weights[0][order, None]
        return torch.zeros_like(x).index_add_(0, order.new_zeros(order.shape), y)
