"""The talker's teacher-forced training layout is exactly what the engine runs.

A random tiny model speaks greedily through the public API; feeding the engine's own thinker tokens and
codec frames through `TalkerTeacher` must give logits whose argmax is every code the engine chose, for code 0
(talker) and for the residual codebooks (code predictor).
"""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from omnistream.api import Omni
from omnistream.checkpoint import save_checkpoint
from omnistream.inputs import Processor
from omnistream.synth import make_examples
from omnistream.train.parts import fresh_model
from omnistream.train.talker_stage import SpeechSample, TalkerTeacher, talker_loss


@pytest.fixture(scope="module")
def tiny_checkpoint(tiny_assets, tmp_path_factory):
    folder = tmp_path_factory.mktemp("tiny_weights")
    for name in ("tokenizer.json", "tokenizer_config.json", "chat_template.json", "preprocessor_config.json",
                 "config.json"):
        (folder / name).write_bytes((tiny_assets / name).read_bytes())
    save_checkpoint(fresh_model(tiny_assets, seed=5), folder)
    return folder


@pytest.mark.slow
@pytest.mark.parametrize("task", ["color", "transcribe_digits"])
def test_teacher_forcing_matches_engine_greedy(tiny_checkpoint, task):
    example = make_examples("train", 1, seed=11, task_mix={task: 1.0}, spoken_fraction=1.0)[0]
    with Omni.from_pretrained(tiny_checkpoint) as omni:
        reply = omni.chat(example.messages, voice="ethan", max_new_tokens=6, return_audio=True,
                          talker_temperature=0.0, talker_repetition_penalty=1.0, talker_max_new_tokens=10)
    codes = torch.as_tensor(np.asarray(reply.audio_codes))                              # [Q, F]
    assert codes.shape[1] >= 3
    processor = Processor.from_pretrained(tiny_checkpoint)
    model = fresh_model(tiny_checkpoint, seed=5).eval()
    teacher = TalkerTeacher(model, processor)
    sample = SpeechSample(processor(example.messages), list(reply.token_ids), codes, "ethan")
    with torch.no_grad():
        row = teacher.sequence(sample)
        hidden = model.talker(row["embeds"][None], row["positions"][:, None])[0]     # [L, C]
        logits0 = model.talker.compute_logits(hidden[row["frame_rows"]])              # [F, V]
        vocab = logits0.shape[-1]
        logits0[:, max(vocab - 1024, 0):] = float("-inf")                               # the engine's suppression
        assert logits0.argmax(-1).tolist() == codes[0].tolist()
        predictor = model.talker.code_predictor
        seq = [hidden[row["frame_rows"]], model.talker.model.codec_embedding(codes[0])]
        seq += [predictor.embed_code(codes[q], q) for q in range(1, codes.shape[0] - 1)]
        out = predictor(torch.stack(seq, 1), torch.arange(len(seq)).expand(codes.shape[1], -1))
        for step in range(predictor.num_residual):
            assert predictor.compute_logits(out[:, step + 1], step).argmax(-1).tolist() == codes[step + 1].tolist()


def test_talker_loss_decreases(tiny_checkpoint):
    processor = Processor.from_pretrained(tiny_checkpoint)
    model = fresh_model(tiny_checkpoint, seed=5)
    teacher = TalkerTeacher(model, processor)
    example = make_examples("train", 1, seed=2, task_mix={"color": 1.0}, spoken_fraction=0.0)[0]
    gen = torch.Generator().manual_seed(0)
    codes = torch.randint(0, 32, (2, 12), generator=gen)
    batch = [SpeechSample(processor(example.messages), processor.tokenizer.encode(example.answer) + [
        processor.token_ids.im_end], codes, "chelsie")]
    optimizer = torch.optim.AdamW(model.talker.parameters(), lr=1e-2)
    first = None
    for _ in range(20):
        loss, metrics = talker_loss(teacher, batch)
        first = first if first is not None else float(loss.detach())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert float(loss) < 0.5 * first
    assert set(metrics) == {"c0", "acc0", "res", "acc_res"}


def test_codebook0_only_samples_give_the_code_predictor_nothing(tiny_checkpoint):
    processor = Processor.from_pretrained(tiny_checkpoint)
    teacher = TalkerTeacher(fresh_model(tiny_checkpoint, seed=5), processor)
    examples = make_examples("train", 2, seed=2, task_mix={"color": 1.0}, spoken_fraction=0.0)
    gen = torch.Generator().manual_seed(0)
    samples = [SpeechSample(processor(e.messages), processor.tokenizer.encode(e.answer) + [processor.token_ids.im_end],
                            torch.randint(0, 32, (2, 12), generator=gen), voice)
               for e, voice in zip(examples, ("chelsie", "ethan"))]
    c0_only = dataclasses.replace(samples[1], residuals=False)
    with torch.no_grad():
        _, alone = talker_loss(teacher, samples[:1])
        _, both = talker_loss(teacher, samples)
        _, mixed = talker_loss(teacher, [samples[0], c0_only])
        only, none = talker_loss(teacher, [c0_only])
    # the code predictor's loss is the first sample's alone; codebook 0 still counts both
    assert mixed["res"] == pytest.approx(alone["res"], abs=2e-3) and both["res"] != pytest.approx(alone["res"], abs=2e-3)
    assert mixed["c0"] == pytest.approx(both["c0"], abs=1e-3)
    assert set(none) == {"c0", "acc0"} and float(only) == pytest.approx(none["c0"], abs=1e-3)


def test_video_examples_get_batches_of_their_own():
    from omnistream.train.loop import TrainConfig
    from omnistream.train.talker_stage import TALKER_MIX, TalkerStage, batch_plan
    stage = TalkerStage("assets", "work", TrainConfig(steps=1), video_every=4)
    plans = [batch_plan(stage, b) for b in range(40)]
    video = [b for b, (mix, _, _) in enumerate(plans) if set(mix) == {"direction", "moving_color"}]
    assert video == list(range(3, 40, 4))
    other = [b for b in range(40) if b not in video]
    assert all("direction" not in plans[b][0] and "color" in plans[b][0] for b in other)
    # each stream walks its own examples in order, with no gap or repeat, under its own seed
    assert [plans[b][2] for b in video] == list(range(len(video)))
    assert [plans[b][2] for b in other] == list(range(len(other)))
    assert {plans[b][1] for b in video} != {plans[b][1] for b in other}
    examples = make_examples("train", 6, plans[3][1], plans[3][0], spoken_fraction=0.0, workers=1)
    assert {e.task for e in examples} <= {"direction", "moving_color"}
    # 0 keeps the single mixed stream
    mixed = TalkerStage("assets", "work", TrainConfig(steps=1), video_every=0)
    assert batch_plan(mixed, 7) == ({t: w for t, w in TALKER_MIX.items() if w > 0}, mixed.seed, 7)
