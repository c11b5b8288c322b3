"""Deepen a trained thinker language model without changing what it computes.

New decoder layers go after the trained ones with their two residual writes (attention `o_proj` and every
expert's `down_proj`) at zero, so a new layer adds nothing to the residual stream until training moves those
weights: the deeper model starts as exactly the trained one (same logits, and the same hidden state after
every old layer, so the talker's `accept_hidden_layer` still reads what it learnt to speak from). The other
weights of a new layer start from the usual fresh init; its first gradient step wakes the zero writes up.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch
from safetensors.torch import load_file

from omnistream.train.parts import ASSET_FILES, fresh_model, save_part

ZERO_WRITES = ("self_attn.o_proj.weight", "mlp.experts.down_proj")


def deepen_assets(assets: str | Path, out: str | Path, thinker_layers: int) -> Path:
    """Copy the asset files of `assets` into `out` with the thinker's language model `thinker_layers` deep."""
    assets, out = Path(assets), Path(out)
    config = json.loads((assets / "config.json").read_text())
    text = config["thinker_config"]["text_config"]
    if thinker_layers < text["num_hidden_layers"]:
        raise ValueError(f"thinker_layers={thinker_layers} is fewer than the {text['num_hidden_layers']} "
                         f"layers in {assets}/config.json; layers are only ever added")
    out.mkdir(parents=True, exist_ok=True)
    for name in ASSET_FILES:
        if (assets / name).is_file() and name != "config.json":
            shutil.copy2(assets / name, out / name)
    text["num_hidden_layers"] = thinker_layers
    (out / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    return out


@torch.no_grad()
def deepen_thinker_part(work: str | Path, deep_assets: str | Path, seed: int = 0) -> bool:
    """Rewrite `<work>/thinker.safetensors` as the deeper thinker of `deep_assets`; False if it already is."""
    path = Path(work) / "thinker.safetensors"
    trained = load_file(str(path))
    model = fresh_model(deep_assets, seed=seed)
    thinker = model.thinker
    missing, unexpected = thinker.load_state_dict(trained, strict=False)
    if unexpected:
        raise ValueError(f"{path} does not fit {deep_assets}/config.json: unexpected weights {unexpected[:4]}")
    if not missing:
        return False
    old_layers = {int(k.split(".")[2]) for k in trained if k.startswith("model.layers.")}
    new_prefixes = tuple(f"model.layers.{i}." for i in range(len(old_layers), len(thinker.model.layers)))
    stray = [k for k in missing if not k.startswith(new_prefixes)]
    if stray:
        raise ValueError(f"{path} lacks weights that are not in a new layer: {stray[:4]}")
    for name, p in thinker.named_parameters():
        if name.startswith(new_prefixes) and name.endswith(ZERO_WRITES):
            p.zero_()
    save_part(work, "thinker", thinker)
    return True
