"""Recorded talker codes (train/talker_codes.py): what a model said becomes the talker's targets."""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from omnistream.errors import ConfigError
from omnistream.synth import speak_answer
from omnistream.synth.speech import OUTPUT_SAMPLE_RATE
from omnistream.train.loop import TrainConfig
from omnistream.train.parts import fresh_model
from omnistream.train.talker_codes import (
    HeardRightAnswer, load_recording, rebuild_example, record_codes, recorded_batches,
)
from omnistream.train.talker_stage import TalkerStage, run_talker_stage

from .conftest import RECORDED_MIX as MIX


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("OMNISTREAM_CACHE", str(tmp_path_factory.getbasetemp() / "speech-cache"))


def test_every_kept_answer_reloads_with_its_codes_and_rebuilds_its_example(recording):
    _, folder, kept = recording
    assert sorted(p.name for p in folder.iterdir()) == ["codes-0000000.safetensors", "codes-0000003.safetensors"]
    records, mix, spoken = load_recording(folder)
    assert kept == len(records) > 0 and mix == MIX and spoken == 0.5
    for r in records:
        assert r.codes.dtype == torch.long and r.codes.ndim == 2 and 1 <= r.codes.shape[1] <= 12
        example = rebuild_example(r, mix, spoken)
        assert example.answer == r.gold and example.task == r.task and example.answer_voice == r.voice


def test_a_second_call_resumes_rather_than_records_again(recording):
    teacher, folder, _ = recording
    before = {p.name: p.stat().st_mtime_ns for p in folder.iterdir()}
    assert record_codes(teacher, folder, start=0, count=6, seed=9, mix=MIX, spoken_fraction=0.5, chunk=3) == 0
    assert {p.name: p.stat().st_mtime_ns for p in folder.iterdir()} == before


def test_batches_cover_each_pool_once_per_epoch_and_resume_where_they_were(recording):
    records, _, _ = load_recording(recording[1])
    stream = recorded_batches(records, 1, video_every=3, seed=0, start_batch=0)
    batches = [next(stream) for _ in range(12)]
    video = [b[0].task == "direction" for b in batches]
    n_video = sum(r.task == "direction" for r in records)
    assert 0 < n_video < len(records)                 # both pools (seed 9 draws both)
    assert video == [i % 3 == 2 for i in range(12)]
    others = [b[0].index for b, v in zip(batches, video) if not v]
    n_other = len(records) - n_video
    assert sorted(others[:n_other]) == sorted(r.index for r in records if r.task != "direction")
    resumed = recorded_batches(records, 1, video_every=3, seed=0, start_batch=7)
    assert [next(resumed)[0].index for _ in range(5)] == [b[0].index for b in batches[7:12]]


def test_the_talker_trains_on_the_recorded_codes(recording, tiny_assets, tmp_path):
    teacher, folder, _ = recording
    work = tmp_path / "work"
    model = fresh_model(tiny_assets, seed=5)
    from omnistream.train.parts import save_part

    for name in ("thinker", "talker"):
        save_part(work, name, getattr(model, name))
    state = run_talker_stage(TalkerStage(str(teacher), str(work), TrainConfig(
        steps=2, lr=1e-3, warmup=1, ckpt_every=100, out_dir=str(work / "talker_rec")), batch_size=2,
        recorded=str(folder), workers=0), threads=1)
    assert state.step == 2 and all(torch.isfinite(torch.tensor(state.losses)))
    assert (work / "talker.safetensors").is_file()


def test_an_empty_or_missing_recording_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="no recorded talker codes"):
        load_recording(tmp_path)
    with pytest.raises(ConfigError, match="holds no answers"):
        next(recorded_batches([], 2, 0, 0, 0))


def test_heard_right_answer_keeps_only_right_answers_the_recogniser_hears_word_for_word():
    example = SimpleNamespace(answer="The circle is red.")
    clear = speak_answer(example.answer, "ethan")

    def reply(text, audio):
        return SimpleNamespace(text=text, audio=audio, sample_rate=OUTPUT_SAMPLE_RATE)

    keep = HeardRightAnswer()
    assert keep(example, reply(" The circle is red.", clear))
    assert not keep(example, reply("The circle is blue.", clear))                   # a wrong answer
    assert not keep(example, reply("The circle is red.", np.zeros(0, np.float32)))  # nothing said
    assert not keep(example, reply("The circle is red.", speak_answer("The square is green.", "ethan")))


def test_vq_every_interleaves_fresh_vq_batches_with_the_recording_and_resumes(recording, tiny_assets, tmp_path):
    from omnistream.inputs import Processor
    from omnistream.train.codec import ResidualVQ, frame_features, pad_to_frames
    from omnistream.train.talker_stage import _SpeechDataset

    teacher, folder, _ = recording
    cfg = fresh_model(tiny_assets).code2wav.config
    dim = frame_features(pad_to_frames(np.zeros(4000, np.float32))).shape[1]
    gen = torch.Generator().manual_seed(0)
    ResidualVQ(torch.randn(cfg.num_quantizers, cfg.codebook_size, dim, generator=gen), torch.zeros(dim),
               torch.ones(dim)).save(tmp_path / "rvq.safetensors")
    stage = TalkerStage(str(teacher), str(tmp_path), TrainConfig(steps=1, out_dir=str(tmp_path / "t")), batch_size=2,
                        recorded=str(folder), workers=0, vq_every=3, vq_mix={"transcribe_digits": 1.0})
    recorded_answers = {r.answer for r in load_recording(folder)[0]}

    def answers(start, n):
        stream = iter(_SpeechDataset(stage, start))
        return [[tuple(s.answer_ids) for s in next(stream)] for _ in range(n)]

    tokenizer = Processor.from_pretrained(str(teacher)).tokenizer
    batches = answers(0, 9)
    for b, batch in enumerate(batches):
        texts = {tokenizer.decode(list(ids[:-1])).strip() for ids in batch}
        if b % 3 == 2:                                       # fresh digit strings, coded by the VQ
            assert all(set(t.split()) <= set(DIGIT_WORDS) for t in texts) and not texts <= recorded_answers
        else:
            assert texts <= recorded_answers
    assert answers(4, 5) == batches[4:9]                     # a resumed stream draws the same batches
    with pytest.raises(ConfigError, match="vq_every"):
        TalkerStage(str(teacher), str(tmp_path), stage.train, vq_every=1, recorded=str(folder),
                    vq_mix={"transcribe_digits": 1.0})
    with pytest.raises(ConfigError, match="vq_every"):
        TalkerStage(str(teacher), str(tmp_path), stage.train, vq_every=3, vq_mix={"transcribe_digits": 1.0})


DIGIT_WORDS = "zero one two three four five six seven eight nine".split()
