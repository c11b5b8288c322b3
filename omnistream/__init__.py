"""omnistream: run, serve and train Qwen3-Omni-style omni-modal models, streaming text and speech."""
from __future__ import annotations

from omnistream.errors import (
    CapacityError,
    CheckpointError,
    ConfigError,
    LimitExceeded,
    MediaError,
    OmniInputError,
    OmnistreamError,
    RequestAborted,
    RequestError,
)

__version__ = "0.1.0"

__all__ = [
    "CapacityError", "CheckpointError", "ConfigError", "LimitExceeded", "MediaError",
    "OmniInputError", "OmnistreamError", "RequestAborted", "RequestError", "__version__",
]
