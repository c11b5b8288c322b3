"""The training loop: loss goes down, and a resumed run continues with exactly the same losses."""
from __future__ import annotations

import json

import pytest
import torch

from omnistream.errors import CheckpointError, ConfigError
from omnistream.inputs import Processor
from omnistream.train.data import IGNORE, BatchSource, collate, encode, thinker_loss
from omnistream.train.loop import TrainConfig, load_train_checkpoint, lr_at, make_optimizer, train
from omnistream.train.parts import fresh_model
from omnistream.synth import make_examples

MIX = {"color": 1.0, "exists": 1.0}


def _setup(folder):
    torch.manual_seed(0)
    processor = Processor.from_pretrained(folder)
    model = fresh_model(folder, seed=0)
    source = BatchSource(processor, MIX, batch_size=4, seed=0, workers=0)
    return processor, model.thinker, source


def test_labels_cover_only_the_answer(tiny_assets):
    processor = Processor.from_pretrained(tiny_assets)
    example = make_examples("train", 1, seed=3, task_mix={"count": 1.0})[0]
    sample = encode(processor, example)
    answer = processor.tokenizer.encode(example.answer) + [processor.token_ids.im_end]
    assert sample.labels[sample.labels != IGNORE].tolist() == answer
    assert sample.input_ids[sample.prompt_len:].tolist() == answer
    # answer positions continue the prompt's by +1 on all three axes (text after media, spec §3)
    tail = sample.position_ids[:, sample.prompt_len - 1:]
    assert torch.equal(tail[:, 1:] - tail[:, :-1], torch.ones(3, len(answer)))
    batch = collate([sample, sample], processor.pad_id)
    assert batch["targets"][0, sample.prompt_len - 1:sample.prompt_len - 1 + len(answer)].tolist() == answer


def test_a_few_steps_lower_the_loss(tiny_assets, tmp_path):
    _, thinker, source = _setup(tiny_assets)
    batch = next(source(0))
    before = thinker_loss(thinker, batch)[0].item()
    train(thinker, lambda b: thinker_loss(thinker, b), lambda k: iter([batch] * 100),
          TrainConfig(steps=25, lr=5e-3, warmup=2, out_dir=str(tmp_path / "run"), ckpt_every=100), resume=False)
    after = thinker_loss(thinker, batch)[0].item()
    assert after < 0.7 * before


def test_resume_gives_the_same_losses(tiny_assets, tmp_path):
    cfg = dict(lr=3e-3, warmup=2, ckpt_every=3, log_every=1)
    _, thinker, source = _setup(tiny_assets)
    straight = train(thinker, lambda b: thinker_loss(thinker, b), source,
                     TrainConfig(steps=6, out_dir=str(tmp_path / "a"), **cfg)).losses

    _, thinker, source = _setup(tiny_assets)
    train(thinker, lambda b: thinker_loss(thinker, b), source, TrainConfig(steps=3, out_dir=str(tmp_path / "b"), **cfg))
    _, thinker, source = _setup(tiny_assets)  # a fresh process would start from new weights too
    resumed = train(thinker, lambda b: thinker_loss(thinker, b), source,
                    TrainConfig(steps=6, out_dir=str(tmp_path / "b"), **cfg)).losses
    assert resumed[:3] == straight[:3]
    assert resumed[3:] == straight[3:]
    # the checkpoint is safetensors + JSON, never pickle
    files = sorted(p.name for p in (tmp_path / "b" / "last").iterdir())
    assert files == ["module.safetensors", "optimizer.safetensors", "state.json"]
    assert json.loads((tmp_path / "b" / "last" / "state.json").read_text())["state"]["step"] == 6


def test_checkpoint_errors_and_config_checks(tmp_path, tiny_assets):
    _, thinker, _ = _setup(tiny_assets)
    with pytest.raises(CheckpointError):
        load_train_checkpoint(tmp_path, thinker, make_optimizer(thinker, TrainConfig(steps=1)))
    with pytest.raises(ConfigError):
        TrainConfig(steps=0)
    cfg = TrainConfig(steps=100, lr=1.0, warmup=10, min_lr_ratio=0.1)
    assert lr_at(cfg, 0) == pytest.approx(0.1)
    assert lr_at(cfg, 10) == pytest.approx(1.0)
    assert lr_at(cfg, 100) == pytest.approx(0.1)


def test_time_schedule_decays_the_learning_rate_by_the_clock(monkeypatch, tmp_path):
    cfg = TrainConfig(steps=100_000, lr=1.0, warmup=0, min_lr_ratio=0.1, max_minutes=1.0, time_schedule=True)
    assert lr_at(cfg, 10, 0.0) == pytest.approx(1.0, abs=1e-3)
    assert lr_at(cfg, 10, 0.5) == pytest.approx(0.55, abs=1e-3)
    assert lr_at(cfg, 10, 1.0) == pytest.approx(0.1)
    # without time_schedule the clock does not count
    assert lr_at(TrainConfig(steps=100_000, lr=1.0, warmup=0, max_minutes=1.0), 10, 1.0) == pytest.approx(1.0, abs=1e-3)

    import omnistream.train.loop as loop
    clock = iter(range(0, 10_000, 3))                      # every reading of the clock is 3 s later
    monkeypatch.setattr(loop.time, "time", lambda: float(next(clock)))
    seen = []
    made = loop.make_optimizer
    monkeypatch.setattr(loop, "make_optimizer", lambda m, c: seen.append(made(m, c)) or seen[0])
    weight = torch.nn.Linear(2, 1)
    lrs = []

    def loss_fn(batch):
        lrs.append(seen[0].param_groups[0]["lr"])
        return weight(batch["x"]).pow(2).mean(), {}

    state = train(weight, loss_fn, lambda k: iter(lambda: {"x": torch.ones(1, 2)}, None),
                  TrainConfig(steps=100_000, lr=1.0, warmup=0, min_lr_ratio=0.1, max_minutes=1.0,
                              time_schedule=True, ckpt_every=1000, log_every=1000, out_dir=str(tmp_path / "t")))
    assert 3 < state.step < 100                            # stopped by the clock, not the step count
    assert lrs[0] > 0.9 and lrs[-1] < 0.2                  # and the cosine ran its course on the way
    assert all(a >= b for a, b in zip(lrs, lrs[1:]))


def test_per_example_loss_weighs_every_answer_the_same(tiny_assets):
    processor, thinker, _ = _setup(tiny_assets)
    examples = make_examples("train", 6, 3, {"exists": 1.0, "describe": 1.0}, spoken_fraction=0.0)
    short = next(e for e in examples if e.task == "exists")
    long = next(e for e in examples if e.task == "describe")
    samples = [encode(processor, short), encode(processor, long)]
    assert (samples[0].labels != IGNORE).sum() < (samples[1].labels != IGNORE).sum()
    with torch.no_grad():
        alone = [thinker_loss(thinker, collate([s], processor.pad_id))[0] for s in samples]
        pair = collate(samples, processor.pad_id)
        per_example = thinker_loss(thinker, pair, per_example=True)[0]
        per_token = thinker_loss(thinker, pair)[0]
    torch.testing.assert_close(per_example, (alone[0] + alone[1]) / 2)
    n = [int((s.labels != IGNORE).sum()) for s in samples]
    torch.testing.assert_close(per_token, (alone[0] * n[0] + alone[1] * n[1]) / sum(n))
