"""Optional `torch.compile` of hot functions, with a clean fallback to eager.

Compilation is opt-in (`EngineConfig.compile`): on a CPU without a working C++ toolchain, or a model the
compiler cannot trace, the first call fails, the failure is logged once and the eager function is used from
then on — results are the same either way.
"""
from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import torch

logger = logging.getLogger(__name__)


class MaybeCompiled:
    """Calls a compiled version of `fn` when enabled and working, else `eager` (default: `fn` itself).

    `eager` exists for functions written for the compiler (e.g. a GEMV as a reduction, which inductor fuses
    into one streaming pass but eager PyTorch would materialise): the fallback then uses the plain kernel.
    """

    def __init__(self, fn: Callable[..., Any], enabled: bool, name: str,
                 eager: Callable[..., Any] | None = None) -> None:
        self.fn, self.name = (eager or fn), name
        self.compiled: Callable[..., Any] | None = None
        if enabled:
            try:
                self.compiled = torch.compile(fn, dynamic=True)
            except Exception as e:  # noqa: BLE001 - any compiler setup failure means: stay eager
                logger.warning("torch.compile unavailable for %s (%s); running eager", name, e)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if self.compiled is not None:
            try:
                return self.compiled(*args, **kwargs)
            except Exception as e:  # noqa: BLE001 - compile errors surface at the first call
                logger.warning("torch.compile failed for %s (%s: %s); falling back to eager",
                               self.name, type(e).__name__, str(e).splitlines()[0] if str(e) else "")
                self.compiled = None
        return self.fn(*args, **kwargs)

    @property
    def is_compiled(self) -> bool:
        return self.compiled is not None


def compile_forward(module: torch.nn.Module, enabled: bool, name: str) -> None:
    """Route `module(...)` calls through a compiled `forward` (with the same fallback) when enabled."""
    if enabled and not isinstance(module.forward, MaybeCompiled):
        module.forward = MaybeCompiled(module.forward, True, name)
