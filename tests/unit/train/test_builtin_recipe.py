"""recipes/builtin.py: the from-nothing model's shape, and its finish step's record of the run."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from omnistream.inputs import Processor
from omnistream.synth import render_video, sample_video_scene
from omnistream.train.builtin_config import write_assets
from omnistream.train.cli import load_recipe
from omnistream.train.loop import TrainConfig, TrainState, make_optimizer, save_train_checkpoint
from omnistream.train.parts import fresh_model, save_part

RECIPE = Path(__file__).resolve().parents[3] / "recipes" / "builtin.py"


def test_from_nothing_assets_use_the_reference_video_frame_size(tmp_path):
    recipe = load_recipe(RECIPE)
    config = write_assets(tmp_path / "assets", recipe.SIZES)
    assert config["thinker_config"]["text_config"]["num_hidden_layers"] == 2
    frames = render_video(sample_video_scene(np.random.default_rng(0)))
    video = {"role": "user", "content": [{"type": "video", "video": frames}]}
    inputs = Processor.from_pretrained(tmp_path / "assets")([video])
    # 224 px frames upscaled to 384 px as the reference does (576 tokens a video): at 224 px (196 tokens) the
    # recipe's run learned motion direction near chance.
    assert inputs.video_grid_thw.tolist() == [[4, 24, 24]]


def test_a_budget_must_be_positive(tmp_path):
    with pytest.raises(SystemExit, match="--hours"):
        load_recipe(RECIPE).run(["--work", str(tmp_path / "w"), "--hours", "0"])


def test_finish_records_the_command_and_the_stages(tiny_assets, tmp_path):
    recipe = load_recipe(RECIPE)
    work = tmp_path / "work"
    model = fresh_model(tiny_assets, seed=1)
    for name in ("thinker", "talker", "code2wav"):
        save_part(work, name, getattr(model, name))
    cfg = TrainConfig(steps=3, out_dir=str(work / "thinker_joint"))
    save_train_checkpoint(work / "thinker_joint" / "last", model.thinker, make_optimizer(model.thinker, cfg),
                          TrainState(step=3, losses=[0.5, 0.25], seconds=120.0), cfg)
    recipe.finish(str(tiny_assets), str(work), str(tmp_path / "out"), 2.5)
    training = json.loads((tmp_path / "out" / "training.json").read_text())
    assert training["recipe"] == "omnistream train recipes/builtin.py --hours 2.5"
    assert [(s["name"], s["steps"], s["minutes"]) for s in training["stages"]] == [("thinker_joint", 3, 2.0)]
    assert (tmp_path / "out" / "model.safetensors").is_file()


def test_the_talker_takes_the_codec_core_when_the_codec_ends(tmp_path, monkeypatch):
    recipe = load_recipe(RECIPE)
    events: list[str] = []
    _fake_stages(recipe, monkeypatch, events)
    recipe.run(["--work", str(tmp_path / "w"), "--hours", "1"])
    # Never three training processes on the two cores at once.
    assert events[:5] == ["assets", "codec started", "thinker started", "codec ended", "talker started"]
    assert events[-1] == "finish"


def test_a_failed_codec_stops_the_run_at_once(tmp_path, monkeypatch):
    recipe = load_recipe(RECIPE)
    events: list[str] = []
    _fake_stages(recipe, monkeypatch, events, failing="codec")
    with pytest.raises(SystemExit, match="codec stage failed"):
        recipe.run(["--work", str(tmp_path / "w"), "--hours", "1"])
    # No talker waits for a VQ that will never come, and the thinker is not left training on its own.
    assert events[1:] == ["codec started", "thinker started", "codec ended", "thinker stopped", "thinker ended"]


def _fake_stages(recipe, monkeypatch, events: list[str], failing: str = "") -> None:
    """Stage processes that only record what the parent does to them."""
    class Stage:
        def __init__(self, name: str) -> None:
            self.name = name

        def wait(self) -> int:
            events.append(f"{self.name} ended")
            return 1 if self.name == failing else 0

        def terminate(self) -> None:
            events.append(f"{self.name} stopped")

    def start(stage, work, end):
        events.append(f"{stage} started")
        return Stage(stage)

    monkeypatch.setattr(recipe, "start_stage", start)
    monkeypatch.setattr(recipe, "write_assets", lambda *a: events.append("assets"))
    monkeypatch.setattr(recipe, "finish", lambda *a: events.append("finish"))
