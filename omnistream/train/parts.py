"""Component weight files of a model being trained, and assembling them into a checkpoint folder.

Stages train different components (thinker, code2wav, talker) and may run side by side, so each writes
its own `<work>/<component>.safetensors` (the submodule's state dict); `assemble` builds the OmniModel from
the assets' config.json, loads whatever parts exist and writes the official checkpoint layout.
"""
from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from omnistream.checkpoint import save_checkpoint
from omnistream.config import OmniConfig
from omnistream.models.omni import OmniModel
from omnistream.train.model_init import init_weights

logger = logging.getLogger(__name__)
COMPONENTS = ("thinker", "talker", "code2wav")
ASSET_FILES = ("tokenizer.json", "tokenizer_config.json", "chat_template.json", "chat_template.jinja",
               "preprocessor_config.json", "generation_config.json", "config.json")
# The residual VQ whose codes the talker and Code2Wav learnt. Inference never reads it, but continuing the talker
# needs its targets in the same codes, and a fit made later need not reproduce them: it ships with the weights.
VQ_FILE = "rvq.safetensors"


def save_part(work: str | Path, name: str, module: nn.Module) -> Path:
    path = Path(work) / f"{name}.safetensors"
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp")  # stages side by side may save the same part
    save_file({k: v.detach().contiguous() for k, v in module.state_dict().items()}, str(tmp))
    tmp.replace(path)
    return path


def load_parts(model: OmniModel, work: str | Path, names: tuple[str, ...] = COMPONENTS) -> list[str]:
    """Load every existing `<work>/<name>.safetensors` into model.<name>; returns the names loaded."""
    loaded = []
    for name in names:
        path = Path(work) / f"{name}.safetensors"
        module = getattr(model, name, None)
        if module is not None and path.is_file():
            module.load_state_dict(load_file(str(path)), strict=True)
            loaded.append(name)
    return loaded


def fresh_model(assets: str | Path, work: str | Path | None = None, seed: int = 0) -> OmniModel:
    """OmniModel from assets/config.json with fresh weights, overlaid by the trained parts in `work`."""
    model = OmniModel(OmniConfig.from_file(assets))
    init_weights(model, seed)
    if work is not None:
        loaded = load_parts(model, work)
        logger.info("loaded trained parts %s from %s", loaded, work)
    return model


def assemble(assets: str | Path, work: str | Path, out: str | Path, dtype: torch.dtype | None = None) -> Path:
    """Write a complete checkpoint folder: the asset files plus model.safetensors from the trained parts, and
    the work folder's VQ (VQ_FILE) when it has one."""
    assets, out = Path(assets), Path(out)
    out.mkdir(parents=True, exist_ok=True)
    for name in ASSET_FILES:
        if (assets / name).is_file() and (assets.resolve() != out.resolve()):
            shutil.copy2(assets / name, out / name)
    if (Path(work) / VQ_FILE).is_file():
        shutil.copy2(Path(work) / VQ_FILE, out / VQ_FILE)
        (out / VQ_FILE).chmod(0o644)
    model = fresh_model(assets, work)
    tmp = out / ".model.tmp"
    save_checkpoint(model, tmp, dtype=dtype)
    (tmp / "model.safetensors").replace(out / "model.safetensors")
    (out / "model.safetensors").chmod(0o644)  # the temp file was private; the shipped one is data
    shutil.rmtree(tmp, ignore_errors=True)
    return out


def training_summary(work: str | Path, stages: dict[str, str]) -> dict:
    """{"stages": [{name, steps, minutes, loss, notes}]} from each stage's last training checkpoint."""
    import json

    rows = []
    for name, notes in stages.items():
        path = Path(work) / name / "last" / "state.json"
        if not path.is_file():
            continue
        state = json.loads(path.read_text())["state"]
        recent = state["losses"][-50:] or [float("nan")]
        rows.append({"name": name, "steps": state["step"], "minutes": state["seconds"] / 60,
                     "loss": sum(recent) / len(recent), "notes": notes, "metrics": state.get("metrics", {})})
    return {"stages": rows}
