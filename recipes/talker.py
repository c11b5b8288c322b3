"""Stage 3 of the built-in model: Talker + code predictor speak the thinker's answers as codec codes.

Needs stage 1's residual VQ (runs/builtin/rvq.safetensors) and a thinker (runs/builtin/thinker.safetensors).

    omnistream train recipes/talker.py [--minutes 60] [--steps 4000] [--work runs/builtin]
"""
from __future__ import annotations

import argparse

from omnistream.train.loop import TrainConfig
from omnistream.train.talker_stage import TalkerStage, run_talker_stage

ASSETS = "omnistream/assets/builtin"


def run(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="omnistream train recipes/talker.py")
    parser.add_argument("--work", default="runs/builtin")
    parser.add_argument("--assets", default=ASSETS)
    parser.add_argument("--steps", type=int, default=4000)
    parser.add_argument("--minutes", type=float, default=60.0)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    run_talker_stage(TalkerStage(args.assets, args.work, TrainConfig(
        steps=args.steps, lr=2e-3, warmup=100, ckpt_every=100, out_dir=f"{args.work}/talker",
        max_minutes=args.minutes), batch_size=args.batch_size), threads=args.threads)
