"""Typed errors raised at omnistream's boundaries.

User input, config and checkpoint problems are never bare asserts: each raises a subclass of
`OmnistreamError` whose message names the offending field, part or key path.
"""
from __future__ import annotations


class OmnistreamError(Exception):
    """Base class of every error omnistream raises on purpose."""

    def __init__(self, message: str, *, param: str | None = None) -> None:
        super().__init__(message)
        self.param = param  # the field, key path or request part that was wrong, when one applies


class ConfigError(OmnistreamError, ValueError):
    """A config.json that is missing a field or whose sizes do not fit together."""


class CheckpointError(OmnistreamError):
    """A checkpoint folder that cannot be loaded: missing/unexpected tensors, bad shapes, pickle files."""


class OmniInputError(OmnistreamError, ValueError):
    """A request part (media, text, conversation structure) that cannot be turned into model inputs."""


class MediaError(OmniInputError):
    """Media bytes that cannot be decoded: unreadable, truncated, unknown format, no frames or samples."""


class LimitExceeded(OmniInputError):
    """An input beyond a configured limit (duration, pixels, frames, tokens, body size)."""


class RequestError(OmnistreamError, ValueError):
    """A generation request with invalid parameters (sampling values, unknown voice, too many tokens)."""


class CapacityError(OmnistreamError):
    """The engine has no room (KV cache, queue) for a request and it was rejected."""


class RequestAborted(OmnistreamError):
    """A request was cancelled before it finished."""
