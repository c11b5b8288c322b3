"""The FastAPI application: thin routes over one shared EngineClient.

    app = create_app(client, settings)      # client = EngineClient(omni, info, metrics)
    uvicorn.run(app, host=settings.host, port=settings.port)

Routes: `/` (the web page), `/static/*`, `/health`, `/metrics`, `GET /v1/models[/{id}]`,
`POST /v1/chat/completions`, `WS /v1/realtime`. Every error a client can cause is OpenAI-shaped JSON.
"""
from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request, WebSocket
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, PlainTextResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException

from omnistream.server.engine_client import EngineClient
from omnistream.server.errors import APIError, from_exception
from omnistream.server.messages import AudioMemory
from omnistream.server.middleware import AuthMiddleware, BodyLimitMiddleware, CountingMiddleware
from omnistream.server.openai_chat import create_chat_completion
from omnistream.server.protocol import ModelCard, ModelList
from omnistream.server.realtime import RealtimeConnection
from omnistream.server.settings import ServerSettings

logger = logging.getLogger(__name__)
STATIC = Path(__file__).parent / "static"
JSON_TYPES = ("application/json",)


def create_app(client: EngineClient, settings: ServerSettings) -> FastAPI:
    app = FastAPI(title="omnistream", docs_url=None, redoc_url=None, openapi_url=None, lifespan=_lifespan)
    app.state.client, app.state.settings = client, settings
    app.state.audio_memory = AudioMemory()
    _add_error_handlers(app)
    _add_routes(app, client, settings)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    # Outermost first: count everything, then check the key, then the body size.
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes)
    app.add_middleware(AuthMiddleware, api_key=settings.api_key)
    app.add_middleware(CountingMiddleware, metrics=client.metrics)
    return app


@asynccontextmanager
async def _lifespan(_: FastAPI) -> AsyncIterator[None]:
    """Worker threads for media decoding and engine submission: asyncio's default pool is only cpu + 4 wide,
    which would queue concurrent requests behind one another's decoding."""
    executor = ThreadPoolExecutor(max_workers=64, thread_name_prefix="omnistream-worker")
    asyncio.get_running_loop().set_default_executor(executor)
    try:
        yield
    finally:
        executor.shutdown(wait=False, cancel_futures=True)


def _add_routes(app: FastAPI, client: EngineClient, settings: ServerSettings) -> None:
    @app.get("/", include_in_schema=False)
    async def index() -> FileResponse:
        return FileResponse(STATIC / "index.html", media_type="text/html")

    @app.get("/favicon.ico", include_in_schema=False)
    async def favicon() -> Response:
        return Response(status_code=204)

    @app.get("/health")
    async def health() -> JSONResponse:
        healthy = bool(getattr(client.engine, "is_healthy", True))
        return JSONResponse({"status": "ok" if healthy else "unhealthy", "model": client.info.name},
                            status_code=200 if healthy else 503)

    @app.get("/metrics")
    async def metrics() -> PlainTextResponse:
        return PlainTextResponse(client.metrics.render(), media_type="text/plain; version=0.0.4")

    @app.get("/v1/models")
    async def list_models() -> JSONResponse:
        return JSONResponse(ModelList(data=[_card(client)]).model_dump(mode="json"))

    @app.get("/v1/models/{model_id:path}")
    async def get_model(model_id: str) -> JSONResponse:
        if model_id not in client.info.names:
            raise APIError(404, f"The model '{model_id}' does not exist.", param="model", code="model_not_found")
        return JSONResponse(_card(client).model_dump(mode="json"))

    @app.get("/v1/voices")
    async def list_voices() -> JSONResponse:
        """omnistream extension: the voices `audio.voice` accepts (the page's voice picker reads it)."""
        return JSONResponse({"object": "list", "default": client.info.default_voice,
                             "data": list(client.info.voices)})

    @app.post("/v1/chat/completions")
    async def chat_completions(request: Request) -> Response:
        body = await read_json(request)
        return await create_chat_completion(request, body, client, app.state.audio_memory,
                                            settings.allow_remote_media)

    @app.websocket("/v1/realtime")
    async def realtime(websocket: WebSocket) -> None:
        await RealtimeConnection(websocket, client, settings).run()


def _card(client: EngineClient) -> ModelCard:
    return ModelCard(id=client.info.name, created=client.info.created)


async def read_json(request: Request) -> Any:
    """The body as JSON: 415 for another content type, 400 for malformed JSON."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type not in JSON_TYPES:
        raise APIError(415, f"Content-Type must be application/json, got {content_type or 'none'!r}.",
                       code="unsupported_media_type")
    raw = await request.body()
    try:
        return json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise APIError(400, f"We could not parse the JSON body of your request ({e}).", code="invalid_json") \
            from None


def _add_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(APIError)
    async def api_error(_: Request, error: APIError) -> JSONResponse:
        return JSONResponse(error.body(), status_code=error.status)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, error: StarletteHTTPException) -> JSONResponse:
        message = {404: "Not found.", 405: "Method not allowed."}.get(error.status_code, str(error.detail))
        body = APIError(error.status_code, message, code="not_found" if error.status_code == 404 else None)
        return JSONResponse(body.body(), status_code=error.status_code, headers=getattr(error, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def validation_error(_: Request, error: RequestValidationError) -> JSONResponse:
        body = APIError(400, f"Invalid request: {error.errors()[0].get('msg', 'invalid value')}")
        return JSONResponse(body.body(), status_code=400)

    @app.exception_handler(Exception)
    async def internal_error(_: Request, error: Exception) -> JSONResponse:
        mapped = from_exception(error)
        return JSONResponse(mapped.body(), status_code=mapped.status)
