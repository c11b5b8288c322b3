"""Stage 1 of the built-in model: speech codec (mel encoder + residual VQ, training-only) and Code2Wav.

    omnistream train recipes/codec.py [--minutes 50] [--steps 1500] [--work runs/builtin]
"""
from __future__ import annotations

import argparse

from omnistream.train.codec_stage import CodecStage, run_codec_stage
from omnistream.train.loop import TrainConfig

ASSETS = "omnistream/assets/builtin"


def run(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="omnistream train recipes/codec.py")
    parser.add_argument("--work", default="runs/builtin")
    parser.add_argument("--assets", default=ASSETS)
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--minutes", type=float, default=50.0)
    parser.add_argument("--sentences", type=int, default=400)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    run_codec_stage(CodecStage(args.assets, args.work, TrainConfig(
        steps=args.steps, lr=2e-3, warmup=50, ckpt_every=100, log_every=10, weight_decay=0.0,
        out_dir=f"{args.work}/codec", max_minutes=args.minutes), num_sentences=args.sentences,
        crop_frames=20, batch_size=6), threads=args.threads)
