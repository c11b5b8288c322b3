"""The whole built-in model from nothing, in one command and a fixed wall-clock budget.

    omnistream train recipes/builtin.py [--work runs/scratch] [--out runs/scratch/model] [--hours 3]

Writes the assets (small BPE tokenizer over the world's sentences, chat template, config.json with a 2-layer
thinker language model, train/builtin_config.py), then runs the three stages as single-threaded child
processes on the 2-core CPU, two at a time (one per core), each ending at its share of the budget:
  codec:   mel features -> residual k-means VQ (4 x 256), then Code2Wav (MR-STFT + mel + waveform L1)
           for CODEC_SHARE of the budget; its core then goes to the talker
  thinker: encoder alignment (language model frozen, 100 steps), then joint training on every task until the
           end: every spoken question over a fresh image (QuestionSpeaker), the per-example loss
  talker:  starts when the codec ends; talker + code predictor on the codec codes of the spoken answers from
           the thinker's states (video questions in batches of their own), re-reading the thinker every 50
           steps; ends with it
then assembles config + tokenizer + model.safetensors + training.json into --out. Learning rates follow the
clock (TrainConfig.time_schedule), so every stage ends decayed whenever its time is up. Stopped midway,
the same command resumes each stage from its last checkpoint with the time that is left.

This is the from-nothing recipe of the round-3 shape, written in the fifth session. Run with `--hours 2.35`
(eighth session, this mix): mean question accuracy 86.4% / 88.9%, transcription WER 1.0-1.7%, intelligibility
17.3%; the talker's video batches and CODEC_SHARE 0.3 came with the ninth session's run (17,287 talker steps
against 11,694; intelligibility 12.7%, but with another mix, 79.5% / 82.2%). The seventh session's run (4-layer
thinker, one video batch in 8) reached 81-82%, the fifth session's (three processes at once) 73-76% (a 224 px run
is below, at SIZES). The checkpoint shipped until the eleventh session (90-91%) came from the
first version of this recipe (`git show 77ec1b4:recipes/builtin.py`, 2-layer thinker, a cycled pool of spoken
examples) continued by recipes/continue.py rounds 1-3, ~6.5 h in all; the one shipped now (91-92.5%) adds round 4
(~1.8 h more). docs/model-card.md compares them.
`--stage codec|thinker|talker|finish` runs one part alone (what the parent process starts; `finish` records
`--hours` as the budget the run had).
"""
from __future__ import annotations

import argparse
import json
import logging
import subprocess
import sys
import time
from pathlib import Path

from omnistream.train.builtin_config import BuiltinSizes, write_assets
from omnistream.train.codec_stage import CodecStage, run_codec_stage
from omnistream.train.loop import TrainConfig
from omnistream.train.parts import assemble, training_summary
from omnistream.train.talker_stage import TalkerStage, run_talker_stage
from omnistream.train.thinker_stage import IMAGE_TYPED_MIX, ThinkerStage, run_thinker_stage

logger = logging.getLogger(__name__)

# Video frames at the reference processor's size (384 px). A `--hours 2.45` run at 224 px (sixth session) ended
# with directions barely above chance (17-36%) after 15,428 thinker steps, where the seventh session's 384 px run
# reached 74-85% after 15,580: at an equal number of steps, so the lower resolution, not time, is the likely cause.
# A 2-layer language model (the chain that made the shipped model had 2 layers for 23k of its 30k thinker steps)
# and one video batch in 12 (its first stage's rate; its later rounds used 8): per step the seventh session's run
# (4 layers, one in 8) learned as fast as that chain (81% after 15.6k steps, the chain 81% after 15.4k), so what
# it lacked was steps, and these make a step ~30% cheaper (0.28 s of compute against 0.41 s on one core).
SIZES = BuiltinSizes(thinker_layers=2)
VIDEO_EVERY = 12
CODEC_SHARE = 0.3       # 0.35 gave 5,017 codec steps (the shipped codec had 3,300); the rest goes to the talker
FINISH_MINUTES = 2.0     # kept back from the budget for assembly
# Weighted to what the earlier runs found hard (exists, count and describe; spoken questions; direction). The
# ninth session's run moved more weight to exists and count (colour 0.6, count 1.6, shape of colour 0.6, exists
# 2.2, transcription 0.8): typed exists rose from 72-81% to 94-100%, but that run never learned motion direction
# (35-54%), lost 6-16 points on describe and moving colour, and spoken exists stayed at chance: this is the
# eighth session's mix again.
SCRATCH_MIX = {"color": 0.8, "count": 1.3, "shape_of_color": 0.9, "exists": 1.5, "describe": 1.6,
               "direction": 1.0, "moving_color": 0.3, "transcribe_digits": 1.0, "transcribe_sentence": 1.0}
STAGE_NOTES = {
    "codec": "Code2Wav from residual-VQ codes of espeak-ng answers in the two output voices",
    "thinker_align": "encoders + embeddings, language model frozen",
    "thinker_joint": "all tasks; every spoken question over a fresh image; per-example loss",
    "talker": "talker + code predictor, teacher-forced in the engine's prompt layout, thinker re-read every 50 steps",
}


def run(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="omnistream train recipes/builtin.py")
    parser.add_argument("--work", default="runs/scratch")
    parser.add_argument("--out", default="", help="checkpoint folder to write (default: <work>/model)")
    parser.add_argument("--hours", type=float, default=3.0, help="wall-clock budget of the whole run")
    parser.add_argument("--stage", choices=("codec", "thinker", "talker", "finish"), default=None)
    parser.add_argument("--until", type=float, default=0.0, help="(child stages) Unix time to end by")
    args = parser.parse_args(argv)
    work = Path(args.work)
    assets = work / "assets"
    out = args.out or str(work / "model")
    if args.stage == "finish":
        finish(str(assets), str(work), out, args.hours)
        return
    if args.stage:
        run_stage(args.stage, str(assets), str(work), args.until)
        return
    if args.hours <= 0:
        raise SystemExit("--hours must be > 0")
    if not (assets / "config.json").is_file():
        write_assets(assets, SIZES)
    end = time.time() + args.hours * 3600 - FINISH_MINUTES * 60
    # Two training processes at a time, one per core: the talker takes the codec's core when the codec ends.
    children = {stage: start_stage(stage, work, end) for stage in ("codec", "thinker")}
    if children["codec"].wait() != 0:
        # Without the VQ the talker has no targets: stop now rather than train a thinker for hours in vain.
        # Both stages checkpoint, so the same command resumes them once the cause is mended.
        children["thinker"].terminate()
        children["thinker"].wait()
        raise SystemExit(f"the codec stage failed (see {work / 'codec.log'}); the thinker was stopped at its "
                         "last checkpoint and the same command resumes both")
    children["talker"] = start_stage("talker", work, end)
    failed = [stage for stage, proc in children.items() if proc.wait() != 0]
    if failed:
        raise SystemExit(f"stages {failed} failed; see their logs in {work}")
    finish(str(assets), str(work), out, args.hours)


def start_stage(stage: str, work: Path, end: float) -> subprocess.Popen:
    cmd = [sys.executable, "-c", "import sys; from omnistream.train.cli import train_main; sys.exit(train_main())",
           __file__, "--work", str(work), "--stage", stage, "--until", str(end)]
    with open(work / f"{stage}.log", "a") as log:      # the child keeps its own copy of the handle
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
    logger.info("started %s (log: %s)", stage, work / f"{stage}.log")
    return proc


def run_stage(stage: str, assets: str, work: str, until: float) -> None:
    start = time.time()
    minutes = max(1.0, (until - start) / 60)
    if stage == "codec":
        run_codec_stage(CodecStage(assets, work, TrainConfig(
            steps=20000, lr=2e-3, warmup=50, ckpt_every=100, weight_decay=0.0, out_dir=f"{work}/codec",
            max_minutes=minutes * CODEC_SHARE, time_schedule=True), crop_frames=20, batch_size=6), threads=1)
    elif stage == "thinker":
        run_thinker_stage(ThinkerStage(assets, work, TrainConfig(
            steps=100, lr=3e-3, warmup=20, ckpt_every=100, out_dir=f"{work}/thinker_align"),
            task_mix=IMAGE_TYPED_MIX | {"transcribe_digits": 1.0}, freeze_lm=True, data_seed=1))
        run_thinker_stage(ThinkerStage(assets, work, TrainConfig(
            steps=100000, lr=2e-3, warmup=100, ckpt_every=100, out_dir=f"{work}/thinker_joint",
            max_minutes=max(1.0, (until - time.time()) / 60), time_schedule=True),
            task_mix=SCRATCH_MIX, spoken_fraction=0.6, data_seed=2, video_every=VIDEO_EVERY, question_clips=200,
            loss_per_example=True))
    else:
        # The talker needs the VQ's codes for its targets and a thinker to read states from.
        while not all((Path(work) / f"{name}.safetensors").is_file() for name in ("rvq", "thinker")):
            if time.time() > until:
                raise SystemExit("talker: the VQ or the thinker never appeared")
            time.sleep(10)
        run_talker_stage(TalkerStage(assets, work, TrainConfig(
            steps=100000, lr=2e-3, warmup=100, ckpt_every=100, out_dir=f"{work}/talker",
            max_minutes=max(1.0, (until - time.time()) / 60), time_schedule=True), batch_size=8), threads=1)


def finish(assets: str, work: str, out: str, hours: float) -> None:
    assemble(assets, work, out)
    summary = training_summary(work, STAGE_NOTES)
    summary["recipe"] = f"omnistream train recipes/builtin.py --hours {hours:g}"
    summary["notes"] = (
        "Trained from nothing by `omnistream train recipes/builtin.py` on a 2-core CPU: single-threaded processes "
        "two at a time (codec and thinker, then talker and thinker; each with a data process), learning rates on a "
        "cosine that follows the clock. Minutes are each stage's wall time. Steps use batches of 16 (thinker; "
        f"every {VIDEO_EVERY}th batch is 8 videos), 8 (talker; every 16th batch is videos) and 6 two-second crops "
        "(codec).")
    Path(out, "training.json").write_text(json.dumps(summary, indent=1) + "\n")
