"""The `omnistream` command line: run (media + question → streamed text + wav), chat (one-shot and REPL), bench."""
from __future__ import annotations

import io
import json
import subprocess
import sys
import wave

import numpy as np
import pytest

from omnistream.cli import COMMANDS, main
from tests.engine_fixtures import cached_checkpoint
from tests.inputs_fixtures import drawing, encode_audio, tone


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return cached_checkpoint(tmp_path_factory)


def _wav_seconds(path) -> float:
    with wave.open(str(path)) as f:
        assert f.getframerate() == 24000 and f.getnchannels() == 1 and f.getsampwidth() == 2
        return f.getnframes() / f.getframerate()


def test_run_with_image_and_audio_writes_the_spoken_answer(folder, tmp_path, capsys):
    image, audio, out = tmp_path / "x.png", tmp_path / "q.wav", tmp_path / "answer.wav"
    drawing(64, 64).save(image)
    audio.write_bytes(encode_audio(tone(1.0), 16000))
    code = main(["run", "--model", str(folder), "--image", str(image), "--audio", str(audio), "--max-new-tokens", "5",
                 "--temperature", "0", "--voice", "chelsie", "--output", str(out), "What is this?"])
    captured = capsys.readouterr()
    assert code == 0 and out.is_file() and _wav_seconds(out) > 0
    assert "5 tokens" in captured.err and "first audio" in captured.err and str(out) in captured.err


def test_run_without_audio_writes_no_file(folder, tmp_path, capsys):
    out = tmp_path / "none.wav"
    assert main(["run", "--model", str(folder), "--no-audio", "--max-new-tokens", "3", "--output", str(out),
                 "Hello"]) == 0
    assert not out.exists() and "3 tokens" in capsys.readouterr().err


def test_bad_request_is_a_clean_error(folder, capsys):
    assert main(["run", "--model", str(folder), "--voice", "nobody", "Hello"]) == 1
    assert "unknown voice" in capsys.readouterr().err
    assert main(["run", "--model", str(folder)]) == 2


def test_chat_one_shot_and_interactive(folder, tmp_path, capsys, monkeypatch):
    # seeded: the random model samples, and a rare 3-token draw prints nothing and speaks nothing (seen once in CI)
    assert main(["chat", "--model", str(folder), "--max-new-tokens", "3", "--seed", "0", "--save-audio",
                 str(tmp_path), "Hi"]) == 0
    assert (tmp_path / "turn-1.wav").is_file()
    monkeypatch.setattr(sys, "stdin", io.StringIO("hello\n/reset\nhow are you\n/exit\n"))
    assert main(["chat", "--model", str(folder), "--max-new-tokens", "2", "--no-audio"]) == 0
    captured = capsys.readouterr()
    assert captured.out.count("omni> ") == 2 and captured.err.count("2 tokens") == 2


def test_entry_point_lists_every_subcommand():
    done = subprocess.run([sys.executable, "-m", "omnistream.cli", "--help"], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0 and all(name in done.stdout for name in COMMANDS)


@pytest.mark.slow
def test_bench_tiny_prints_json(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("OMNISTREAM_CACHE", str(tmp_path))
    code = main(["bench", "--shape", "tiny", "--skip-reference", "--repeats", "1", "--threads", "1",
                 "--answer-tokens", "6", "--dtype", "float32", "--json"])
    result = json.loads(capsys.readouterr().out)
    ours = result["shapes"]["tiny"]["ours"]
    assert code == 0 and result["tiny_rtf"] == ours["speech_rtf"] > 0
    assert ours["decode_b1_tok_s"] > 0 and ours["first_audio_ms"] > 0 and 0 < result["bandwidth_efficiency"]
    assert np.isfinite(result["batch8_throughput_scaling"])


def test_eval_asks_only_the_tasks_named(folder, tmp_path, capsys):
    out = tmp_path / "eval.json"
    assert main(["eval", "--model", str(folder), "--tasks", "color,exists", "--per-task", "2", "--speech", "0",
                 "--json", str(out)]) == 0
    assert {key.split("/")[0] for key in json.loads(out.read_text())["accuracy"]} == {"color", "exists"}
    with pytest.raises(SystemExit) as exit_:
        main(["eval", "--model", str(folder), "--tasks", "colour"])
    assert exit_.value.code == 2
    assert "unknown task(s) ['colour']" in capsys.readouterr().err
