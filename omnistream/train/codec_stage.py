"""Stage 1 driver: speak the world's answer sentences in the output voices, fit the residual VQ on their
features, then train Code2Wav to turn the codes back into the 24 kHz waveform."""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch

from omnistream.synth import OUTPUT_VOICES, TASKS, draw_task, speak_answer
from omnistream.train.codec import FRAME, ResidualVQ, codec_loss, encode_wave, frame_features, pad_to_frames
from omnistream.train.loop import TrainConfig, TrainState, train
from omnistream.train.parts import fresh_model, save_part

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class CodecStage:
    assets: str
    work: str
    train: TrainConfig
    num_sentences: int = 400
    crop_frames: int = 24
    batch_size: int = 8
    seed: int = 0


def answer_sentences(n: int, seed: int = 0) -> list[str]:
    """n distinct answers drawn over every task (what the talker will have to say)."""
    rng = np.random.default_rng(seed)
    out: dict[str, None] = {}
    tries = 0
    while len(out) < n and tries < 50 * n:
        task = TASKS[int(rng.integers(len(TASKS)))]
        out[draw_task(task, rng).answer] = None
        tries += 1
    return list(out)


def build_corpus(sentences: list[str]) -> list[torch.Tensor]:
    """Frame-padded waves [F·1920] of every sentence in every output voice."""
    return [pad_to_frames(speak_answer(text, voice)) for text in sentences for voice in sorted(OUTPUT_VOICES)]


def crop_batches(codes: list[torch.Tensor], waves: list[torch.Tensor], crop: int, batch_size: int,
                 seed: int) -> Any:
    """data(k) → iterator of random crops; batch b is drawn from its own generator (resumable)."""
    def data(start: int) -> Iterator[dict[str, torch.Tensor]]:
        b = start
        while True:
            gen = torch.Generator().manual_seed(seed * 1_000_003 + b)
            items = torch.randint(0, len(codes), (batch_size,), generator=gen).tolist()
            code_rows, wave_rows = [], []
            for i in items:
                c, w = codes[i], waves[i]
                frames = c.shape[1]
                if frames < crop:
                    c = torch.cat([c, c[:, -1:].expand(-1, crop - frames)], 1)
                    w = torch.nn.functional.pad(w, (0, (crop - frames) * FRAME))
                    frames = crop
                s = int(torch.randint(0, frames - crop + 1, (1,), generator=gen))
                code_rows.append(c[:, s:s + crop])
                wave_rows.append(w[s * FRAME:(s + crop) * FRAME])
            b += 1
            yield {"codes": torch.stack(code_rows), "wave": torch.stack(wave_rows)}
    return data


def run_codec_stage(stage: CodecStage, threads: int = 2) -> TrainState:
    torch.set_num_threads(threads)
    work = Path(stage.work)
    model = fresh_model(stage.assets, stage.work)
    cfg = model.config.code2wav_config
    sentences = answer_sentences(stage.num_sentences, stage.seed)
    waves = build_corpus(sentences)
    logger.info("codec corpus: %d utterances, %.1f s", len(waves), sum(w.numel() for w in waves) / 24000)
    rvq_path = work / "rvq.safetensors"
    if rvq_path.is_file():
        rvq = ResidualVQ.load(rvq_path)
    else:
        feats = torch.cat([frame_features(w) for w in waves])
        rvq = ResidualVQ.fit(feats, cfg.num_quantizers, cfg.codebook_size, seed=stage.seed)
        work.mkdir(parents=True, exist_ok=True)
        rvq.save(rvq_path)
    codes = [encode_wave(rvq, w)[0] for w in waves]
    code2wav = model.code2wav

    def checkpoint(module: torch.nn.Module, state: TrainState) -> None:
        save_part(stage.work, "code2wav", module)

    state = train(code2wav, lambda b: codec_loss(code2wav, b),
                  crop_batches(codes, waves, stage.crop_frames, stage.batch_size, stage.seed), stage.train,
                  on_checkpoint=checkpoint, examples_per_batch=stage.batch_size)
    save_part(stage.work, "code2wav", code2wav)
    return state
