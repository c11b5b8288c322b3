"""Pure-ASGI middleware: API-key auth (HTTP and WebSocket), request-body size limit, request counting.

Written against raw ASGI rather than Starlette's BaseHTTPMiddleware so that WebSocket handshakes are covered
too and streaming responses are not buffered.
"""
from __future__ import annotations

import hmac
import json
from typing import Any

from omnistream.server.errors import APIError
from omnistream.server.metrics import Metrics

Scope = dict[str, Any]
BEARER = "bearer "
WS_KEY_PROTOCOL = "openai-insecure-api-key."     # how browsers pass a key (they cannot set headers)


def _headers(scope: Scope) -> dict[str, str]:
    return {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}


def _protected(path: str) -> bool:
    return path.startswith("/v1/")


def presented_key(scope: Scope) -> str | None:
    headers = _headers(scope)
    auth = headers.get("authorization", "")
    if auth.lower().startswith(BEARER):
        return auth[len(BEARER):].strip()
    if "api-key" in headers:                     # Azure-style header some clients send
        return headers["api-key"].strip()
    for proto in headers.get("sec-websocket-protocol", "").split(","):
        proto = proto.strip()
        if proto.startswith(WS_KEY_PROTOCOL):
            return proto[len(WS_KEY_PROTOCOL):]
    return None


async def send_error(send: Any, error: APIError) -> None:
    body = json.dumps(error.body()).encode()
    await send({"type": "http.response.start", "status": error.status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


async def deny_websocket(scope: Scope, receive: Any, send: Any, error: APIError) -> None:
    """Refuse a WebSocket handshake with an HTTP status when the server supports it (uvicorn does)."""
    message = await receive()
    if message["type"] != "websocket.connect":
        return
    if "websocket.http.response" in scope.get("extensions", {}):
        body = json.dumps(error.body()).encode()
        await send({"type": "websocket.http.response.start", "status": error.status,
                    "headers": [(b"content-type", b"application/json")]})
        await send({"type": "websocket.http.response.body", "body": body})
    else:
        await send({"type": "websocket.close", "code": 1008, "reason": error.message[:120]})


class AuthMiddleware:
    """With an API key configured, every /v1/ request must present it (constant-time compare)."""

    def __init__(self, app: Any, api_key: str | None) -> None:
        self.app, self.api_key = app, api_key

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if self.api_key is None or scope["type"] not in ("http", "websocket") or not _protected(scope["path"]):
            return await self.app(scope, receive, send)
        key = presented_key(scope)
        if key is not None and hmac.compare_digest(key.encode(), self.api_key.encode()):
            return await self.app(scope, receive, send)
        error = APIError(401, "Incorrect API key provided." if key else
                         "You didn't provide an API key (Authorization: Bearer KEY).",
                         code="invalid_api_key")
        if scope["type"] == "http":
            return await send_error(send, error)
        return await deny_websocket(scope, receive, send, error)


class BodyTooLarge(Exception):
    pass


class BodyLimitMiddleware:
    """Refuse HTTP bodies over `max_bytes` (413) — from Content-Length up front, else while reading."""

    def __init__(self, app: Any, max_bytes: int) -> None:
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        error = APIError(413, f"Request body is larger than the server's limit of {self.max_bytes} bytes.",
                         code="request_too_large")
        length = _headers(scope).get("content-length")
        if length is not None and length.isdigit() and int(length) > self.max_bytes:
            return await send_error(send, error)
        seen = 0
        started = False

        async def limited_receive() -> Any:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    raise BodyTooLarge
            return message

        async def tracking_send(message: Any) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except BodyTooLarge:
            if not started:
                await send_error(send, error)


class CountingMiddleware:
    """Counts HTTP responses by route and status for /metrics."""

    def __init__(self, app: Any, metrics: Metrics) -> None:
        self.app, self.metrics = app, metrics

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        status = 500

        async def send_status(message: Any) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            self.metrics.count_request(_endpoint(scope["path"]), status)


def _endpoint(path: str) -> str:
    known = ("/v1/chat/completions", "/v1/models", "/v1/realtime", "/health", "/metrics")
    for prefix in known:
        if path == prefix or path.startswith(prefix + "/"):
            return prefix
    return "/" if path == "/" else ("/static" if path.startswith("/static/") else "other")
