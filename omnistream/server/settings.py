"""Server knobs (not model facts, not request knobs): bind address, auth, limits, what media sources are allowed."""
from __future__ import annotations

from dataclasses import dataclass

from omnistream.errors import ConfigError


@dataclass(frozen=True)
class ServerSettings:
    host: str = "127.0.0.1"                   # loopback by default: exposing the server is a deliberate choice
    port: int = 8000
    api_key: str | None = None                # when set, /v1/* (HTTP and WebSocket) need it
    served_model_name: str | None = None      # the id /v1/models lists; defaults to the checkpoint folder name
    max_body_bytes: int = 64 * 1024 * 1024    # HTTP request bodies (base64 media included)
    max_ws_message_bytes: int = 16 * 1024 * 1024
    allow_remote_media: bool = False          # fetch http(s) media URLs named in requests
    realtime_max_buffer_s: float = 300.0      # input audio one realtime turn may hold
    realtime_max_items: int = 512             # conversation items one realtime session may hold
    realtime_early_prefill: bool = True       # start the answer (held) at the first pause of a VAD turn
    log_level: str = "info"

    def __post_init__(self) -> None:
        if not 0 < self.port < 65536:
            raise ConfigError(f"port must be in 1..65535, got {self.port}", param="port")
        for name in ("max_body_bytes", "max_ws_message_bytes", "realtime_max_items"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be positive", param=name)
        if self.api_key is not None and not self.api_key:
            raise ConfigError("api_key must not be empty", param="api_key")
