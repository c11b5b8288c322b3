"""Realtime session configuration: one dialect-neutral `SessionConfig`, parsed from and rendered to both dialects.

GA (`session.type: "realtime"`): nested `audio.input.{format,turn_detection,...}` / `audio.output.{format,voice}`,
`output_modalities`, `max_output_tokens`. Beta (header `OpenAI-Beta: realtime=v1`): flat `modalities`, `voice`,
`input_audio_format`, `output_audio_format`, `turn_detection`, `temperature`, `max_response_output_tokens`.
Unknown keys are errors; known features omnistream lacks (transcription, tools, noise reduction, G.711, semantic
VAD) are refused by name rather than ignored. Input PCM may be 24 kHz (OpenAI's rate) or 16 kHz (GA:
`format.rate: 16000`; either dialect: `?input_sample_rate=16000` on the URL).
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from omnistream.server.errors import APIError, from_validation_error, unsupported
from omnistream.server.vad import TurnDetection

INPUT_RATES = (16000, 24000)
OUTPUT_RATE = 24000
DEFAULT_TEMPERATURE = 0.8          # the beta API's default


@dataclass(frozen=True)
class SessionConfig:
    voice: str
    instructions: str = ""
    output_modalities: tuple[str, ...] = ("audio",)      # ("audio",) speaks with a transcript; ("text",) writes
    input_rate: int = 24000
    turn_detection: TurnDetection | None = field(default_factory=TurnDetection)
    temperature: float = DEFAULT_TEMPERATURE
    max_output_tokens: int | None = None                 # None = "inf" (the engine's default cap)
    model: str = ""

    @property
    def speaks(self) -> bool:
        return "audio" in self.output_modalities


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class _VAD(_Strict):
    type: Literal["server_vad", "semantic_vad"] | None = None
    threshold: float | None = Field(default=None, ge=0, le=1)
    prefix_padding_ms: int | None = Field(default=None, ge=0, le=5000)
    silence_duration_ms: int | None = Field(default=None, ge=32, le=10000)
    create_response: bool | None = None
    interrupt_response: bool | None = None
    idle_timeout_ms: int | None = None
    eagerness: str | None = None


class _GAFormat(_Strict):
    type: str | None = None
    rate: int | None = None


class _GAInput(_Strict):
    format: _GAFormat | None = None
    turn_detection: _VAD | None = None
    transcription: Any = None
    noise_reduction: Any = None


class _GAOutput(_Strict):
    format: _GAFormat | None = None
    voice: str | dict[str, Any] | None = None
    speed: float | None = None


class _GAAudio(_Strict):
    input: _GAInput | None = None
    output: _GAOutput | None = None


class _Common(_Strict):
    model: str | None = None
    instructions: str | None = None
    tools: list[Any] | None = None
    tool_choice: Any = None
    tracing: Any = None
    temperature: float | None = Field(default=None, ge=0, le=2)   # beta field; an omnistream extension in GA
    # read-only fields clients may echo back from session.created
    id: str | None = None
    object: str | None = None
    expires_at: int | None = None


class GASession(_Common):
    type: Literal["realtime", "transcription"]
    output_modalities: list[Literal["text", "audio"]] | None = None
    audio: _GAAudio | None = None
    max_output_tokens: int | Literal["inf"] | None = None
    truncation: Any = None
    include: list[str] | None = None
    prompt: Any = None
    reasoning: Any = None


class BetaSession(_Common):
    modalities: list[Literal["text", "audio"]] | None = None
    voice: str | None = None
    input_audio_format: str | None = None
    output_audio_format: str | None = None
    input_audio_transcription: Any = None
    input_audio_noise_reduction: Any = None
    turn_detection: _VAD | None = None
    max_response_output_tokens: int | Literal["inf"] | None = None
    speed: float | None = None
    client_secret: Any = None
    include: list[str] | None = None


def looks_beta(session: dict[str, Any]) -> bool:
    """A flat (beta) session object: no `type`, and at least one beta-only key."""
    beta_keys = {"modalities", "voice", "input_audio_format", "output_audio_format", "turn_detection",
                 "input_audio_transcription", "max_response_output_tokens"}
    return "type" not in session and bool(beta_keys & session.keys())


def apply_update(config: SessionConfig, session: Any, dialect: str, voices: tuple[str, ...]) -> SessionConfig:
    """Validate a session.update body in `dialect` and return the new config (raises APIError)."""
    if not isinstance(session, dict):
        raise APIError(400, "session must be an object", param="session", code="invalid_value")
    try:
        parsed = GASession.model_validate(session) if dialect == "ga" else BetaSession.model_validate(session)
    except ValidationError as e:
        if dialect == "ga" and looks_beta(session):
            raise APIError(400, "This connection speaks the GA realtime dialect: 'session.type' is required and "
                                "the session is nested (audio.input / audio.output). Connect with the header "
                                "'OpenAI-Beta: realtime=v1' to use the beta dialect.",
                           param="session.type", code="missing_required_parameter") from None
        raise from_validation_error(e, "session") from None
    _refuse_common(parsed)
    if isinstance(parsed, GASession):
        return _apply_ga(config, parsed, voices)
    return _apply_beta(config, parsed, voices)


def _refuse_common(s: _Common) -> None:
    if s.tools:
        raise unsupported("session.tools", "tool calling is not available")
    if s.tool_choice not in (None, "auto", "none"):
        raise unsupported("session.tool_choice")
    if s.tracing is not None:
        raise unsupported("session.tracing")


def _voice(value: Any, voices: tuple[str, ...], param: str) -> str:
    name = value.get("id") if isinstance(value, dict) else value
    if not isinstance(name, str) or name.lower() not in voices:
        raise APIError(400, f"Invalid value for '{param}': unknown voice {name!r}; this model has "
                            f"{', '.join(voices)}.", param=param, code="unknown_voice")
    return name.lower()


def _tokens(value: int | str | None, param: str) -> int | None:
    if value is None or value == "inf":
        return None
    if not 1 <= value <= 4096:
        raise APIError(400, f"Invalid value for '{param}': an integer in 1..4096 or 'inf'.", param=param,
                       code="invalid_value")
    return value


def _turn(current: TurnDetection | None, vad: _VAD, param: str) -> TurnDetection:
    if vad.type == "semantic_vad" or vad.eagerness is not None:
        raise unsupported(param, "only server_vad turn detection is available")
    if vad.idle_timeout_ms is not None:
        raise unsupported(f"{param}.idle_timeout_ms")
    base = current or TurnDetection()
    changes = {k: v for k, v in vad.model_dump(exclude={"type", "idle_timeout_ms", "eagerness"}).items()
               if v is not None}
    return replace(base, **changes)


def _apply_ga(config: SessionConfig, s: GASession, voices: tuple[str, ...]) -> SessionConfig:
    if s.type == "transcription":
        raise unsupported("session.type", "transcription sessions are not available")
    for name in ("include", "prompt", "reasoning"):
        if getattr(s, name):
            raise unsupported(f"session.{name}")
    if s.truncation not in (None, "auto", "disabled"):
        raise unsupported("session.truncation")
    changes: dict[str, Any] = {}
    if s.instructions is not None:
        changes["instructions"] = s.instructions
    if s.output_modalities is not None:
        if sorted(set(s.output_modalities)) not in (["audio"], ["text"]):
            raise APIError(400, "session.output_modalities must be [\"audio\"] or [\"text\"].",
                           param="session.output_modalities", code="invalid_value")
        changes["output_modalities"] = tuple(s.output_modalities)
    if "max_output_tokens" in s.model_fields_set:
        changes["max_output_tokens"] = _tokens(s.max_output_tokens, "session.max_output_tokens")
    if s.temperature is not None:
        changes["temperature"] = s.temperature
    audio = s.audio
    if audio is not None and audio.input is not None:
        changes.update(_ga_input(config, audio.input))
    if audio is not None and audio.output is not None:
        out = audio.output
        _pcm_format(out.format, "session.audio.output.format", (OUTPUT_RATE,))
        if out.speed not in (None, 1, 1.0):
            raise unsupported("session.audio.output.speed", "only speed 1.0 is available")
        if out.voice is not None:
            changes["voice"] = _voice(out.voice, voices, "session.audio.output.voice")
    return replace(config, **changes)


def _ga_input(config: SessionConfig, given: _GAInput) -> dict[str, Any]:
    changes: dict[str, Any] = {}
    if given.transcription is not None:
        raise unsupported("session.audio.input.transcription", "input transcription is not available")
    if given.noise_reduction is not None:
        raise unsupported("session.audio.input.noise_reduction")
    rate = _pcm_format(given.format, "session.audio.input.format", INPUT_RATES)
    if rate is not None:
        changes["input_rate"] = rate
    if "turn_detection" in given.model_fields_set:
        changes["turn_detection"] = None if given.turn_detection is None else \
            _turn(config.turn_detection, given.turn_detection, "session.audio.input.turn_detection")
    return changes


def _pcm_format(fmt: _GAFormat | None, param: str, rates: tuple[int, ...]) -> int | None:
    if fmt is None:
        return None
    if fmt.type not in (None, "audio/pcm"):
        raise unsupported(f"{param}.type", "only audio/pcm (16-bit little-endian) is available")
    if fmt.rate is not None and fmt.rate not in rates:
        raise APIError(400, f"Invalid value for '{param}.rate': {fmt.rate}; supported: "
                            f"{', '.join(map(str, rates))}.", param=f"{param}.rate", code="invalid_value")
    return fmt.rate


def _apply_beta(config: SessionConfig, s: BetaSession, voices: tuple[str, ...]) -> SessionConfig:
    if s.input_audio_transcription is not None:
        raise unsupported("session.input_audio_transcription", "input transcription is not available")
    if s.input_audio_noise_reduction is not None:
        raise unsupported("session.input_audio_noise_reduction")
    for name in ("input_audio_format", "output_audio_format"):
        if getattr(s, name) not in (None, "pcm16"):
            raise unsupported(f"session.{name}", "only pcm16 is available")
    if s.speed not in (None, 1, 1.0):
        raise unsupported("session.speed", "only speed 1.0 is available")
    if s.include:
        raise unsupported("session.include")
    changes: dict[str, Any] = {}
    if s.instructions is not None:
        changes["instructions"] = s.instructions
    if s.modalities is not None:
        if "text" not in s.modalities:
            raise APIError(400, "session.modalities must be [\"text\"] or [\"text\", \"audio\"].",
                           param="session.modalities", code="invalid_value")
        changes["output_modalities"] = ("audio",) if "audio" in s.modalities else ("text",)
    if s.voice is not None:
        changes["voice"] = _voice(s.voice, voices, "session.voice")
    if s.temperature is not None:
        changes["temperature"] = s.temperature
    if "max_response_output_tokens" in s.model_fields_set:
        changes["max_output_tokens"] = _tokens(s.max_response_output_tokens, "session.max_response_output_tokens")
    if "turn_detection" in s.model_fields_set:
        changes["turn_detection"] = None if s.turn_detection is None else \
            _turn(config.turn_detection, s.turn_detection, "session.turn_detection")
    return replace(config, **changes)


def _vad_dict(td: TurnDetection | None, ga: bool) -> dict[str, Any] | None:
    if td is None:
        return None
    out = {"type": "server_vad", "threshold": td.threshold, "prefix_padding_ms": td.prefix_padding_ms,
           "silence_duration_ms": td.silence_duration_ms, "create_response": td.create_response,
           "interrupt_response": td.interrupt_response}
    if ga:
        out["idle_timeout_ms"] = None
    return out


def render_session(config: SessionConfig, dialect: str, session_id: str, expires_at: int) -> dict[str, Any]:
    """The full effective session in the dialect's shape (session.created / session.updated)."""
    tokens: int | str = config.max_output_tokens if config.max_output_tokens is not None else "inf"
    common = {"id": session_id, "object": "realtime.session", "expires_at": expires_at,
              "instructions": config.instructions, "tools": [], "tool_choice": "auto", "tracing": None}
    if dialect == "ga":
        return {**common, "type": "realtime", "model": config.model,
                "output_modalities": list(config.output_modalities), "max_output_tokens": tokens,
                "truncation": "auto", "prompt": None, "include": None,
                "audio": {"input": {"format": {"type": "audio/pcm", "rate": config.input_rate},
                                    "transcription": None, "noise_reduction": None,
                                    "turn_detection": _vad_dict(config.turn_detection, ga=True)},
                          "output": {"format": {"type": "audio/pcm", "rate": OUTPUT_RATE},
                                     "voice": config.voice, "speed": 1.0}}}
    # The beta schema types `model` as a list of OpenAI model names, so it is left out there (the URL names it).
    return {**common, "modalities": ["text", "audio"] if config.speaks else ["text"], "voice": config.voice,
            "input_audio_format": "pcm16", "output_audio_format": "pcm16", "input_audio_transcription": None,
            "input_audio_noise_reduction": None, "turn_detection": _vad_dict(config.turn_detection, ga=False),
            "temperature": config.temperature, "max_response_output_tokens": tokens, "speed": 1.0}


# ------------------------------------------------------------------------------------ response.create

class _GAResponseAudio(_Strict):
    output: _GAOutput | None = None


class ResponseOptions(_Strict):
    """`response.create`'s `response` object; both dialects' field names (checked per dialect below)."""
    instructions: str | None = None
    output_modalities: list[Literal["text", "audio"]] | None = None        # GA
    modalities: list[Literal["text", "audio"]] | None = None               # beta
    audio: _GAResponseAudio | None = None                                  # GA
    voice: str | None = None                                               # beta
    output_audio_format: str | None = None                                 # beta
    temperature: float | None = Field(default=None, ge=0, le=2)
    max_output_tokens: int | Literal["inf"] | None = None                  # GA
    max_response_output_tokens: int | Literal["inf"] | None = None         # beta
    conversation: str | None = None
    input: list[Any] | None = None
    metadata: dict[str, str] | None = None
    tools: list[Any] | None = None
    tool_choice: Any = None
    prompt: Any = None


_GA_ONLY = ("output_modalities", "audio", "max_output_tokens")
_BETA_ONLY = ("modalities", "voice", "output_audio_format", "max_response_output_tokens")


def response_config(config: SessionConfig, raw: Any, dialect: str, voices: tuple[str, ...],
                    ) -> tuple[SessionConfig, ResponseOptions]:
    """Per-response overrides of the session config (raises APIError naming the field)."""
    if raw is None:
        return config, ResponseOptions()
    try:
        options = ResponseOptions.model_validate(raw)
    except ValidationError as e:
        raise from_validation_error(e, "response") from None
    foreign = _BETA_ONLY if dialect == "ga" else _GA_ONLY
    for name in foreign:
        if name in options.model_fields_set:
            raise APIError(400, f"Unrecognized field 'response.{name}' in the {dialect} dialect.",
                           param=f"response.{name}", code="unknown_parameter")
    if options.tools or options.tool_choice not in (None, "auto", "none") or options.prompt is not None:
        raise unsupported("response.tools", "tool calling is not available")
    if options.conversation not in (None, "auto", "none"):
        raise unsupported("response.conversation", "only 'auto' and 'none' are available")
    if options.output_audio_format not in (None, "pcm16"):
        raise unsupported("response.output_audio_format", "only pcm16 is available")
    changes: dict[str, Any] = {}
    if options.instructions is not None:
        changes["instructions"] = options.instructions
    modalities = options.output_modalities or options.modalities
    if modalities is not None:
        changes["output_modalities"] = ("audio",) if "audio" in modalities else ("text",)
    voice = options.voice
    if options.audio is not None and options.audio.output is not None:
        _pcm_format(options.audio.output.format, "response.audio.output.format", (OUTPUT_RATE,))
        voice = options.audio.output.voice
    if voice is not None:
        changes["voice"] = _voice(voice, voices, "response.voice" if dialect == "beta" else
                                  "response.audio.output.voice")
    if options.temperature is not None:
        changes["temperature"] = options.temperature
    for name in ("max_output_tokens", "max_response_output_tokens"):
        if name in options.model_fields_set:
            changes["max_output_tokens"] = _tokens(getattr(options, name), f"response.{name}")
    return replace(config, **changes), options
