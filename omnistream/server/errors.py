"""OpenAI-shaped errors for HTTP (`{"error": {...}}` with a 4xx/5xx status) and the realtime WebSocket.

Every failure a client can cause maps to one `APIError`: its message names the offending field, `param`
carries the field path (as OpenAI's does, e.g. `messages.0.content.1.input_audio.data`) and `code` is a
stable machine-readable reason. omnistream's own error classes map by kind (see `from_exception`).
"""
from __future__ import annotations

import logging
from typing import Any

from pydantic import ValidationError

from omnistream.errors import (
    CapacityError,
    LimitExceeded,
    MediaError,
    OmniInputError,
    OmnistreamError,
    RequestAborted,
    RequestError,
)

logger = logging.getLogger(__name__)


class APIError(Exception):
    """An error the server returns to a client, in OpenAI's shape."""

    def __init__(self, status: int, message: str, *, type: str = "invalid_request_error",
                 param: str | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.type, self.param, self.code = status, message, type, param, code

    def body(self) -> dict[str, Any]:
        return {"error": self.fields()}

    def fields(self) -> dict[str, Any]:
        return {"message": self.message, "type": self.type, "param": self.param, "code": self.code}


def bad_request(message: str, param: str | None = None, code: str | None = "invalid_value") -> APIError:
    return APIError(400, message, param=param, code=code)


def unsupported(param: str, why: str = "") -> APIError:
    """A parameter omnistream does not implement: refused, never ignored."""
    tail = f": {why}" if why else ""
    return APIError(400, f"Unsupported parameter: '{param}' is not supported by omnistream{tail}.",
                    param=param, code="unsupported_parameter")


def from_exception(error: BaseException) -> APIError:
    """Map any exception raised while serving a request to the error the client sees."""
    if isinstance(error, APIError):
        return error
    if isinstance(error, ValidationError):
        return from_validation_error(error)
    param = getattr(error, "param", None)
    if isinstance(error, LimitExceeded):
        return APIError(400, str(error), param=param, code="limit_exceeded")
    if isinstance(error, MediaError):
        return APIError(400, str(error), param=param, code="invalid_media")
    if isinstance(error, (OmniInputError, RequestError)):
        return APIError(400, str(error), param=param, code="invalid_value")
    if isinstance(error, CapacityError):
        return APIError(503, str(error), type="server_error", code="engine_overloaded")
    if isinstance(error, RequestAborted):
        return APIError(499, str(error), type="server_error", code="request_aborted")
    if isinstance(error, OmnistreamError):
        return APIError(400, str(error), param=param, code="invalid_request")
    logger.exception("internal error while serving a request", exc_info=error)
    return APIError(500, "The server had an error while processing your request.", type="server_error",
                    code="internal_error")


def from_validation_error(error: ValidationError, prefix: str = "") -> APIError:
    """The first pydantic error as an OpenAI 400, with the field path as `param`."""
    first = error.errors(include_url=False)[0]
    # Unions add the member's name to the path; our models avoid unions where a path matters.
    path = ".".join(str(p) for p in first.get("loc", ()) if not str(p).startswith("function-"))
    path = f"{prefix}.{path}".strip(".") if prefix else path
    kind = first.get("type", "")
    if kind == "extra_forbidden":
        return APIError(400, f"Unrecognized request argument supplied: {path}", param=path,
                        code="unknown_parameter")
    if kind == "missing":
        return APIError(400, f"Missing required parameter: '{path}'.", param=path, code="missing_required_parameter")
    message = first.get("msg", "invalid value")
    message = message.removeprefix("Value error, ")
    return APIError(400, f"Invalid value for '{path}': {message}", param=path or None, code="invalid_value")

