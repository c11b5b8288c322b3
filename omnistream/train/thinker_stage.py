"""Stage 2: the Thinker — encoder alignment, then joint training on every task of the shapes world.

Alignment (`freeze_lm=True`) trains the audio and vision encoders (and the embeddings) against a frozen
language model, as the paper's first stage; joint training updates everything. Both use the same stream of
synth examples, with answer-only loss masking (data.py).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import torch

from omnistream.inputs import Processor
from omnistream.train.data import BatchSource, thinker_loss
from omnistream.train.loop import TrainConfig, TrainState, train
from omnistream.train.parts import fresh_model, save_part

logger = logging.getLogger(__name__)

IMAGE_TYPED_MIX = {"color": 1.0, "count": 1.0, "shape_of_color": 1.0, "exists": 1.0, "describe": 1.0}
# Videos cost ~10x an image (576 visual tokens at the processor's video resolution): fewer of them.
FULL_MIX = {**IMAGE_TYPED_MIX, "direction": 0.3, "moving_color": 0.2, "transcribe_digits": 0.6,
            "transcribe_sentence": 0.6}


@dataclass(frozen=True)
class ThinkerStage:
    assets: str
    work: str
    train: TrainConfig
    task_mix: Mapping[str, float] = field(default_factory=lambda: dict(FULL_MIX))
    spoken_fraction: float = 0.5
    batch_size: int = 16
    freeze_lm: bool = False
    data_seed: int = 0
    workers: int = 1
    video_every: int = 12      # every n-th batch is a video batch (BatchSource)
    spoken_pool: int = 3000    # spoken examples encoded once and cycled (BatchSource), when question_clips is 0
    question_clips: int = 0    # > 0: fresh examples, spoken questions from a bank of this many clips per question
    loss_per_example: bool = False  # thinker_loss(per_example=...): every answer weighs the same, short or long
    twin_weight: float = 0.0   # > 0: spoken questions also pulled towards their typed twin (data.twin_consistency)
    think_spoken: bool = False  # spoken questions answered after writing them down (data.think_heard_question)


def _freeze_lm(thinker: torch.nn.Module) -> None:
    for name, p in thinker.named_parameters():
        p.requires_grad = name.startswith(("audio_tower.", "visual.", "model.embed_tokens."))


def run_thinker_stage(stage: ThinkerStage, eval_fn: Any = None, threads: int = 1) -> TrainState:
    torch.set_num_threads(threads)
    processor = Processor.from_pretrained(stage.assets)
    model = fresh_model(stage.assets, stage.work)
    thinker = model.thinker
    if stage.freeze_lm:
        _freeze_lm(thinker)
    source = BatchSource(processor, stage.task_mix, stage.batch_size, stage.data_seed, stage.spoken_fraction,
                         workers=stage.workers, video_every=stage.video_every, spoken_pool=stage.spoken_pool,
                         question_clips=stage.question_clips, twins=stage.twin_weight > 0,
                         think_spoken=stage.think_spoken)

    def checkpoint(module: torch.nn.Module, state: TrainState) -> None:
        save_part(stage.work, "thinker", module)

    def loss_fn(batch: Mapping[str, Any]) -> tuple[torch.Tensor, dict[str, float]]:
        return thinker_loss(thinker, batch, stage.loss_per_example, stage.twin_weight)

    state = train(thinker, loss_fn, source, stage.train, eval_fn=eval_fn, on_checkpoint=checkpoint,
                  examples_per_batch=stage.batch_size)
    save_part(stage.work, "thinker", thinker)
    for p in thinker.parameters():
        p.requires_grad = True
    logger.info("thinker stage %s done at step %d", Path(stage.train.out_dir).name, state.step)
    return state
