"""Stage 2 of the built-in model: Thinker encoder alignment, then joint training on every task.

    omnistream train recipes/thinker.py [--minutes 55] [--steps 9000] [--work runs/builtin]
"""
from __future__ import annotations

import argparse

from omnistream.train.loop import TrainConfig
from omnistream.train.thinker_stage import FULL_MIX, IMAGE_TYPED_MIX, ThinkerStage, run_thinker_stage

ASSETS = "omnistream/assets/builtin"


def run(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="omnistream train recipes/thinker.py")
    parser.add_argument("--work", default="runs/builtin")
    parser.add_argument("--assets", default=ASSETS)
    parser.add_argument("--align-steps", type=int, default=100)
    parser.add_argument("--steps", type=int, default=9000)
    parser.add_argument("--minutes", type=float, default=55.0)
    parser.add_argument("--batch-size", type=int, default=16)
    args = parser.parse_args(argv)
    if args.align_steps:
        run_thinker_stage(ThinkerStage(
            args.assets, args.work, TrainConfig(steps=args.align_steps, lr=3e-3, warmup=20, ckpt_every=100,
                                                out_dir=f"{args.work}/thinker_align"),
            task_mix=IMAGE_TYPED_MIX | {"transcribe_digits": 1.0}, batch_size=args.batch_size, freeze_lm=True,
            data_seed=1))
    run_thinker_stage(ThinkerStage(
        args.assets, args.work, TrainConfig(steps=args.steps, lr=2e-3, warmup=100, ckpt_every=250,
                                            out_dir=f"{args.work}/thinker_joint", max_minutes=args.minutes),
        task_mix=FULL_MIX, batch_size=args.batch_size, data_seed=2))
