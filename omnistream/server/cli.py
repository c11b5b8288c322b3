"""`omnistream serve`: load a model, build the app, run uvicorn.

Wire into the main CLI with either
    add_serve_command(subparsers)          # adds the "serve" sub-command (its handler is `run_serve(args)`)
or call `serve_main(argv)` directly (python -m omnistream.server.cli --model PATH).
"""
from __future__ import annotations

import argparse
import logging
import os
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", default=None, help="checkpoint folder (default: the built-in model)")
    parser.add_argument("--host", default="127.0.0.1", help="bind address (default 127.0.0.1: this machine only)")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--api-key", default=os.environ.get("OMNISTREAM_API_KEY"),
                        help="require 'Authorization: Bearer KEY' on /v1/* (also $OMNISTREAM_API_KEY)")
    parser.add_argument("--served-model-name", default=None, help="model id for /v1/models (default: folder name)")
    parser.add_argument("--dtype", default=None, help="float32 | bfloat16 | float16 (default: the checkpoint's)")
    parser.add_argument("--device", default="auto", help="cpu | cuda | auto")
    parser.add_argument("--max-num-seqs", type=int, default=16, help="requests generated at once (cache slots)")
    parser.add_argument("--max-model-len", type=int, default=None, help="tokens per request (prompt + answer)")
    parser.add_argument("--max-body-mb", type=float, default=64.0, help="largest HTTP request body")
    parser.add_argument("--allow-remote-media", action="store_true",
                        help="let requests name http(s) media URLs for the server to fetch (off by default)")
    parser.add_argument("--no-early-prefill", action="store_true",
                        help="realtime: wait for the VAD's full silence before starting an answer")
    parser.add_argument("--log-level", default="info")


def add_serve_command(subparsers: Any) -> argparse.ArgumentParser:
    parser = subparsers.add_parser("serve", help="OpenAI-compatible server: chat completions with speech, "
                                                 "realtime WebSocket, a web page at /")
    add_arguments(parser)
    parser.set_defaults(func=run_serve)
    return parser


def serve_main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="omnistream serve")
    add_arguments(parser)
    return run_serve(parser.parse_args(argv))


def run_serve(args: argparse.Namespace) -> int:
    import uvicorn

    from omnistream.api import Omni
    from omnistream.server.app import create_app
    from omnistream.server.engine_client import EngineClient
    from omnistream.server.settings import ServerSettings

    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("omnistream").setLevel(args.log_level.upper())
    settings = ServerSettings(host=args.host, port=args.port, api_key=args.api_key,
                              served_model_name=args.served_model_name,
                              max_body_bytes=int(args.max_body_mb * 1024 * 1024),
                              allow_remote_media=args.allow_remote_media, log_level=args.log_level,
                              realtime_early_prefill=not args.no_early_prefill)
    logger.info("loading %s", args.model or "the built-in model")
    options: dict[str, Any] = {"max_num_seqs": args.max_num_seqs}
    if args.max_model_len is not None:
        options["max_model_len"] = args.max_model_len
    omni = Omni.from_pretrained(args.model, dtype=args.dtype, device=args.device, **options)
    client = EngineClient.from_omni(omni, model_names(args.model, settings.served_model_name),
                                    allow_remote_media=settings.allow_remote_media)
    app = create_app(client, settings)
    if settings.host not in ("127.0.0.1", "localhost", "::1") and settings.api_key is None:
        logger.warning("serving on %s without --api-key: anyone who can reach it can use it", settings.host)
    logger.info("serving %s on http://%s:%d (page at /, realtime at ws://…/v1/realtime)",
                client.info.name, settings.host, settings.port)
    try:
        uvicorn.run(app, host=settings.host, port=settings.port, log_level=settings.log_level,
                    ws_max_size=settings.max_ws_message_bytes)
    finally:
        omni.close()
    return 0


def model_names(model: str | None, served_name: str | None) -> tuple[str, ...]:
    """The id clients use, then accepted aliases (the folder name, "omnistream")."""
    names = [served_name] if served_name else []
    names.append(Path(model).name if model else "omnistream-builtin")
    names.append("omnistream")
    return tuple(dict.fromkeys(n for n in names if n))


if __name__ == "__main__":
    raise SystemExit(serve_main())
