"""The training loop shared by every stage: AdamW, warmup + cosine schedule, gradient clipping, tqdm progress
(loss, throughput), periodic evaluation hooks and resumable checkpoints.

Checkpoints hold no pickle: weights and optimizer moments go to safetensors, everything else (step, data
position, schedule, metrics) to JSON. Resuming restores the module, the optimizer, torch's RNG and the data
position, so the losses after a resume equal those of an uninterrupted run.

    state = train(module, loss_fn, data, TrainConfig(steps=1000, lr=3e-3, out_dir="runs/thinker"))
"""
from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import torch
from safetensors.torch import load_file, save_file
from torch import nn
from tqdm import tqdm

from omnistream.errors import CheckpointError, ConfigError

logger = logging.getLogger(__name__)

LossFn = Callable[[dict[str, Any]], tuple[torch.Tensor, dict[str, float]]]


@dataclass(frozen=True)
class TrainConfig:
    steps: int
    lr: float = 3e-3
    min_lr_ratio: float = 0.1
    warmup: int = 50
    weight_decay: float = 0.01
    grad_clip: float = 1.0
    betas: tuple[float, float] = (0.9, 0.98)
    log_every: int = 10
    ckpt_every: int = 200
    eval_every: int = 0
    out_dir: str = "runs/train"
    seed: int = 0
    max_minutes: float = 0.0   # stop (and checkpoint) after this much wall time; 0 = no limit
    # With max_minutes: the cosine follows the clock too (progress = the larger of steps done and time used),
    # so a run stopped by its time budget ends with its learning rate decayed, not halfway down.
    time_schedule: bool = False

    def __post_init__(self) -> None:
        if self.steps < 1:
            raise ConfigError(f"steps must be >= 1, got {self.steps}", param="steps")
        if self.lr <= 0:
            raise ConfigError(f"lr must be > 0, got {self.lr}", param="lr")


@dataclass
class TrainState:
    step: int = 0
    position: int = 0                     # batches consumed (= step; data is indexed by batch)
    losses: list[float] = field(default_factory=list)
    metrics: dict[str, float] = field(default_factory=dict)
    evals: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0


def lr_at(cfg: TrainConfig, step: int, time_used: float = 0.0) -> float:
    """Linear warmup, then cosine decay to min_lr_ratio·lr.

    `time_used` (0..1, the share of the time budget spent) counts only with `cfg.time_schedule`."""
    if step < cfg.warmup:
        return cfg.lr * (step + 1) / cfg.warmup
    progress = min(1.0, (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup))
    if cfg.time_schedule and cfg.max_minutes:
        progress = max(progress, min(1.0, time_used))
    return cfg.lr * (cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress)))


def make_optimizer(module: nn.Module, cfg: TrainConfig) -> torch.optim.AdamW:
    """AdamW; no weight decay on vectors (norms, biases, SnakeBeta)."""
    decay = [p for p in module.parameters() if p.requires_grad and p.ndim >= 2]
    plain = [p for p in module.parameters() if p.requires_grad and p.ndim < 2]
    return torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay},
                              {"params": plain, "weight_decay": 0.0}], lr=cfg.lr, betas=cfg.betas)


# ------------------------------------------------------------------------------------------ checkpoints
def save_train_checkpoint(folder: str | Path, module: nn.Module, optimizer: torch.optim.Optimizer,
                          state: TrainState, cfg: TrainConfig) -> Path:
    """module.safetensors + optimizer.safetensors + state.json (written last: its presence marks completeness)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    weights = {k: v.detach().contiguous() for k, v in module.state_dict().items()}
    save_file(weights, str(folder / "module.safetensors"))
    names = {id(p): n for n, p in module.named_parameters()}
    tensors: dict[str, torch.Tensor] = {"rng": torch.get_rng_state()}
    steps: dict[str, float] = {}
    for group in optimizer.param_groups:
        for p in group["params"]:
            st = optimizer.state.get(p)
            if not st:
                continue
            name = names[id(p)]
            tensors[f"{name}.exp_avg"] = st["exp_avg"].contiguous()
            tensors[f"{name}.exp_avg_sq"] = st["exp_avg_sq"].contiguous()
            steps[name] = float(st["step"])
    save_file(tensors, str(folder / "optimizer.safetensors"))
    meta = {"state": asdict(state), "optimizer_steps": steps, "config": asdict(cfg)}
    tmp = folder / "state.json.tmp"
    tmp.write_text(json.dumps(meta, indent=1))
    tmp.replace(folder / "state.json")
    return folder


def load_train_checkpoint(folder: str | Path, module: nn.Module, optimizer: torch.optim.Optimizer) -> TrainState:
    folder = Path(folder)
    if not (folder / "state.json").is_file():
        raise CheckpointError(f"no complete training checkpoint in {folder}", param="state.json")
    meta = json.loads((folder / "state.json").read_text())
    module.load_state_dict(load_file(str(folder / "module.safetensors")), strict=True)
    tensors = load_file(str(folder / "optimizer.safetensors"))
    torch.set_rng_state(tensors.pop("rng"))
    params = dict(module.named_parameters())
    for name, step in meta["optimizer_steps"].items():
        p = params[name]
        optimizer.state[p] = {"step": torch.tensor(step), "exp_avg": tensors[f"{name}.exp_avg"].clone(),
                              "exp_avg_sq": tensors[f"{name}.exp_avg_sq"].clone()}
    return TrainState(**meta["state"])


# ------------------------------------------------------------------------------------------ loop
def train(module: nn.Module, loss_fn: LossFn, data: Callable[[int], Iterator[dict[str, Any]]], cfg: TrainConfig, *,
          resume: bool = True,
          eval_fn: Callable[[nn.Module, int], dict[str, Any]] | None = None,
          on_checkpoint: Callable[[nn.Module, TrainState], None] | None = None,
          examples_per_batch: int = 1) -> TrainState:
    """Run `cfg.steps` optimizer steps of `loss_fn` (resuming from out_dir/last if present).

    `data(k)` must return the batch iterator positioned after k batches (deterministic data), which is
    what makes a resumed run see exactly the batches an uninterrupted one would.
    """
    torch.manual_seed(cfg.seed)
    optimizer = make_optimizer(module, cfg)
    ckpt = Path(cfg.out_dir) / "last"
    state = TrainState()
    if resume and (ckpt / "state.json").is_file():
        state = load_train_checkpoint(ckpt, module, optimizer)
        logger.info("resumed from %s at step %d", ckpt, state.step)
    module.train()
    bar = tqdm(total=cfg.steps, initial=state.step, desc=Path(cfg.out_dir).name, dynamic_ncols=True,
               mininterval=5.0)
    start = run_start = window_t = time.time()
    window_n = 0
    # A resumed time-scheduled run plans its time as what was spent before plus this run's max_minutes.
    spent_before, budget = state.seconds, state.seconds + cfg.max_minutes * 60

    def time_used() -> float:
        return (spent_before + time.time() - run_start) / budget if budget else 0.0

    batches = data(state.step)
    while state.step < cfg.steps:
        batch = next(batches)
        for group in optimizer.param_groups:
            group["lr"] = lr_at(cfg, state.step, time_used())
        loss, metrics = loss_fn(batch)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if cfg.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(module.parameters(), cfg.grad_clip)
        optimizer.step()
        state.step += 1
        state.losses.append(round(float(loss.detach()), 5))
        state.metrics = {k: round(v, 4) for k, v in metrics.items()}
        state.position = state.step
        window_n += examples_per_batch
        bar.update(1)
        if state.step % cfg.log_every == 0:
            rate = window_n / max(time.time() - window_t, 1e-6)
            recent = state.losses[-cfg.log_every:]
            bar.set_postfix(loss=f"{sum(recent) / len(recent):.4f}", ex_s=f"{rate:.1f}", **state.metrics)
            logger.info("step %d loss %.4f %s %.1f ex/s lr %.2e", state.step, sum(recent) / len(recent),
                        state.metrics, rate, lr_at(cfg, state.step, time_used()))
            window_t, window_n = time.time(), 0
        if eval_fn is not None and cfg.eval_every and state.step % cfg.eval_every == 0:
            module.eval()
            result = eval_fn(module, state.step)
            module.train()
            state.evals.append({"step": state.step, **result})
            logger.info("eval at step %d: %s", state.step, result)
        out_of_time = cfg.max_minutes and (time.time() - run_start) > cfg.max_minutes * 60
        if state.step % cfg.ckpt_every == 0 or state.step == cfg.steps or out_of_time:
            state.seconds += time.time() - start
            start = time.time()
            save_train_checkpoint(ckpt, module, optimizer, state, cfg)
            if on_checkpoint is not None:
                module.eval()
                on_checkpoint(module, state)
                module.train()
        if out_of_time:
            logger.info("stopping at step %d: max_minutes reached", state.step)
            break
    bar.close()
    module.eval()
    return state
