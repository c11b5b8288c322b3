"""Checkpoint folders: safetensors only, memory-mapped, strict, with a short declared list of layout transforms.

A folder holds `config.json` and either `model.safetensors` or `model-*.safetensors` shards with
`model.safetensors.index.json` (spec §6). Loading builds the model with parameters on the `meta` device
(`params_on_meta`), then assigns each parameter a tensor read through `safe_open` (memory-mapped): when the
file dtype and the target dtype agree on CPU the tensor stays a copy-on-write view of the file, otherwise it is
converted one tensor at a time — there is never a second full copy of the weights. Pickle formats are never
opened (a folder with only `*.bin`/`*.pt`/`*.pth`/`*.pkl` weights is refused).

Layout transforms (all reversible; save writes the official on-disk layout):
  1. per-expert ↔ stacked experts:
       …mlp.experts.{e}.gate_proj.weight [I, H]  →  …mlp.experts.gate_up_proj[e, :I]    ([E, 2I, H])
       …mlp.experts.{e}.up_proj.weight   [I, H]  →  …mlp.experts.gate_up_proj[e, I:]
       …mlp.experts.{e}.down_proj.weight [H, I]  →  …mlp.experts.down_proj[e]           ([E, H, I])
     transformers v5's fused `experts.gate_up_proj` / `experts.down_proj` are our names: identity.
  2. transformers v5 in-memory prefixes (`PREFIX_ALIASES`), accepted on load, never written.
"""
from __future__ import annotations

import contextlib
import json
import logging
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file
from torch import nn

from omnistream.errors import CheckpointError

logger = logging.getLogger(__name__)

SINGLE_FILE = "model.safetensors"
INDEX_FILE = "model.safetensors.index.json"
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt")
MAX_LISTED = 10

# (transformers v5 in-memory prefix, omnistream / on-disk prefix)
PREFIX_ALIASES: tuple[tuple[str, str], ...] = (
    ("thinker.model.language_model.", "thinker.model."),
    ("thinker.model.audio_tower.", "thinker.audio_tower."),
    ("thinker.model.visual.", "thinker.visual."),
)
_PER_EXPERT = re.compile(r"^(?P<base>.+\.experts)\.(?P<expert>\d+)\.(?P<proj>gate_proj|up_proj|down_proj)\.weight$")
_STACKED = re.compile(r"^(?P<base>.+\.experts)\.(?P<param>gate_up_proj|down_proj)$")


@dataclass(frozen=True)
class _Source:
    file: str
    key: str
    shape: tuple[int, ...]


# ------------------------------------------------------------------------------------------- building
@contextlib.contextmanager
def params_on_meta() -> Iterator[None]:
    """Build modules with every parameter on `meta` (no memory, no init cost); buffers stay real on the CPU,
    so tables a module computes at construction (sinusoids, offsets) survive and need no special loading."""
    original = nn.Module.register_parameter

    def register(module: nn.Module, name: str, param: nn.Parameter | None) -> None:
        if param is not None and param.device.type != "meta":
            param = nn.Parameter(param.to("meta"), requires_grad=param.requires_grad)
        original(module, name, param)

    nn.Module.register_parameter = register  # type: ignore[method-assign]
    try:
        yield
    finally:
        nn.Module.register_parameter = original  # type: ignore[method-assign]


# ------------------------------------------------------------------------------------------- reading
def checkpoint_files(folder: str | Path) -> dict[str, str]:
    """Map every tensor key to the shard file that holds it (validating the folder)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise CheckpointError(f"checkpoint folder {folder} does not exist", param=str(folder))
    index, single = folder / INDEX_FILE, folder / SINGLE_FILE
    if index.exists():
        try:
            weight_map = json.loads(index.read_text())["weight_map"]
        except (json.JSONDecodeError, KeyError, TypeError) as e:
            raise CheckpointError(f"{index.name} is not a valid index ({e})", param=INDEX_FILE) from None
        for key, name in weight_map.items():
            _check_shard_name(folder, name, key)
        return dict(weight_map)
    if single.exists():
        with safe_open(single, framework="pt") as f:
            return {key: SINGLE_FILE for key in f.keys()}
    pickles = sorted(p.name for p in folder.iterdir() if p.suffix in PICKLE_SUFFIXES)
    if pickles:
        raise CheckpointError(f"{folder} holds only pickle-based weights {pickles[:MAX_LISTED]}; omnistream loads "
                              "safetensors only (pickle files can run code). Convert them to safetensors first.",
                              param=pickles[0])
    raise CheckpointError(f"{folder} has neither {SINGLE_FILE} nor {INDEX_FILE}", param=str(folder))


def _check_shard_name(folder: Path, name: str, key: str) -> None:
    if not isinstance(name, str) or Path(name).name != name or not name.endswith(".safetensors"):
        raise CheckpointError(f"index maps {key!r} to {name!r}, which is not a safetensors file in the folder",
                              param=key)
    if not (folder / name).exists():
        raise CheckpointError(f"index maps {key!r} to missing shard {name}", param=name)


def _canonical(key: str) -> str:
    for alias, ours in PREFIX_ALIASES:
        if key.startswith(alias):
            return ours + key[len(alias):]
    return key


def _listing(keys: list[str]) -> str:
    shown = ", ".join(keys[:MAX_LISTED])
    return shown + (f", … ({len(keys) - MAX_LISTED} more)" if len(keys) > MAX_LISTED else "")


class _Plan:
    """Which file tensors fill which model parameter, after the declared transforms."""

    def __init__(self, sources: dict[str, _Source], ignore_prefixes: tuple[str, ...]) -> None:
        self.direct: dict[str, _Source] = {}
        self.experts: dict[tuple[str, int, str], _Source] = {}  # (base, expert, proj) → source
        self.ignored = 0
        for disk_key, source in sources.items():
            key = _canonical(disk_key)
            if key.startswith(ignore_prefixes):
                self.ignored += 1
                continue
            match = _PER_EXPERT.match(key)
            if match:
                self.experts[(match["base"], int(match["expert"]), match["proj"])] = source
            else:
                self.direct[key] = source

    def resolve(self, params: dict[str, torch.Tensor]) -> dict[str, list[tuple[tuple, _Source]]]:
        """For each parameter, the (index into the parameter, source) pieces; strict about coverage and shapes."""
        pieces: dict[str, list[tuple[tuple, _Source]]] = {}
        missing: list[str] = []
        for name, param in params.items():
            stacked = _STACKED.match(name)
            if name in self.direct:
                source = self.direct.pop(name)
                _check_shape(source, tuple(param.shape))
                pieces[name] = [((), source)]
            elif stacked:
                pieces[name] = self._expert_pieces(stacked["base"], stacked["param"], tuple(param.shape), missing)
            else:
                missing.append(name)
        unexpected = sorted(self.direct) + sorted(s.key for s in self.experts.values())
        if missing or unexpected:
            parts = []
            if missing:
                parts.append(f"missing {len(missing)} tensor(s): {_listing(missing)}")
            if unexpected:
                parts.append(f"unexpected {len(unexpected)} tensor(s): {_listing(unexpected)}")
            raise CheckpointError("checkpoint does not match the model: " + "; ".join(parts),
                                  param=(missing or unexpected)[0])
        return pieces

    def _expert_pieces(self, base: str, param: str, shape: tuple[int, ...],
                       missing: list[str]) -> list[tuple[tuple, _Source]]:
        num_experts = shape[0]
        if param == "gate_up_proj":
            half = shape[1] // 2
            parts = (("gate_proj", slice(0, half), (half, shape[2])),
                     ("up_proj", slice(half, 2 * half), (half, shape[2])))
        else:
            parts = (("down_proj", slice(None), shape[1:]),)
        out = []
        for e in range(num_experts):
            for proj, rows, part_shape in parts:
                source = self.experts.pop((base, e, proj), None)
                if source is None:
                    missing.append(f"{base}.{e}.{proj}.weight")
                    continue
                _check_shape(source, tuple(part_shape))
                out.append(((e, rows), source))
        return out


def _check_shape(source: _Source, expected: tuple[int, ...]) -> None:
    if source.shape != expected:
        raise CheckpointError(f"tensor {source.key!r} has shape {list(source.shape)}, the model expects "
                              f"{list(expected)}", param=source.key)


# ------------------------------------------------------------------------------------------- loading
def load_checkpoint(model: nn.Module, folder: str | Path, dtype: torch.dtype = torch.bfloat16,
                    device: torch.device | str = "cpu", *, key_prefix: str = "",
                    ignore_prefixes: tuple[str, ...] = (), progress: bool = False) -> None:
    """Fill `model`'s parameters (typically on `meta`) from the folder, in `dtype` on `device`, strictly.

    `key_prefix` is prepended to the model's own parameter names to form checkpoint names (e.g. "thinker."
    to load a bare Thinker). File tensors under `ignore_prefixes` are skipped (e.g. a thinker-only model
    reading an Instruct folder). Missing/unexpected tensors and wrong shapes raise CheckpointError.
    """
    folder = Path(folder)
    device = torch.device(device)
    files = checkpoint_files(folder)
    sources = _read_shapes(folder, files)
    params = {key_prefix + n: p for n, p in model.named_parameters()}
    pieces = _Plan(sources, ignore_prefixes).resolve(params)
    # Work shard by shard, closing each before the next: a converting load (dtype or device change) then
    # keeps at most one shard's file pages mapped besides the converted weights.
    by_file: dict[str, list[tuple[str, tuple, _Source]]] = {}
    for name, parts in pieces.items():
        for index, source in parts:
            by_file.setdefault(source.file, []).append((name, index, source))
    remaining = {name: len(parts) for name, parts in pieces.items()}
    partial: dict[str, torch.Tensor] = {}  # stacked experts being filled, possibly across shards
    bar = _progress(len(pieces), folder.name) if progress else None
    for file in sorted(by_file):
        with safe_open(folder / file, framework="pt") as handle:
            for name, index, source in by_file[file]:
                param = params[name]
                target_dtype = dtype if param.is_floating_point() else param.dtype
                if index == ():
                    # Same dtype on CPU: stays a copy-on-write view of the mapped file (no copy at all).
                    tensor = handle.get_tensor(source.key).to(device=device, dtype=target_dtype)
                else:
                    if name not in partial:
                        partial[name] = torch.empty(param.shape, dtype=target_dtype, device=device)
                    partial[name][index].copy_(handle.get_tensor(source.key))
                    tensor = partial[name]
                remaining[name] -= 1
                if remaining[name] == 0:
                    _assign(model, name[len(key_prefix):], tensor)
                    partial.pop(name, None)
                    if bar is not None:
                        bar.update()
    if bar is not None:
        bar.close()
    _move_buffers(model, device)
    logger.info("loaded %d tensors from %s (%s, %s)", len(pieces), folder, dtype, device)


def _read_shapes(folder: Path, files: dict[str, str]) -> dict[str, _Source]:
    """Every tensor's shape from the shard headers (no data is read)."""
    sources = {}
    by_file: dict[str, list[str]] = {}
    for key, name in files.items():
        by_file.setdefault(name, []).append(key)
    for name, keys in by_file.items():
        with safe_open(folder / name, framework="pt") as handle:
            present = set(handle.keys())
            for key in keys:
                if key not in present:
                    raise CheckpointError(f"{name} does not contain {key!r} listed in the index", param=key)
                sources[key] = _Source(name, key, tuple(handle.get_slice(key).get_shape()))
    return sources


def _progress(total: int, name: str):
    from tqdm import tqdm
    return tqdm(total=total, desc=f"loading {name}", unit="tensor")


def _assign(model: nn.Module, name: str, tensor: torch.Tensor) -> None:
    module_name, _, attr = name.rpartition(".")
    module = model.get_submodule(module_name) if module_name else model
    old = module._parameters[attr]
    module._parameters[attr] = nn.Parameter(tensor, requires_grad=old.requires_grad if old is not None else False)


def _move_buffers(model: nn.Module, device: torch.device) -> None:
    """Buffers were built on the CPU at construction; move (never cast) them to the device."""
    for module in model.modules():
        for name, buf in module._buffers.items():
            if buf is not None and buf.device != device:
                module._buffers[name] = buf.to(device)


# ------------------------------------------------------------------------------------------- saving
def disk_tensors(model: nn.Module, key_prefix: str = "") -> Iterator[tuple[str, torch.Tensor]]:
    """The model's persistent state under official on-disk names (stacked experts split per expert)."""
    for name, tensor in model.state_dict().items():
        name = key_prefix + name
        stacked = _STACKED.match(name)
        if stacked is None:
            yield name, tensor
        elif stacked["param"] == "gate_up_proj":
            half = tensor.shape[1] // 2
            for e in range(tensor.shape[0]):
                yield f"{stacked['base']}.{e}.gate_proj.weight", tensor[e, :half]
                yield f"{stacked['base']}.{e}.up_proj.weight", tensor[e, half:]
        else:
            for e in range(tensor.shape[0]):
                yield f"{stacked['base']}.{e}.down_proj.weight", tensor[e]


def save_checkpoint(model: nn.Module, folder: str | Path, *, config: object | None = None,
                    max_shard_bytes: int | None = None, dtype: torch.dtype | None = None,
                    key_prefix: str = "") -> list[Path]:
    """Write the official on-disk layout (+ index when sharded, + config.json when a config is given).

    `config` is anything with `save(folder)` (an OmniConfig); by default `model.config` if it has one.
    Returns the safetensors files written.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    entries = list(disk_tensors(model, key_prefix))  # views; converted one shard at a time below
    itemsize = torch.empty((), dtype=dtype).element_size() if dtype is not None else None
    shards = _shard(entries, max_shard_bytes, itemsize)
    names = [SINGLE_FILE] if len(shards) == 1 else \
        [f"model-{i + 1:05d}-of-{len(shards):05d}.safetensors" for i in range(len(shards))]
    weight_map = {}
    for name, shard in zip(names, shards):
        # Clone: expert slices share storage, which safetensors refuses; one shard is held at a time.
        save_file({k: _for_disk(t, dtype) for k, t in shard}, str(folder / name),
                  metadata={"format": "pt"})
        weight_map.update({k: name for k, _ in shard})
    if len(shards) > 1:
        total = sum(_nbytes(t, itemsize) for _, t in entries)
        (folder / INDEX_FILE).write_text(json.dumps({"metadata": {"total_size": total},
                                                     "weight_map": weight_map}, indent=2) + "\n")
    config = config if config is not None else getattr(model, "config", None)
    if config is not None and hasattr(config, "save"):
        config.save(folder)
    return [folder / n for n in names]


def _for_disk(tensor: torch.Tensor, dtype: torch.dtype | None) -> torch.Tensor:
    # Clone: expert slices share storage, which safetensors refuses; only one shard is held at a time.
    if dtype is not None and tensor.is_floating_point():
        tensor = tensor.to(dtype)
    return tensor.detach().to("cpu").contiguous().clone()


def _nbytes(tensor: torch.Tensor, itemsize: int | None) -> int:
    if itemsize is None or not tensor.is_floating_point():
        itemsize = tensor.element_size()
    return tensor.numel() * itemsize


def _shard(entries: list[tuple[str, torch.Tensor]], max_bytes: int | None,
           itemsize: int | None) -> list[list[tuple[str, torch.Tensor]]]:
    shards: list[list[tuple[str, torch.Tensor]]] = [[]]
    size = 0
    for key, tensor in entries:
        nbytes = _nbytes(tensor, itemsize)
        if max_bytes is not None and shards[-1] and size + nbytes > max_bytes:
            shards.append([])
            size = 0
        shards[-1].append((key, tensor))
        size += nbytes
    return shards
