"""The bf16 decode GEMV (gemv_bf16.c): built once per machine into the cache folder, checked, then called.

`gemv_bf16(x, weight)` computes `F.linear(x, weight)` for one to four activation rows. The library is compiled with
`cc -O3 -mavx512bf16 -fopenmp` into OMNISTREAM_CACHE (default ~/.cache/omnistream)/kernels under a name that
hashes the source and flags, written to a temporary file and renamed, so concurrent processes never load a
half-written library. Before first use it is checked against an fp32 product on odd shapes; any failure
(no compiler, no CPU support, a wrong answer) logs one line and leaves `available()` False.
"""
from __future__ import annotations

import ctypes
import functools
import hashlib
import logging
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import torch

from omnistream.cache import cache_root

logger = logging.getLogger(__name__)

SOURCE = Path(__file__).with_name("gemv_bf16.c")
FLAGS = ("-O3", "-mavx512f", "-mavx512bw", "-mavx512bf16", "-fopenmp", "-fPIC", "-shared")
_CPU_FLAGS = ("avx512f", "avx512bw", "avx512_bf16")


def _cpu_flags() -> set[str]:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return set()
    for line in text.splitlines():
        if line.startswith("flags"):
            return set(line.split(":", 1)[1].split())
    return set()


def _build(compiler: str) -> Path:
    source = SOURCE.read_bytes()
    key = hashlib.sha256(source + " ".join((compiler, *FLAGS)).encode()).hexdigest()[:16]
    target = cache_root() / "kernels" / f"gemv_bf16-{key}.so"
    if target.is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as scratch:
        built = Path(scratch) / target.name
        subprocess.run([compiler, *FLAGS, str(SOURCE), "-o", str(built)], check=True, capture_output=True,
                       text=True, timeout=120)
        os.replace(built, target)
    return target


def _self_check(function) -> None:
    generator = torch.Generator().manual_seed(0)
    for batch, (rows, cols) in enumerate(((7, 45), (33, 300), (260, 2048), (9, 70)), start=1):
        weight = torch.randn(rows, cols, generator=generator).to(torch.bfloat16)
        x = torch.randn(batch, cols, generator=generator).to(torch.bfloat16)
        got = _call(function, x, weight).float()
        want = x.float() @ weight.float().t()
        error = ((got - want).abs().max() / want.abs().max()).item()
        if not error < 1e-2:                                  # bf16 output rounding is ~4e-3
            raise RuntimeError(f"self-check failed on [{batch}, {cols}] x [{rows}, {cols}]ᵀ: "
                               f"relative error {error:.3g}")


def _call(function, x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    out = torch.empty(*x.shape[:-1], weight.shape[0], dtype=torch.bfloat16)
    rows = x.numel() // x.shape[-1]
    if function(weight.data_ptr(), x.data_ptr(), out.data_ptr(), rows, weight.shape[0], weight.shape[1]) != 0:
        raise RuntimeError(f"native GEMV rejected {rows} rows")
    return out


@functools.cache
def _library():
    if os.environ.get("OMNISTREAM_NATIVE_KERNELS", "1") == "0":
        return None
    missing = [flag for flag in _CPU_FLAGS if flag not in _cpu_flags()]
    if missing:
        logger.info("native bf16 GEMV not used: the CPU lacks %s", ", ".join(missing))
        return None
    compiler = shutil.which(os.environ.get("CC", "cc")) or shutil.which("gcc")
    if compiler is None:
        logger.info("native bf16 GEMV not used: no C compiler (cc/gcc) found")
        return None
    try:
        function = ctypes.CDLL(str(_build(compiler))).omnistream_gemv_bf16
        function.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p] + [ctypes.c_int64] * 3
        function.restype = ctypes.c_int
        _self_check(function)
    except (OSError, RuntimeError, subprocess.SubprocessError) as e:
        detail = getattr(e, "stderr", None) or str(e)
        logger.warning("native bf16 GEMV not used: %s", detail.strip().splitlines()[-1] if detail else e)
        return None
    return function


@torch.compiler.assume_constant_result       # inside a compiled graph: a constant, not traced (file reads)
def available() -> bool:
    """True when the kernel is built, loaded and passed its self-check on this machine."""
    return _library() is not None


MAX_ROWS = 4          # beyond this the product is compute-bound and oneDNN's GEMM is faster (gemv_bf16.c)


def usable(x: torch.Tensor, weight: torch.Tensor) -> bool:
    """Whether `gemv_bf16(x, weight)` applies: 1..MAX_ROWS bf16 CPU rows, a contiguous bf16 weight, no
    autograd."""
    return (x.dtype == torch.bfloat16 and weight.dtype == torch.bfloat16 and x.device.type == "cpu"
            and weight.device.type == "cpu" and x.shape[-1] == weight.shape[1]
            and 0 < x.numel() <= MAX_ROWS * x.shape[-1]
            and weight.layout == torch.strided and weight.is_contiguous()
            and not (torch.is_grad_enabled() and (x.requires_grad or weight.requires_grad))
            and not torch.compiler.is_compiling() and available())


def gemv_bf16(x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """`F.linear(x, weight)` for x [..., I] holding 1..MAX_ROWS rows (see `usable`) → [..., O] bf16."""
    return _call(_library(), x.contiguous(), weight)
