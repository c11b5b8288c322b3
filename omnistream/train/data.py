"""Thinker training samples: synth examples → processor tensors with answer-only labels, and batching.

A sample is the processor's prompt (chat template with the generation prompt, media expanded, TM-RoPE ids)
followed by the answer tokens and `<|im_end|>`; labels are -100 everywhere except the answer and the end
token, so the loss only teaches what the assistant says (the paper's SFT masking).
Batches are right-padded: with causal attention the padding after a row never reaches its real tokens.
"""
from __future__ import annotations

import dataclasses
import logging
import zlib
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Mapping

import numpy as np
import torch

from omnistream.errors import ConfigError
from omnistream.inputs import Processor
from omnistream.synth import Example, make_examples, speech
from omnistream.synth.sentences import spoken_form
from omnistream.synth.tasks import TRANSCRIBE_TASKS

logger = logging.getLogger(__name__)
IGNORE = -100


@dataclass
class Sample:
    """One example's tensors (no batch dimension)."""
    input_ids: torch.Tensor        # [T]
    labels: torch.Tensor           # [T], IGNORE outside the answer
    position_ids: torch.Tensor     # [3, T]
    prompt_len: int
    pixel_values: torch.Tensor | None = None
    image_grid_thw: torch.Tensor | None = None
    pixel_values_videos: torch.Tensor | None = None
    video_grid_thw: torch.Tensor | None = None
    input_features: torch.Tensor | None = None      # [mel, F]
    task: str = ""
    twin: Sample | None = None      # the same example with its question typed (QuestionSpeaker, `twins`)


def think_heard_question(example: Example) -> Example:
    """A spoken question's target with the question as heard written down first, in a thinking span:
    '<think>is there a red circle</think>Yes.' The model then answers the words it has just written, as it
    does a typed question, rather than committing to an answer straight from the audio; the engine shows the
    span as thinking and never speaks it. Typed questions and transcription keep their answers."""
    if example.question_modality != "speech" or example.task in TRANSCRIBE_TASKS:
        return example
    return dataclasses.replace(example, answer=f"<think>{spoken_form(example.question)}</think>{example.answer}")


def encode(processor: Processor, example: Example) -> Sample:
    """Prompt tensors from the processor plus the answer continuation (positions continue by +1, spec §3)."""
    inputs = processor(example.messages)
    prompt = inputs.input_ids[0]                                           # [P]
    answer = processor.tokenizer.encode(example.answer) + [processor.token_ids.im_end]
    n = len(answer)
    start = inputs.position_ids[:, 0, -1:] + 1                             # [3, 1]
    tail = start + torch.arange(n, dtype=inputs.position_ids.dtype)[None]  # [3, n]
    input_ids = torch.cat([prompt, torch.tensor(answer)])
    labels = torch.full_like(input_ids, IGNORE)
    labels[len(prompt):] = torch.tensor(answer)
    features = None
    if inputs.input_features is not None:
        length = int(inputs.feature_attention_mask[0].sum())
        features = inputs.input_features[0, :, :length]
    return Sample(input_ids, labels, torch.cat([inputs.position_ids[:, 0], tail], dim=1), len(prompt),
                  inputs.pixel_values, inputs.image_grid_thw, inputs.pixel_values_videos, inputs.video_grid_thw,
                  features, example.task)


def collate(samples: list[Sample], pad_id: int) -> dict[str, Any]:
    """Right-padded batch. Labels are pre-shifted: labels[b, t] is the target of the logits at t."""
    T = max(len(s.input_ids) for s in samples)
    B = len(samples)
    input_ids = torch.full((B, T), pad_id, dtype=torch.long)
    targets = torch.full((B, T), IGNORE, dtype=torch.long)
    positions = torch.zeros((3, B, T), dtype=torch.float32)
    for b, s in enumerate(samples):
        n = len(s.input_ids)
        input_ids[b, :n] = s.input_ids
        targets[b, :n - 1] = s.labels[1:]
        positions[:, b, :n] = s.position_ids
        positions[:, b, n:] = s.position_ids[:, -1:] + 1 + torch.arange(T - n)
    batch: dict[str, Any] = {"input_ids": input_ids, "targets": targets, "position_ids": positions}
    for pixels, grid in (("pixel_values", "image_grid_thw"), ("pixel_values_videos", "video_grid_thw")):
        parts = [s for s in samples if getattr(s, pixels) is not None]
        if parts:
            batch[pixels] = torch.cat([getattr(s, pixels) for s in parts])
            batch[grid] = torch.cat([getattr(s, grid) for s in parts])
    audio = [s.input_features for s in samples if s.input_features is not None]
    if audio:
        F = max(a.shape[-1] for a in audio)
        feats = torch.zeros(len(audio), audio[0].shape[0], F)
        mask = torch.zeros(len(audio), F, dtype=torch.long)
        for i, a in enumerate(audio):
            feats[i, :, :a.shape[-1]] = a
            mask[i, :a.shape[-1]] = 1
        batch["input_features"], batch["feature_attention_mask"] = feats, mask
    rows = [b for b, s in enumerate(samples) if s.twin is not None]
    if rows:
        batch["twin"] = collate([samples[b].twin for b in rows], pad_id)
        batch["twin_rows"] = torch.tensor(rows)
    return batch


def thinker_loss(thinker: torch.nn.Module, batch: Mapping[str, Any], per_example: bool = False,
                 twin_weight: float = 0.0) -> tuple[torch.Tensor, dict[str, float]]:
    """Cross-entropy over answer tokens; also token accuracy for the progress bar.

    Token mean by default. `per_example` averages within each answer first, then over answers: with the token
    mean a "Yes." weighs 3 tokens against a description's ~20, so yes/no and counting questions, whose answer
    hinges on one token, get a sliver of the gradient.

    `twin_weight` > 0 adds `twin_consistency` for the rows that have a typed twin (batch["twin"])."""
    twins = twin_weight > 0 and "twin" in batch
    middle = _middle_layer(thinker) if twins else None
    hidden, captured = _decode(thinker, batch, middle)
    targets = batch["targets"]
    keep = targets != IGNORE
    logits = thinker.compute_logits(hidden[keep])                          # [N, V]
    token_loss = torch.nn.functional.cross_entropy(logits.float(), targets[keep], reduction="none")
    if per_example:
        counts = keep.sum(1)                                                # answer tokens per example
        weights = 1.0 / counts.clamp(min=1)[keep.nonzero()[:, 0]]
        loss = (token_loss * weights).sum() / (counts > 0).sum()
    else:
        loss = token_loss.mean()
    acc = (logits.argmax(-1) == targets[keep]).float().mean().item()
    metrics = {"tok_acc": acc}
    if twins:
        twin_loss = twin_consistency(thinker, batch, hidden, captured, middle)
        loss = loss + twin_weight * twin_loss
        metrics["twin"] = twin_loss.item()
    return loss, metrics


def _middle_layer(thinker: torch.nn.Module) -> int:
    return max(1, len(thinker.model.layers) // 2)


def _decode(thinker: torch.nn.Module, batch: Mapping[str, Any], capture: int | None,
            ) -> tuple[torch.Tensor, torch.Tensor | None]:
    embeds, visual_mask, deepstack = thinker.embed(
        batch["input_ids"], batch.get("input_features"), batch.get("feature_attention_mask"),
        batch.get("pixel_values"), batch.get("image_grid_thw"), batch.get("pixel_values_videos"),
        batch.get("video_grid_thw"))
    return thinker(embeds, batch["position_ids"], visual_mask=visual_mask, deepstack=deepstack,
                   capture_hidden_layer=capture)


def twin_consistency(thinker: torch.nn.Module, batch: Mapping[str, Any], hidden: torch.Tensor,
                     captured: torch.Tensor, middle: int) -> torch.Tensor:
    """How far a spoken question leaves the language model from where its typed twin leaves it.

    A spoken question is learnt only where the answer repeats what was asked before it depends on it ("The
    circle is red."): there the answer's own text carries the question on. "Is there a red square?" -> "Yes."
    gives one bit for the whole path from speech to the image, and the from-nothing runs answered it from the
    image alone (spoken exists at chance while typed reached 94-100%). The typed twin (same image, same answer,
    no gradient) shows the states that path should reach: at every answer position, the middle layer's and the
    last layer's hidden state of the spoken row are pulled towards the twin's (squared error over the twin's
    squared norm, so the scale of the states does not matter). Both rows hold the same answer tokens, so the
    positions pair up in order."""
    twin = batch["twin"]
    with torch.no_grad():
        twin_hidden, twin_captured = _decode(thinker, twin, middle)
    rows = batch["twin_rows"]
    keep, twin_keep = batch["targets"][rows] != IGNORE, twin["targets"] != IGNORE
    if not torch.equal(keep.sum(1), twin_keep.sum(1)):
        raise ValueError("a spoken row and its typed twin have different answers")
    pairs = ((captured[rows][keep], twin_captured[twin_keep]), (hidden[rows][keep], twin_hidden[twin_keep]))
    terms = [((spoken.float() - typed.float()).pow(2).sum(-1) / typed.float().pow(2).sum(-1).clamp(min=1e-6)).mean()
             for spoken, typed in pairs]
    return sum(terms) / len(terms)


class QuestionSpeaker:
    """Makes training speech varied: typed questions become spoken ones over fresh images, and every clip is
    played at a random speed with fresh noise.

    A fixed pool of (image, spoken question) pairs is learnt by heart: the model then fails on voices it has not
    heard. Here the image and answer come fresh with every example; the question's speech comes from a bank of
    `clips_per_question` clips per question text. Slot k of a text is one fixed train voice, rate and pitch
    (synthesized once; espeak-ng's disk cache keeps it), so after the bank fills no espeak call is needed.
    Every use adds a speed factor in `speed_range` (a different vocal tract and tempo) and fresh noise;
    transcription audio, already spoken, gets the speed factor too. A fixed function of (seed, example index),
    so resumed runs see the same examples.
    """

    def __init__(self, seed: int, spoken_fraction: float = 1.0, clips_per_question: int = 200,
                 speed_range: tuple[float, float] = (0.9, 1.1)) -> None:
        self.seed, self.spoken_fraction = seed, spoken_fraction
        self.clips_per_question, self.speed_range = clips_per_question, speed_range

    def _rng(self, *keys: int) -> np.random.Generator:
        return np.random.default_rng(np.random.SeedSequence([self.seed, *keys]))

    def clip(self, text: str, slot: int) -> tuple[np.ndarray, speech.SpeechParams]:
        """Clean speech of bank slot `slot` of question `text`."""
        params = speech.sample_speech_params(self._rng(1, zlib.crc32(text.encode()), slot), "train")
        return speech.synthesize(text, params), params

    def __call__(self, example: Example, index: int) -> Example:
        rng = self._rng(2, index)
        speed = float(rng.uniform(*self.speed_range))
        content = example.messages[0]["content"]
        if example.task in TRANSCRIBE_TASKS:
            new = [{**part, "audio": (speech.perturb_speed(part["audio"][0], speed), part["audio"][1])}
                   if part["type"] == "audio" else part for part in content]
            return dataclasses.replace(example, messages=[{"role": "user", "content": new}])
        if example.question_modality != "text" or rng.random() >= self.spoken_fraction:
            return example
        clean, params = self.clip(example.question, int(rng.integers(self.clips_per_question)))
        wave = speech.add_noise(speech.perturb_speed(clean, speed), rng, float(rng.uniform(*speech.SNR_DB_RANGE)))
        audio = {"type": "audio", "audio": (wave, speech.INPUT_SAMPLE_RATE)}
        new = [audio if part["type"] == "text" else part for part in content]
        return dataclasses.replace(example, question_modality="speech", messages=[{"role": "user", "content": new}],
                                   speech_params=params, spoken_text=example.question)


class ExampleStream:
    """Endless, seeded, resumable stream of encoded samples: example i of (split, seed) is fixed, so a resumed
    run continues with exactly the examples it would have seen (`position` is saved in the checkpoint).
    `transform(example, index)`, when given, rewrites each example before it is encoded (QuestionSpeaker); with
    `twins`, an example whose typed question it made spoken keeps the typed one as its `twin`. With
    `think_spoken`, spoken questions are answered after a thinking span (`think_heard_question`)."""

    def __init__(self, processor: Processor, task_mix: Mapping[str, float], *, seed: int = 0,
                 spoken_fraction: float = 0.0, split: str = "train", chunk: int = 64, position: int = 0,
                 transform: Callable[[Example, int], Example] | None = None, twins: bool = False,
                 think_spoken: bool = False) -> None:
        self.processor, self.task_mix, self.seed = processor, dict(task_mix), seed
        self.spoken_fraction, self.split, self.chunk = spoken_fraction, split, chunk
        self.position, self.transform, self.twins = position, transform, twins
        self.think_spoken = think_spoken
        self._buffer: list[Sample] = []
        self._buffer_start = position

    def _fill(self) -> None:
        examples = make_examples(self.split, self.chunk, self.seed, self.task_mix, start=self.position,
                                 spoken_fraction=self.spoken_fraction, workers=1)
        target = think_heard_question if self.think_spoken else (lambda example: example)
        if self.transform is None:
            self._buffer = [encode(self.processor, target(e)) for e in examples]
            return
        self._buffer = []
        for i, example in enumerate(examples):
            changed = self.transform(example, self.position + i)
            sample = encode(self.processor, target(changed))
            if self.twins and example.question_modality == "text" and changed.question_modality == "speech":
                sample.twin = encode(self.processor, example)
            self._buffer.append(sample)

    def take(self, n: int) -> list[Sample]:
        out = []
        while len(out) < n:
            offset = self.position - self._buffer_start
            if not self._buffer or offset >= len(self._buffer) or offset < 0:
                self._buffer_start = self.position - (self.position % self.chunk)
                saved = self.position
                self.position = self._buffer_start
                self._fill()
                self.position = saved
                offset = self.position - self._buffer_start
            out.append(self._buffer[offset])
            self.position += 1
        return out


def batches(stream: ExampleStream, batch_size: int, pad_id: int) -> Iterator[dict[str, Any]]:
    while True:
        yield collate(stream.take(batch_size), pad_id)


class _PooledStream:
    """Examples [0, pool) of a stream, cycled; each encoded once and kept (espeak speech is the costly part)."""

    def __init__(self, stream: ExampleStream, pool: int, position: int) -> None:
        self.stream, self.pool, self.position = stream, pool, position
        self.cache: dict[int, Sample] = {}

    def take(self, n: int) -> list[Sample]:
        out = []
        for _ in range(n):
            index = self.position % self.pool
            if index not in self.cache:
                self.stream.position = index
                self.cache[index] = self.stream.take(1)[0]
            out.append(self.cache[index])
            self.position += 1
        return out


class _BatchDataset(torch.utils.data.IterableDataset):
    def __init__(self, source: "BatchSource", start_batch: int) -> None:
        super().__init__()
        self.source, self.start_batch = source, start_batch

    def __iter__(self) -> Iterator[dict[str, Any]]:
        torch.set_num_threads(1)
        src, b = self.source, self.start_batch
        groups = src.groups()
        streams = {}
        for k, (name, mix, spoken, per_batch) in enumerate(groups):
            seed = src.seed + 1000 * k
            if src.question_clips and name != "typed":
                speaker = QuestionSpeaker(seed, spoken, src.question_clips)
                stream = ExampleStream(src.processor, mix, seed=seed, spoken_fraction=0.0, transform=speaker,
                                       twins=src.twins, think_spoken=src.think_spoken)
            else:
                stream = ExampleStream(src.processor, mix, seed=seed, spoken_fraction=spoken,
                                       think_spoken=src.think_spoken)
            done = src.batches_before(b, name) * per_batch
            if name == "spoken" and src.spoken_pool and not src.question_clips:
                streams[name] = _PooledStream(stream, src.spoken_pool, done)
            else:
                stream.position = done
                streams[name] = stream
        while True:
            if src.is_video(b):
                samples = streams["video"].take(src.video_batch_size)
            else:
                samples = [s for name, _, _, per in groups if name != "video" for s in streams[name].take(per)]
            yield collate(samples, src.processor.pad_id)
            b += 1


@dataclass
class BatchSource:
    """Batch b is a fixed function of (seed, b), so `source(k)` resumes after k batches.

    Three streams: typed questions about images (cheap, always fresh), spoken questions and transcription
    (espeak is the costly part: with `question_clips` > 0 every example is fresh and its question's speech
    comes from QuestionSpeaker's bank of that many clips per question; with 0, a pool of `spoken_pool` examples
    is cycled, each encoded once — the first recipes' behaviour), and videos
    (~600 tokens each, so they get their own batch every `video_every` batches — padding would otherwise make
    every row 600 long). A non-video batch holds `batch_size` examples, `spoken_per_batch` of them spoken.
    With `twins` (needs `question_clips`) a spoken question, image or video, carries its typed twin (Sample.twin).
    With `think_spoken` a spoken image or video question is answered after a thinking span that writes the
    question down (`think_heard_question`); its typed twin would then have another target, so not both.
    With `workers` > 0 the examples are made in a background process while the main process trains."""
    processor: Processor
    task_mix: Mapping[str, float]
    batch_size: int = 16
    seed: int = 0
    spoken_fraction: float = 0.0
    workers: int = 1
    video_every: int = 12
    video_batch_size: int = 8
    spoken_pool: int = 3000
    question_clips: int = 0
    twins: bool = False
    think_spoken: bool = False

    def __post_init__(self) -> None:
        if self.twins and not self.question_clips:
            raise ConfigError("typed twins need question_clips > 0: only QuestionSpeaker keeps the typed question",
                              param="twins")
        if self.twins and self.think_spoken:
            raise ConfigError("typed twins and think_spoken do not mix: a thinking span makes the spoken "
                              "question's target differ from its typed twin's", param="think_spoken")

    def groups(self) -> list[tuple[str, dict[str, float], float, int]]:
        """(name, task mix, spoken fraction, examples per non-video batch) of the non-empty streams."""
        from omnistream.synth.tasks import IMAGE_TRAINING_TASKS, TRANSCRIBE_TASKS, VIDEO_TASKS
        image = {t: w for t, w in self.task_mix.items() if t in IMAGE_TRAINING_TASKS and w > 0}
        transcribe = {t: w for t, w in self.task_mix.items() if t in TRANSCRIBE_TASKS and w > 0}
        video = {t: w for t, w in self.task_mix.items() if t in VIDEO_TASKS and w > 0}
        spoken_mix = {**{t: w * self.spoken_fraction for t, w in image.items()}, **transcribe}
        spoken_mix = {t: w for t, w in spoken_mix.items() if w > 0}
        total = sum(image.values()) + sum(spoken_mix.values())
        n_spoken = round(self.batch_size * sum(spoken_mix.values()) / total) if spoken_mix and total else 0
        if spoken_mix and not image:
            n_spoken = self.batch_size
        out = []
        if image and self.batch_size - n_spoken > 0:
            out.append(("typed", image, 0.0, self.batch_size - n_spoken))
        if n_spoken:
            # image questions in this stream are always spoken (transcription always is)
            out.append(("spoken", spoken_mix, 1.0, n_spoken))
        if video:
            out.append(("video", video, self.spoken_fraction, self.video_batch_size))
        return out

    def has_video(self) -> bool:
        return any(name == "video" for name, *_ in self.groups())

    def is_video(self, b: int) -> bool:
        if not self.has_video():
            return False
        if len(self.groups()) == 1:
            return True
        return b % self.video_every == self.video_every - 1

    def batches_before(self, b: int, name: str) -> int:
        """How many batches before batch b drew from stream `name`."""
        videos = sum(self.is_video(i) for i in range(b)) if self.has_video() else 0
        return videos if name == "video" else b - videos

    def __call__(self, start_batch: int = 0) -> Iterator[dict[str, Any]]:
        dataset = _BatchDataset(self, start_batch)
        if self.workers <= 0:
            return iter(dataset)
        loader = torch.utils.data.DataLoader(dataset, batch_size=None, num_workers=self.workers,
                                             prefetch_factor=4, persistent_workers=False)
        return iter(loader)


def seed_everything(seed: int) -> None:
    torch.manual_seed(seed)
    np.random.seed(seed % (2**32))
