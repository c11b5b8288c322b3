"""recipes/continue.py starts from the checkpoint's trained weights, not fresh ones, and ships them back out."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from omnistream.checkpoint import save_checkpoint
from omnistream.errors import ConfigError
from omnistream.train.cli import load_recipe
from omnistream.train.parts import fresh_model

RECIPE = Path(__file__).resolve().parents[3] / "recipes" / "continue.py"
ASSET_FILES = ("tokenizer.json", "tokenizer_config.json", "chat_template.json", "preprocessor_config.json",
               "config.json")


def _checkpoint(tiny_assets: Path, folder: Path, seed: int) -> Path:
    folder.mkdir()
    for name in ASSET_FILES:
        (folder / name).write_bytes((tiny_assets / name).read_bytes())
    save_checkpoint(fresh_model(tiny_assets, seed=seed), folder)
    (folder / "training.json").write_text(json.dumps({"stages": [{"name": "thinker_joint", "steps": 1}]}))
    return folder


def test_work_folder_is_seeded_with_the_checkpoint_weights(tiny_assets, tmp_path):
    recipe = load_recipe(RECIPE)
    shipped = _checkpoint(tiny_assets, tmp_path / "shipped", seed=7)
    work = tmp_path / "work"
    recipe.seed_work(str(shipped), str(work))
    for name in ("thinker", "talker", "code2wav"):
        assert (work / f"{name}.safetensors").is_file(), name
    continued = fresh_model(shipped, work, seed=0).state_dict()
    expected = fresh_model(tiny_assets, seed=7).state_dict()
    assert continued.keys() == expected.keys()
    for key, value in expected.items():
        torch.testing.assert_close(continued[key], value, rtol=0, atol=0, msg=key)
    # an existing part is not overwritten (a resumed continuation keeps its progress)
    before = (work / "thinker.safetensors").read_bytes()
    other = _checkpoint(tiny_assets, tmp_path / "other", seed=8)
    recipe.seed_work(str(other), str(work))
    assert (work / "thinker.safetensors").read_bytes() == before


def test_finish_ships_the_work_parts_and_keeps_the_training_history(tiny_assets, tmp_path):
    recipe = load_recipe(RECIPE)
    shipped = _checkpoint(tiny_assets, tmp_path / "shipped", seed=7)
    work = tmp_path / "work"
    recipe.seed_work(str(shipped), str(work))
    out = tmp_path / "out"
    recipe.finish(str(shipped), str(work), str(out))
    again = fresh_model(tiny_assets, seed=0)
    from omnistream.checkpoint import load_checkpoint

    load_checkpoint(again, out, dtype=torch.float32)
    expected = fresh_model(tiny_assets, seed=7).state_dict()
    for key, value in again.state_dict().items():
        torch.testing.assert_close(value, expected[key], rtol=0, atol=0, msg=key)
    history = json.loads((out / "training.json").read_text())
    assert [s["name"] for s in history["stages"]] == ["thinker_joint"]


def test_a_second_round_keeps_the_first_rounds_history(tiny_assets, tmp_path):
    recipe = load_recipe(RECIPE)
    shipped = _checkpoint(tiny_assets, tmp_path / "shipped", seed=7)
    history = {"stages": [{"name": "thinker_joint", "steps": 1}, {"name": "thinker_cont", "steps": 5}],
               "notes": recipe.CONTINUE_NOTE}
    (shipped / "training.json").write_text(json.dumps(history))
    work = tmp_path / "work2"
    recipe.seed_work(str(shipped), str(work))
    state = {"state": {"step": 9, "seconds": 60.0, "losses": [0.5, 0.3]}}
    (work / "thinker_cont2" / "last").mkdir(parents=True)
    (work / "thinker_cont2" / "last" / "state.json").write_text(json.dumps(state))
    recipe.finish(str(shipped), str(work), str(tmp_path / "out"))
    written = json.loads((tmp_path / "out" / "training.json").read_text())
    assert [s["name"] for s in written["stages"]] == ["thinker_joint", "thinker_cont", "thinker_cont2"]
    assert written["stages"][-1]["steps"] == 9 and written["stages"][-1]["loss"] == 0.4
    assert recipe.CONTINUE_NOTE in written["notes"] and recipe.ROUND2_NOTE in written["notes"]


def test_round_three_ships_the_deeper_config_with_weights_that_answer_as_before(tiny_assets, tmp_path):
    recipe = load_recipe(RECIPE)
    shipped = _checkpoint(tiny_assets, tmp_path / "shipped", seed=7)
    work = tmp_path / "work3"
    recipe.seed_work(str(shipped), str(work))
    deep = recipe.model_assets(str(work), str(shipped), thinker_layers=recipe.ROUND3_LAYERS)
    assert recipe.deepen_thinker_part(str(work), deep)
    out = tmp_path / "out"
    recipe.finish(str(shipped), str(work), str(out))
    config = json.loads((out / "config.json").read_text())
    assert config["thinker_config"]["text_config"]["num_hidden_layers"] == recipe.ROUND3_LAYERS
    from omnistream.checkpoint import load_checkpoint

    grown = fresh_model(out, seed=0)
    load_checkpoint(grown, out, dtype=torch.float32)
    before = fresh_model(tiny_assets, seed=7)
    ids = torch.arange(3, 40).unsqueeze(0)
    with torch.no_grad():
        outputs = []
        for model in (before, grown):
            embeds, _, _ = model.thinker.embed(ids)
            hidden, _ = model.thinker.eval()(embeds, torch.arange(ids.shape[1]).unsqueeze(0))
            outputs.append(model.thinker.lm_head(hidden))
    torch.testing.assert_close(outputs[1], outputs[0], rtol=0, atol=0)


@pytest.mark.parametrize("round_", ["4", "5"])
def test_rounds_four_and_five_train_the_thinker_with_typed_twins(tiny_assets, tmp_path, monkeypatch, round_):
    monkeypatch.setenv("OMNISTREAM_CACHE", str(tmp_path / "cache"))
    recipe = load_recipe(RECIPE)
    shipped = _checkpoint(tiny_assets, tmp_path / "shipped", seed=7)
    work = tmp_path / f"work{round_}"
    before = fresh_model(tiny_assets, seed=7).thinker.state_dict()
    recipe.run(["thinker", "--work", str(work), "--assets", str(shipped), "--round", round_, "--steps", "3",
                "--minutes", "5", "--data-seed", "3"])
    state = json.loads((work / f"thinker_cont{round_}" / "last" / "state.json").read_text())["state"]
    assert state["step"] == 3 and state["metrics"]["twin"] > 0        # the consistency was part of the loss
    after = fresh_model(shipped, work, seed=0).thinker.state_dict()
    assert any(not torch.equal(after[k], before[k]) for k in before)   # from the shipped weights, and trained


@pytest.mark.parametrize("round_", ["6", "7", "8", "9", "10"])
def test_rounds_six_to_ten_write_spoken_questions_down_in_a_thinking_span(tiny_assets, tmp_path, monkeypatch,
                                                                           round_):
    import omnistream.train.thinker_stage as thinker_stage

    monkeypatch.setenv("OMNISTREAM_CACHE", str(tmp_path / "cache"))
    seen = []
    real = thinker_stage.BatchSource
    monkeypatch.setattr(thinker_stage, "BatchSource",
                        lambda *a, **k: seen.append({**k, "task_mix": a[1]}) or real(*a, **k))
    recipe = load_recipe(RECIPE)
    shipped = _checkpoint(tiny_assets, tmp_path / "shipped", seed=7)
    work = tmp_path / f"work{round_}"
    recipe.run(["thinker", "--work", str(work), "--assets", str(shipped), "--round", round_, "--steps", "2",
                "--minutes", "5", "--data-seed", "3"])
    assert seen and seen[0]["think_spoken"] and not seen[0]["twins"]
    assert ("describe_crowded" in seen[0]["task_mix"]) == (round_ == "10")      # round 10's four-shape scenes
    state = json.loads((work / f"thinker_cont{round_}" / "last" / "state.json").read_text())["state"]
    assert state["step"] == 2 and "twin" not in state["metrics"]


def test_the_vq_travels_with_the_checkpoint_and_back_into_a_continuation(tiny_assets, tmp_path):
    from omnistream.api import Omni
    from omnistream.train.codec import ResidualVQ
    from omnistream.train.parts import VQ_FILE, assemble

    recipe = load_recipe(RECIPE)
    work = tmp_path / "work"
    recipe.seed_work(str(_checkpoint(tiny_assets, tmp_path / "trained", seed=3)), str(work))  # no VQ there yet
    assert not (work / VQ_FILE).exists()
    ResidualVQ.fit(torch.randn(200, 8), 2, 4, seed=0).save(work / VQ_FILE)
    out = assemble(tiny_assets, work, tmp_path / "out")
    assert (out / VQ_FILE).read_bytes() == (work / VQ_FILE).read_bytes()
    Omni.from_pretrained(out)                         # the extra file does not disturb loading
    again = tmp_path / "again"
    recipe.seed_work(str(out), str(again))
    assert (again / VQ_FILE).read_bytes() == (work / VQ_FILE).read_bytes()


def test_adapters_refit_the_shipped_talker_to_a_continued_thinker_and_ship_the_record(tiny_assets, tmp_path,
                                                                                       monkeypatch):
    from safetensors.torch import load_file

    from omnistream.train.parts import save_part

    monkeypatch.setenv("OMNISTREAM_CACHE", str(tmp_path / "cache"))
    recipe = load_recipe(RECIPE)
    shipped = _checkpoint(tiny_assets, tmp_path / "shipped", seed=7)
    work = tmp_path / "work"
    recipe.seed_work(str(shipped), str(work))
    thinker = fresh_model(tiny_assets, seed=7).thinker
    with torch.no_grad():                             # a continued thinker: its vocabulary moved as a whole
        embed = thinker.model.embed_tokens.weight
        embed.copy_(embed @ (torch.eye(embed.shape[1]) + 0.1 * torch.randn(embed.shape[1], embed.shape[1])))
    save_part(work, "thinker", thinker)
    talker_before = load_file(str(work / "talker.safetensors"))
    recipe.run(["adapters", "--work", str(work), "--assets", str(shipped), "--prompts", "3"])
    talker_after = load_file(str(work / "talker.safetensors"))
    moved = {k for k in talker_before if not torch.equal(talker_before[k], talker_after[k])}
    assert moved and all(k.startswith(("text_projection.", "hidden_projection.")) for k in moved)
    row = json.loads((work / recipe.ADAPTERS_FILE).read_text())
    assert row["metrics"]["text_projection_residual"] < row["metrics"]["text_projection_drift"]
    out = tmp_path / "out"
    recipe.finish(str(shipped), str(work), str(out))
    history = json.loads((out / "training.json").read_text())
    assert [s["name"] for s in history["stages"]] == ["thinker_joint", "talker_adapters"]
    assert recipe.ADAPTERS_NOTE in history["notes"]
    # a talker that was trained on is refused: its inputs are no longer the checkpoint's to restore
    trained = fresh_model(tiny_assets, seed=7).talker
    with torch.no_grad():
        trained.codec_head.weight.add_(0.1)
    save_part(work, "talker", trained)
    with pytest.raises(SystemExit, match="trained on"):
        recipe.run(["adapters", "--work", str(work), "--assets", str(shipped), "--prompts", "3"])


def _work_with_recording(recording, tmp_path, monkeypatch, name):
    """(recipe, teacher checkpoint, work folder holding the teacher's recording, answers kept)."""
    import shutil

    monkeypatch.setenv("OMNISTREAM_CACHE", str(tmp_path / "cache"))
    recipe = load_recipe(RECIPE)
    teacher, recorded, kept = recording
    (teacher / "training.json").write_text(json.dumps({"stages": []}))
    work = tmp_path / name
    shutil.copytree(recorded, work / recipe.RECORDING)
    return recipe, teacher, work, kept


def test_round_four_trains_the_talker_on_the_checkpoints_recorded_answers(recording, tmp_path, monkeypatch):
    import shutil

    recipe, teacher, work, _ = _work_with_recording(recording, tmp_path, monkeypatch, "work4")
    recipe.run(["talker", "--work", str(work), "--assets", str(teacher), "--round", "4", "--steps", "2",
                "--minutes", "5"])
    state = json.loads((work / "talker_cont4" / "last" / "state.json").read_text())["state"]
    assert state["step"] == 2 and state["metrics"]["acc0"] >= 0.0
    shutil.rmtree(work / recipe.RECORDING)
    with pytest.raises(ConfigError, match="no recorded talker codes"):
        recipe.run(["talker", "--work", str(work), "--assets", str(teacher), "--round", "4", "--steps", "4",
                    "--minutes", "5"])


def test_vq_reads_the_lost_vq_back_from_the_recording_and_the_talker_can_learn_from_it(recording, tmp_path,
                                                                                       monkeypatch):
    import shutil

    from omnistream.train.codec import ResidualVQ
    from omnistream.train.parts import VQ_FILE

    recipe, teacher, work, kept = _work_with_recording(recording, tmp_path, monkeypatch, "work8")
    with pytest.raises(SystemExit, match="run `vq` first"):
        recipe.run(["talker", "--work", str(work), "--assets", str(teacher), "--round", "8", "--targets", "vq",
                    "--steps", "2"])

    recipe.run(["vq", "--work", str(work), "--assets", str(teacher), "--round", "8"])
    cfg = fresh_model(teacher).code2wav.config
    vq = ResidualVQ.load(work / VQ_FILE)
    assert kept > 0 and vq.centroids.shape[:2] == (cfg.num_quantizers, cfg.codebook_size)
    first = (work / VQ_FILE).read_bytes()
    recipe.run(["vq", "--work", str(work), "--assets", str(teacher), "--round", "8"])
    assert (work / VQ_FILE).read_bytes() == first                  # a VQ already there is kept

    shutil.rmtree(work / recipe.RECORDING)                       # the targets now come from the VQ, not the codes
    recipe.run(["talker", "--work", str(work), "--assets", str(teacher), "--round", "8", "--targets", "vq",
                "--steps", "2", "--minutes", "5"])
    state = json.loads((work / "talker_cont8" / "last" / "state.json").read_text())["state"]
    assert state["step"] == 2 and state["metrics"]["acc0"] >= 0.0


def test_record_keeps_right_answers_or_only_those_the_recogniser_hears(tiny_assets, tmp_path, monkeypatch):
    from omnistream.train.talker_codes import HeardRightAnswer, right_answer

    recipe = load_recipe(RECIPE)
    shipped = _checkpoint(tiny_assets, tmp_path / "shipped", seed=7)
    calls = []
    monkeypatch.setattr(recipe, "record_codes", lambda *a, **k: calls.append(k) or 0)
    for keep in ([], ["--keep", "heard"]):
        recipe.run(["record", "--work", str(tmp_path / "work"), "--assets", str(shipped), "--round", "10",
                    "--count", "100", *keep])
    assert calls[0]["keep"] is right_answer and isinstance(calls[1]["keep"], HeardRightAnswer)
    assert calls[0]["seed"] == calls[1]["seed"] == 101 and calls[0]["count"] == 100


def test_talker_vq_every_asks_for_vq_batches_of_the_named_tasks(recording, tmp_path, monkeypatch):
    recipe, teacher, work, _ = _work_with_recording(recording, tmp_path, monkeypatch, "work10")
    stages = []
    monkeypatch.setattr(recipe, "run_talker_stage", lambda stage, threads: stages.append(stage))
    with pytest.raises(SystemExit, match="run `vq` first"):
        recipe.run(["talker", "--work", str(work), "--assets", str(teacher), "--round", "10", "--vq-every", "2"])
    recipe.run(["vq", "--work", str(work), "--assets", str(teacher), "--round", "10"])
    recipe.run(["talker", "--work", str(work), "--assets", str(teacher), "--round", "10", "--vq-every", "2",
                "--vq-tasks", "transcribe_digits,exists"])
    recipe.run(["talker", "--work", str(work), "--assets", str(teacher), "--round", "10"])
    assert stages[0].recorded and stages[0].vq_every == 2
    assert stages[0].vq_mix == {"transcribe_digits": 1.0, "exists": 1.0}
    assert stages[1].vq_every == 0 and stages[1].vq_mix == {}


def test_round_eleven_grows_the_talker_and_reteaches_it_from_the_vq(recording, tmp_path, monkeypatch):
    recipe, teacher, work, _ = _work_with_recording(recording, tmp_path, monkeypatch, "work11")
    stages = []
    monkeypatch.setattr(recipe, "run_talker_stage", lambda stage, threads: stages.append(stage))
    for part in ("thinker", "adapters"):
        with pytest.raises(SystemExit, match="only the talker"):
            recipe.run([part, "--work", str(work), "--assets", str(teacher), "--round", "11"])
    recipe.run(["vq", "--work", str(work), "--assets", str(teacher), "--round", "11"])
    shallow = len(fresh_model(teacher).talker.model.layers)
    recipe.run(["talker", "--work", str(work), "--assets", str(teacher), "--round", "11", "--targets", "recorded"])
    stage = stages[0]
    assert stage.assets == str(work / "assets") and stage.recorded
    assert (stage.vq_every, stage.vq_residuals, stage.vq_mix) == (2, False, recipe.ROUND11_VQ_MIX)
    assert stage.train.lr == 3e-4
    recipe.run(["talker", "--work", str(work), "--assets", str(teacher), "--round", "11"])
    every_batch_vq = stages[1]                  # on the VQ alone: its mix, every codebook a target
    assert not every_batch_vq.recorded and every_batch_vq.vq_every == 0
    assert every_batch_vq.task_mix == recipe.ROUND11_VQ_MIX and every_batch_vq.train.lr == 5e-4
    grown = fresh_model(stage.assets, work)
    assert len(grown.talker.model.layers) == recipe.ROUND11_TALKER_LAYERS > shallow
    assert len(grown.thinker.model.layers) == len(fresh_model(teacher).thinker.model.layers)
