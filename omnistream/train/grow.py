"""Deepen a trained thinker language model or talker without changing what it computes.

New decoder layers go after the trained ones with their residual writes (attention `o_proj`, every expert's
`down_proj` and, in the talker, the shared expert's) at zero, so a new layer adds nothing to the residual stream
until training moves those weights: the deeper model starts as exactly the trained one (same logits, and the
same hidden state after every old layer, so the talker's `accept_hidden_layer` still reads what it learnt to
speak from). The other weights of a new layer start from the usual fresh init; its first gradient step wakes
the zero writes up.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch
from safetensors.torch import load_file

from omnistream.train.parts import ASSET_FILES, fresh_model, save_part

# A layer's writes into the residual stream: attention's o_proj, the stacked experts' `experts.down_proj` (one
# tensor, thinker and talker alike) and, in the talker, the shared expert's `shared_expert.down_proj.weight`.
ZERO_WRITES = ("self_attn.o_proj.weight", "down_proj", "down_proj.weight")


def deepen_assets(assets: str | Path, out: str | Path, thinker_layers: int = 0, talker_layers: int = 0) -> Path:
    """Copy the asset files of `assets` into `out` with the thinker's language model `thinker_layers` deep and
    the talker `talker_layers` deep (0: as in `assets`)."""
    assets, out = Path(assets), Path(out)
    config = json.loads((assets / "config.json").read_text())
    for part, layers in (("thinker", thinker_layers), ("talker", talker_layers)):
        text = config[f"{part}_config"]["text_config"]
        if layers and layers < text["num_hidden_layers"]:
            raise ValueError(f"{part}_layers={layers} is fewer than the {text['num_hidden_layers']} "
                             f"layers in {assets}/config.json; layers are only ever added")
        text["num_hidden_layers"] = layers or text["num_hidden_layers"]
    out.mkdir(parents=True, exist_ok=True)
    for name in ASSET_FILES:
        if (assets / name).is_file() and name != "config.json":
            shutil.copy2(assets / name, out / name)
    (out / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    return out


def deepen_thinker_part(work: str | Path, deep_assets: str | Path, seed: int = 0) -> bool:
    """Rewrite `<work>/thinker.safetensors` as the deeper thinker of `deep_assets`; False if it already is."""
    return _deepen_part(work, deep_assets, "thinker", seed)


def deepen_talker_part(work: str | Path, deep_assets: str | Path, seed: int = 0) -> bool:
    """Rewrite `<work>/talker.safetensors` as the deeper talker of `deep_assets`; False if it already is."""
    return _deepen_part(work, deep_assets, "talker", seed)


@torch.no_grad()
def _deepen_part(work: str | Path, deep_assets: str | Path, part: str, seed: int) -> bool:
    path = Path(work) / f"{part}.safetensors"
    trained = load_file(str(path))
    module = getattr(fresh_model(deep_assets, seed=seed), part)
    missing, unexpected = module.load_state_dict(trained, strict=False)
    if unexpected:
        raise ValueError(f"{path} does not fit {deep_assets}/config.json: unexpected weights {unexpected[:4]}")
    if not missing:
        return False
    old_layers = {int(k.split(".")[2]) for k in trained if k.startswith("model.layers.")}
    new_prefixes = tuple(f"model.layers.{i}." for i in range(len(old_layers), len(module.model.layers)))
    stray = [k for k in missing if not k.startswith(new_prefixes)]
    if stray:
        raise ValueError(f"{path} lacks weights that are not in a new layer: {stray[:4]}")
    for name, p in module.named_parameters():
        if name.startswith(new_prefixes) and name.endswith(ZERO_WRITES):
            p.zero_()
    save_part(work, part, module)
    return True
