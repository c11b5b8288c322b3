"""checkpoint.py: round trips, dtypes, shards, declared layout transforms, strict errors, pickle refusal, memory."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from omnistream.checkpoint import INDEX_FILE, SINGLE_FILE, checkpoint_files, load_checkpoint, save_checkpoint
from omnistream.config import OmniConfig
from omnistream.errors import CheckpointError
from omnistream.models.omni import OmniModel
from tests.reference import tiny_config

ROOT = Path(__file__).resolve().parents[2]


def _config(vocab: int = 512) -> OmniConfig:
    d = tiny_config(enable_audio_output=False, thinker_layers=2, experts=4)
    d["thinker_config"]["text_config"]["vocab_size"] = vocab
    return OmniConfig.from_dict(d)


@pytest.fixture(scope="module")
def model() -> OmniModel:
    torch.manual_seed(0)
    m = OmniModel(_config()).eval()
    with torch.no_grad():
        for p in m.parameters():  # every tensor distinct, so a mix-up of names or halves shows
            p.copy_(torch.randn_like(p))
    return m


@pytest.fixture(scope="module")
def saved(model, tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("ckpt")
    save_checkpoint(model, folder)
    return folder


def _read_all(folder: Path) -> dict[str, torch.Tensor]:
    out = {}
    for name in sorted(set(checkpoint_files(folder).values())):
        with safe_open(folder / name, framework="pt") as f:
            out.update({k: f.get_tensor(k) for k in f.keys()})
    return out


def _assert_same(a: OmniModel, b: OmniModel, dtype=torch.float32) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for k in sa:
        assert sb[k].dtype == dtype, k
        assert torch.equal(sa[k].to(dtype), sb[k]), k


def test_save_writes_official_per_expert_layout(saved, model):
    tensors = _read_all(saved)
    assert "thinker.model.layers.0.mlp.experts.3.gate_proj.weight" in tensors
    assert not any(k.endswith(("gate_up_proj", "experts.down_proj")) for k in tensors)
    gate_up = model.thinker.model.layers[1].mlp.experts.gate_up_proj
    assert torch.equal(tensors["thinker.model.layers.1.mlp.experts.2.gate_proj.weight"], gate_up[2, :16])
    assert torch.equal(tensors["thinker.model.layers.1.mlp.experts.2.up_proj.weight"], gate_up[2, 16:])
    assert json.loads((saved / "config.json").read_text()) == model.config.raw


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
def test_round_trip_in_each_dtype(saved, model, dtype):
    loaded = OmniModel.from_pretrained(saved, dtype=dtype)
    _assert_same(model, loaded, dtype)
    assert loaded.thinker.audio_tower.sinusoids.dtype == torch.float32  # buffers are moved, never cast


def test_sharded_save_and_load(model, tmp_path):
    files = save_checkpoint(model, tmp_path, max_shard_bytes=200_000)
    assert len(files) > 3 and not (tmp_path / SINGLE_FILE).exists()
    index = json.loads((tmp_path / INDEX_FILE).read_text())
    assert set(index["weight_map"].values()) == {f.name for f in files}
    assert index["metadata"]["total_size"] == sum(t.numel() * 4 for t in model.state_dict().values())
    _assert_same(model, OmniModel.from_pretrained(tmp_path, dtype=torch.float32))


def test_transformers_v5_prefixes_and_fused_experts_load_as_identity(model, tmp_path):
    """A file in transformers' in-memory layout: language_model/audio_tower/visual prefixes, fused experts."""
    v5 = {}
    for k, t in model.state_dict().items():
        k = "thinker." + k.removeprefix("thinker.")
        k = k.replace("thinker.model.", "thinker.model.language_model.").replace(
            "thinker.audio_tower.", "thinker.model.audio_tower.").replace("thinker.visual.", "thinker.model.visual.")
        v5[k] = t.contiguous().clone()
    assert "thinker.model.language_model.layers.0.mlp.experts.gate_up_proj" in v5
    save_file(v5, tmp_path / SINGLE_FILE)
    model.config.save(tmp_path)
    _assert_same(model, OmniModel.from_pretrained(tmp_path, dtype=torch.float32))


def _resave(saved: Path, folder: Path, edit) -> Path:
    tensors = _read_all(saved)
    edit(tensors)
    save_file(tensors, folder / SINGLE_FILE)
    (folder / "config.json").write_text((saved / "config.json").read_text())
    return folder


def test_missing_tensor_is_listed(saved, tmp_path):
    folder = _resave(saved, tmp_path, lambda t: t.pop("thinker.model.layers.1.mlp.experts.2.up_proj.weight"))
    with pytest.raises(CheckpointError, match=r"missing 1 tensor\(s\): thinker.model.layers.1.mlp.experts.2.up_proj"):
        OmniModel.from_pretrained(folder, dtype=torch.float32)


def test_many_missing_tensors_are_summarised(saved, tmp_path):
    def drop_layer(t):
        for k in [k for k in t if k.startswith("thinker.model.layers.1.")]:
            del t[k]
    folder = _resave(saved, tmp_path, drop_layer)
    with pytest.raises(CheckpointError, match=r"missing \d+ tensor\(s\):.*more\)") as info:
        OmniModel.from_pretrained(folder, dtype=torch.float32)
    assert info.value.param.startswith("thinker.model.layers.1.")


def test_unexpected_tensor_is_listed(saved, tmp_path):
    folder = _resave(saved, tmp_path, lambda t: t.update({"thinker.model.layers.0.mlp.experts.9.gate_proj.weight":
                                                          torch.zeros(16, 32), "thinker.bogus": torch.zeros(2)}))
    with pytest.raises(CheckpointError, match="unexpected 2 tensor.*thinker.bogus.*experts.9.gate_proj"):
        OmniModel.from_pretrained(folder, dtype=torch.float32)


@pytest.mark.parametrize("key", ["thinker.model.norm.weight", "thinker.model.layers.0.mlp.experts.1.down_proj.weight"])
def test_wrong_shape_names_the_key(saved, tmp_path, key):
    folder = _resave(saved, tmp_path, lambda t: t.update({key: torch.zeros(3, 3)}))
    with pytest.raises(CheckpointError, match=f"{key}.*shape") as info:
        OmniModel.from_pretrained(folder, dtype=torch.float32)
    assert info.value.param == key


def test_thinker_only_config_ignores_speech_tensors(saved, model, tmp_path):
    folder = _resave(saved, tmp_path, lambda t: t.update({"talker.model.norm.weight": torch.ones(4),
                                                          "code2wav.code_embedding.weight": torch.ones(2, 2)}))
    _assert_same(model, OmniModel.from_pretrained(folder, dtype=torch.float32))


def test_bare_thinker_loads_with_key_prefix(saved, model):
    from omnistream.checkpoint import params_on_meta
    from omnistream.models.thinker import Thinker

    with params_on_meta():
        thinker = Thinker(model.config.thinker_config)
    load_checkpoint(thinker, saved, torch.float32, key_prefix="thinker.")
    assert torch.equal(thinker.lm_head.weight, model.thinker.lm_head.weight)


@pytest.mark.parametrize("name", ["pytorch_model.bin", "model.pt", "weights.pth", "state.pkl"])
def test_pickle_files_are_refused_without_unpickling(tmp_path, monkeypatch, name):
    (tmp_path / name).write_bytes(b"\x80\x04not really a pickle")
    (tmp_path / "config.json").write_text(json.dumps(_config().raw))
    monkeypatch.setattr(torch, "load", lambda *a, **k: pytest.fail("torch.load must never be called"))
    with pytest.raises(CheckpointError, match="pickle") as info:
        OmniModel.from_pretrained(tmp_path)
    assert info.value.param == name


def test_index_pointing_outside_safetensors_is_refused(tmp_path):
    (tmp_path / INDEX_FILE).write_text(json.dumps({"weight_map": {"a": "pytorch_model-00001.bin"}}))
    with pytest.raises(CheckpointError, match="not a safetensors file"):
        checkpoint_files(tmp_path)
    (tmp_path / INDEX_FILE).write_text(json.dumps({"weight_map": {"a": "../elsewhere.safetensors"}}))
    with pytest.raises(CheckpointError, match="not a safetensors file"):
        checkpoint_files(tmp_path)
    (tmp_path / INDEX_FILE).write_text(json.dumps({"weight_map": {"a": "model-00001-of-00002.safetensors"}}))
    with pytest.raises(CheckpointError, match="missing shard"):
        checkpoint_files(tmp_path)


def test_empty_folder(tmp_path):
    with pytest.raises(CheckpointError, match="neither"):
        checkpoint_files(tmp_path)
    with pytest.raises(CheckpointError, match="does not exist"):
        checkpoint_files(tmp_path / "nope")


# ------------------------------------------------------------------------------------------ memory
_MEASURE = r"""
import json, sys, torch
from omnistream.models.omni import OmniModel

def status(field):
    for line in open("/proc/self/status"):
        if line.startswith(field):
            return int(line.split()[1]) * 1024
from omnistream.config import OmniConfig
from tests.reference import tiny_config

folder, dtype = sys.argv[1], getattr(torch, sys.argv[2])
# Warm up: the first meta-device build loads torch's meta kernels (~70 MiB, once per process, any model size).
OmniModel.from_config(OmniConfig.from_dict(tiny_config(enable_audio_output=False)))
open("/proc/self/clear_refs", "w").write("5")  # reset the peak-RSS mark (VmHWM)
base = status("VmRSS")
model = OmniModel.from_pretrained(folder, dtype=dtype)
touched = sum(float(p.sum()) for p in model.parameters())  # fault every weight page in
weights = sum(p.numel() * p.element_size() for p in model.parameters())
print(json.dumps({"base": base, "peak": status("VmHWM"), "weights": weights}))
"""


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_loading_peak_memory_is_about_the_weights(tmp_path_factory, dtype):
    """Peak RSS growth while loading (and touching every weight) stays near the loaded weights' size."""
    folder = tmp_path_factory.mktemp("big")
    torch.manual_seed(0)
    big = OmniModel(_config(vocab=151_676))  # ~40 MB of fp32 weights, dominated by embeddings + lm_head
    files = save_checkpoint(big, folder, max_shard_bytes=4 * 2**20)
    largest_shard = max(f.stat().st_size for f in files)
    result = subprocess.run([sys.executable, "-c", _MEASURE, str(folder), dtype], capture_output=True, text=True,
                            cwd=ROOT, timeout=120)
    assert result.returncode == 0, result.stderr
    m = json.loads(result.stdout)
    growth = m["peak"] - m["base"]
    print(f"\n[load {dtype}] weights {m['weights'] / 2**20:.1f} MiB, peak RSS growth {growth / 2**20:.1f} MiB "
          f"({growth / m['weights']:.2f}×)")
    # Same dtype: the weights are the mapped file itself. Converting: at most one source shard stays mapped
    # while it is converted. Plus a few MiB of interpreter noise.
    bound = m["weights"] + (0 if dtype == "float32" else largest_shard) + 8 * 2**20
    assert growth < bound
