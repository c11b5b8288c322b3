"""Stage 3: the Talker and its code predictor learn to say the thinker's answer as codec codes.

Each training sequence is laid out exactly as the engine runs the talker (engine/talker_runner.py, spec §1.1):
the prefill from `build_talker_prompt` (user turns + 9-position assistant header, positions from the engine's
own rope-index call), then one decode position per codec frame whose input is the previous frame's embedding
plus the text track S[k−1] (thinker embeddings of g_1..g_{n−2}, then tts_eos, then tts_pad). Targets: code 0 of
every frame, then codec EOS. The code predictor is trained on every frame with teacher forcing, from the
talker's hidden state at the step that produced code 0.
The thinker is frozen here (its weights are re-read from the work folder when it changes, so this stage can
run while the thinker stage is still improving it).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Mapping

import torch
import torch.nn.functional as F
from safetensors.torch import load_file

from omnistream.engine.talker_positions import talker_prompt_positions
from omnistream.errors import ConfigError
from omnistream.inputs import Processor
from omnistream.models.talker import TalkerPromptIds, build_talker_prompt
from omnistream.synth import make_examples, speak_answer
from omnistream.synth.tasks import VIDEO_TASKS
from omnistream.train.codec import ResidualVQ, encode_wave
from omnistream.train.loop import TrainConfig, TrainState, train
from omnistream.train.parts import fresh_model, save_part
from omnistream.train.talker_codes import interleave, load_recording, rebuild_example, recorded_batches

logger = logging.getLogger(__name__)

TALKER_MIX = {"color": 1.0, "count": 1.0, "shape_of_color": 1.0, "exists": 0.6, "describe": 1.2,
              "direction": 0.2, "moving_color": 0.2, "transcribe_digits": 0.8, "transcribe_sentence": 0.8}


@dataclass(frozen=True)
class TalkerStage:
    assets: str
    work: str
    train: TrainConfig
    task_mix: Mapping[str, float] = field(default_factory=lambda: dict(TALKER_MIX))
    spoken_fraction: float = 0.3
    batch_size: int = 8
    seed: int = 3
    workers: int = 1
    reload_every: int = 50
    # Every n-th batch holds only the video tasks of `task_mix` (0: one mixed stream). A video's prompt is ~600
    # positions against ~65 for an image, and a talker batch pads every row to its longest prompt, so one video
    # made its whole batch cost 4-5x (0.55-0.87 s of CPU against 0.15-0.17 s for a batch of 8 on one core).
    video_every: int = 16
    # A folder of answers a trained model spoke (train/talker_codes.py): its codes are the targets instead of the
    # VQ's codes of espeak-ng speech, and its examples the data (task_mix and spoken_fraction come from it).
    recorded: str = ""
    # With a recording: every `vq_every`-th batch instead holds fresh examples of `vq_mix` whose targets are the
    # VQ's codes of espeak-ng speech (0: none), e.g. digit strings, which a talker taught only from its own
    # recorded speech never learnt to follow word by word.
    vq_every: int = 0
    vq_mix: Mapping[str, float] = field(default_factory=dict)
    # False: those batches teach codebook 0 only and the code predictor learns from the recording alone. A VQ read
    # back from Code2Wav (train/vq_recovery.py) gives codebook-0 codes near the talker's own (teacher-forced
    # accuracy 51-73%) but residual codes far from them (21-42%), so its residuals would teach another voice.
    # Measured in round 11 (recipes/continue.py): mixed this way the talker still lost long digit strings; taught
    # on the VQ's codes alone (no recording), it followed them.
    vq_residuals: bool = True

    def __post_init__(self) -> None:
        if self.vq_every and (self.vq_every < 2 or not self.recorded or not self.vq_mix):
            raise ConfigError(f"vq_every={self.vq_every} needs a recording, a vq_mix and vq_every >= 2 (every "
                              f"batch from the VQ is the stage without `recorded`)", param="vq_every")


@dataclass
class SpeechSample:
    """Host-side pieces of one example: processor inputs, answer ids g_0..g_{n-1}, codes [Q, F], voice; with
    `residuals` false only codes[0] is a target (the code predictor skips it)."""
    inputs: Any
    answer_ids: list[int]
    codes: torch.Tensor
    voice: str
    residuals: bool = True


class _SpeechDataset(torch.utils.data.IterableDataset):
    def __init__(self, stage: TalkerStage, start_batch: int) -> None:
        super().__init__()
        self.stage, self.start_batch = stage, start_batch

    def __iter__(self) -> Iterator[list[SpeechSample]]:
        torch.set_num_threads(1)
        stage = self.stage
        processor = Processor.from_pretrained(stage.assets)
        if stage.recorded:
            yield from self._recorded(processor)
            return
        rvq = ResidualVQ.load(Path(stage.work) / "rvq.safetensors")
        b = self.start_batch
        while True:
            mix, seed, index = batch_plan(stage, b)
            yield self._vq_batch(processor, rvq, mix, seed, index)
            b += 1

    def _vq_batch(self, processor: Processor, rvq: ResidualVQ, mix: Mapping[str, float], seed: int,
                  index: int) -> list[SpeechSample]:
        """Batch `index` of (seed, mix): fresh examples, their answers spoken by espeak-ng and coded by `rvq`."""
        stage = self.stage
        examples = make_examples("train", stage.batch_size, seed, mix, start=index * stage.batch_size,
                                 spoken_fraction=stage.spoken_fraction, workers=1)
        batch = []
        for e in examples:
            ids = processor.tokenizer.encode(e.answer) + [processor.token_ids.im_end]
            codes, _ = encode_wave(rvq, speak_answer(e.answer, e.answer_voice))
            batch.append(SpeechSample(processor(e.messages), ids, codes, e.answer_voice,
                                      residuals=stage.vq_residuals or not stage.recorded))
        return batch

    def _recorded(self, processor: Processor) -> Iterator[list[SpeechSample]]:
        stage = self.stage
        records, mix, spoken = load_recording(stage.recorded)
        b, every = self.start_batch, stage.vq_every
        vq = ResidualVQ.load(Path(stage.work) / "rvq.safetensors") if every > 0 else None
        start = b - (b + 1) // every if every > 0 else b          # recorded batches before batch b
        for batch in recorded_batches(records, stage.batch_size, stage.video_every, stage.seed, start):
            if vq is not None and b % every == every - 1:
                yield self._vq_batch(processor, vq, stage.vq_mix, stage.seed + 2, b // every)
                b += 1
            b += 1
            samples = []
            for r in batch:
                e = rebuild_example(r, mix, spoken)
                ids = processor.tokenizer.encode(r.answer) + [processor.token_ids.im_end]
                samples.append(SpeechSample(processor(e.messages), ids, r.codes, r.voice))
            yield samples


def batch_plan(stage: TalkerStage, b: int) -> tuple[dict[str, float], int, int]:
    """(task mix, seed, index within its stream) of talker batch `b`: video batches and the rest are two
    reproducible streams of examples, so a resumed run draws the same batches."""
    mix = {t: w for t, w in stage.task_mix.items() if w > 0}
    video = {t: w for t, w in mix.items() if t in VIDEO_TASKS}
    other = {t: w for t, w in mix.items() if t not in VIDEO_TASKS}
    if stage.video_every <= 0 or not video or not other:
        return mix, stage.seed, b
    is_video, index = interleave(b, stage.video_every)
    return (video, stage.seed + 1, index) if is_video else (other, stage.seed, index)


@torch.no_grad()
def thinker_states(thinker: torch.nn.Module, accept: int, inputs: Any,
                   answer_ids: list[int]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Ids, layer-0 embeddings and accept-layer hidden of prompt + answer (causal: prompt states = prefill's)."""
    prompt = inputs.input_ids[0]
    full = torch.cat([prompt, torch.tensor(answer_ids, dtype=prompt.dtype)])[None]
    start = inputs.position_ids[:, :, -1:] + 1
    positions = torch.cat([inputs.position_ids, start + torch.arange(len(answer_ids))[None, None]], 2)
    embeds, visual_mask, deepstack = thinker.embed(
        full, inputs.input_features, inputs.feature_attention_mask, inputs.pixel_values, inputs.image_grid_thw,
        inputs.pixel_values_videos, inputs.video_grid_thw)
    _, hidden = thinker(embeds, positions, visual_mask=visual_mask, deepstack=deepstack, capture_hidden_layer=accept)
    return full[0], embeds[0], hidden[0]


def speech_batches(stage: TalkerStage):
    def data(start: int) -> Iterator[list[SpeechSample]]:
        dataset = _SpeechDataset(stage, start)
        if stage.workers <= 0:
            return iter(dataset)
        return iter(torch.utils.data.DataLoader(dataset, batch_size=None, num_workers=stage.workers,
                                                prefetch_factor=4, collate_fn=lambda x: x))
    return data


class TalkerTeacher:
    """Builds teacher-forced talker sequences from a frozen thinker, the engine's way."""

    def __init__(self, model: torch.nn.Module, processor: Processor) -> None:
        self.model, self.processor = model, processor
        cfg = model.config
        self.ids = TalkerPromptIds.from_config(cfg)
        self.accept = cfg.talker_config.accept_hidden_layer
        self.codec_eos = cfg.talker_config.codec_eos_token_id
        self._specials = torch.tensor([cfg.tts_bos_token_id, cfg.tts_eos_token_id, cfg.tts_pad_token_id])

    def thinker_states(self, sample: SpeechSample) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return thinker_states(self.model.thinker, self.accept, sample.inputs, sample.answer_ids)

    def sequence(self, sample: SpeechSample) -> dict[str, torch.Tensor]:
        """One talker training row: inputs_embeds [L, C], positions [3, L], code-0 targets [L] (-100 = none)."""
        talker, thinker = self.model.talker, self.model.thinker
        full, embeds, hidden = self.thinker_states(sample)
        P = sample.inputs.input_ids.shape[1]
        g = full[P:]                                                                  # g_0..g_{n-1}
        special = thinker.model.embed_tokens(self._specials).detach()
        prompt = build_talker_prompt(talker, full[:P], embeds[:P], hidden[:P], embeds[P], special, self.ids,
                                     sample.voice)
        positions, delta = talker_prompt_positions(sample.inputs, prompt.input_ids, prompt.user_positions,
                                                   self.processor.token_ids, self.model.config.thinker_config,
                                                   self.model.config.talker_config)
        codes = sample.codes                                                          # [Q, F]
        frames = codes.shape[1]
        # text track S: trailing prompt text, E[g_1..g_{n-2}], tts_eos, then tts_pad
        track = [prompt.trailing_text, talker.project_text(embeds[P + 1:P + len(g) - 1]), prompt.tts_eos_embed[None]]
        S = torch.cat(track)
        if S.shape[0] < frames:
            S = torch.cat([S, prompt.tts_pad_embed[None].expand(frames - S.shape[0], -1)])
        steps = talker.frame_embedding(codes.T) + S[:frames]                          # [F, C]
        T0 = prompt.inputs_embeds.shape[0]
        inputs_embeds = torch.cat([prompt.inputs_embeds, steps])                       # [T0 + F, C]
        decode_pos = (torch.arange(T0, T0 + frames, dtype=torch.float32) + delta)[None].expand(3, -1)
        all_pos = torch.cat([positions[:, 0], decode_pos], 1)                          # [3, T0 + F]
        targets = torch.full((T0 + frames,), -100, dtype=torch.long)
        targets[T0 - 1:T0 - 1 + frames] = codes[0]
        targets[T0 - 1 + frames] = self.codec_eos
        return {"embeds": inputs_embeds, "positions": all_pos, "targets": targets,
                "frame_rows": torch.arange(T0 - 1, T0 - 1 + frames), "codes": codes}


def talker_loss(teacher: TalkerTeacher, batch: list[SpeechSample]) -> tuple[torch.Tensor, dict[str, float]]:
    talker = teacher.model.talker
    rows = [teacher.sequence(s) for s in batch]
    L = max(r["embeds"].shape[0] for r in rows)
    B, C = len(rows), rows[0]["embeds"].shape[1]
    embeds = rows[0]["embeds"].new_zeros(B, L, C)
    positions = torch.zeros(3, B, L)
    targets = torch.full((B, L), -100, dtype=torch.long)
    for b, r in enumerate(rows):
        n = r["embeds"].shape[0]
        embeds[b, :n], targets[b, :n] = r["embeds"], r["targets"]
        positions[:, b, :n] = r["positions"]
        positions[:, b, n:] = r["positions"][:, -1:] + 1 + torch.arange(L - n)
    hidden = talker(embeds, positions)                                              # [B, L, C]
    keep = targets != -100
    logits0 = talker.compute_logits(hidden[keep]).float()
    loss0 = F.cross_entropy(logits0, targets[keep])
    acc0 = (logits0.argmax(-1) == targets[keep]).float().mean().item()
    # code predictor: rows = every frame of every sample whose residual codes are targets
    speaking = [b for b, s in enumerate(batch) if s.residuals]
    stats = {"c0": round(float(loss0.detach()), 3), "acc0": acc0}
    if not speaking:
        return loss0, stats
    h = torch.cat([hidden[b, rows[b]["frame_rows"]] for b in speaking])             # [N, C]
    codes = torch.cat([rows[b]["codes"] for b in speaking], 1).T                   # [N, Q]
    predictor = talker.code_predictor
    parts = [h, talker.model.codec_embedding(codes[:, 0])]
    parts += [predictor.embed_code(codes[:, q], q) for q in range(1, codes.shape[1] - 1)]
    seq = torch.stack(parts, 1)                                                     # [N, Q, C]
    pos = torch.arange(seq.shape[1]).expand(seq.shape[0], -1)
    out = predictor(seq, pos)
    losses, correct = [], []
    for step in range(predictor.num_residual):
        logits = predictor.compute_logits(out[:, step + 1], step).float()
        losses.append(F.cross_entropy(logits, codes[:, step + 1]))
        correct.append((logits.argmax(-1) == codes[:, step + 1]).float().mean().item())
    loss_res = torch.stack(losses).mean()
    return loss0 + loss_res, {**stats, "res": round(float(loss_res.detach()), 3), "acc_res": sum(correct) / len(correct)}


def run_talker_stage(stage: TalkerStage, threads: int = 2) -> TrainState:
    torch.set_num_threads(threads)
    processor = Processor.from_pretrained(stage.assets)
    model = fresh_model(stage.assets, stage.work)
    for p in model.thinker.parameters():
        p.requires_grad = False
    model.thinker.eval()
    teacher = TalkerTeacher(model, processor)
    thinker_file = Path(stage.work) / "thinker.safetensors"
    seen = {"mtime": thinker_file.stat().st_mtime if thinker_file.is_file() else 0.0, "calls": 0}

    def loss_fn(batch: list[SpeechSample]) -> tuple[torch.Tensor, dict[str, float]]:
        seen["calls"] += 1
        if seen["calls"] % stage.reload_every == 0 and thinker_file.is_file():
            mtime = thinker_file.stat().st_mtime
            if mtime != seen["mtime"]:
                model.thinker.load_state_dict(load_file(str(thinker_file)))
                seen["mtime"] = mtime
                logger.info("talker stage: reloaded the thinker")
        return talker_loss(teacher, batch)

    def checkpoint(module: torch.nn.Module, state: TrainState) -> None:
        save_part(stage.work, "talker", module)

    state = train(model.talker, loss_fn, speech_batches(stage), stage.train, on_checkpoint=checkpoint,
                  examples_per_batch=stage.batch_size)
    save_part(stage.work, "talker", model.talker)
    return state
