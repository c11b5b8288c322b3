"""OpenAI chat-completions wire shapes (request, response, stream chunks, models list) as pydantic models.

Requests are strict: an unknown field is a 400 naming it, and fields OpenAI defines but omnistream does not
implement are accepted by the parser only so that `ChatCompletionRequest.check_supported` can refuse them
with a clear "unsupported" message (nothing is silently dropped). Extensions other servers use are
accepted: `speaker` (vLLM-Omni's alias of `audio.voice`), `top_k`, `repetition_penalty` and
`mm_processor_kwargs.use_audio_in_video`.

Messages are validated per role and per content-part type by hand-picked models (no pydantic unions), so an
error's `param` is the exact path, e.g. `messages.1.content.0.input_audio.data`.
"""
from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_serializer

from omnistream.server.errors import APIError, bad_request, from_validation_error, unsupported

AUDIO_OUTPUT_FORMATS = ("wav", "pcm16", "flac", "mp3", "opus", "aac")
STREAM_AUDIO_FORMATS = ("pcm16", "wav")          # streamed audio is raw PCM16 (wav: one header first)


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


# ------------------------------------------------------------------------------------------- request parts

class ImageURL(Strict):
    url: str
    detail: Literal["auto", "low", "high"] | None = None


class MediaURL(Strict):
    url: str


class InputAudio(Strict):
    data: str
    format: str


class TextPart(Strict):
    type: Literal["text"]
    text: str


class ImagePart(Strict):
    type: Literal["image_url"]
    image_url: ImageURL


class InputAudioPart(Strict):
    type: Literal["input_audio"]
    input_audio: InputAudio


class VideoPart(Strict):
    type: Literal["video_url"]
    video_url: MediaURL


class AudioURLPart(Strict):
    type: Literal["audio_url"]
    audio_url: MediaURL


class RefusalPart(Strict):
    type: Literal["refusal"]
    refusal: str


USER_PARTS: dict[str, type[Strict]] = {"text": TextPart, "image_url": ImagePart, "input_audio": InputAudioPart,
                                       "video_url": VideoPart, "audio_url": AudioURLPart}
ASSISTANT_PARTS: dict[str, type[Strict]] = {"text": TextPart, "refusal": RefusalPart}
SYSTEM_PARTS: dict[str, type[Strict]] = {"text": TextPart}


class AudioRef(Strict):
    id: str


class SystemMessage(Strict):
    role: Literal["system", "developer"]
    content: str | list[dict[str, Any]]
    name: str | None = None


class UserMessage(Strict):
    role: Literal["user"]
    content: str | list[dict[str, Any]]
    name: str | None = None


class AssistantMessage(Strict):
    role: Literal["assistant"]
    content: str | list[dict[str, Any]] | None = None
    name: str | None = None
    refusal: str | None = None
    audio: AudioRef | None = None
    tool_calls: list[Any] | None = None
    function_call: Any = None


MESSAGE_MODELS: dict[str, type[Strict]] = {"system": SystemMessage, "developer": SystemMessage,
                                           "user": UserMessage, "assistant": AssistantMessage}
PARTS_BY_ROLE = {"system": SYSTEM_PARTS, "developer": SYSTEM_PARTS, "user": USER_PARTS,
                 "assistant": ASSISTANT_PARTS}


def parse_message(raw: Any, index: int) -> Strict:
    """One request message → its role's model; errors carry the path `messages.<index>...`."""
    where = f"messages.{index}"
    if not isinstance(raw, dict):
        raise bad_request(f"Invalid type for '{where}': expected an object.", where, "invalid_type")
    role = raw.get("role")
    if role in ("tool", "function"):
        raise unsupported(f"{where}.role", f"role '{role}' needs tool calling, which omnistream does not offer")
    model = MESSAGE_MODELS.get(role) if isinstance(role, str) else None
    if model is None:
        raise bad_request(f"Invalid value for '{where}.role': expected one of system, developer, user, "
                          f"assistant; got {role!r}.", f"{where}.role")
    try:
        return model.model_validate(raw)
    except ValidationError as e:
        raise from_validation_error(e, where) from None


def parse_part(raw: Any, role: str, where: str) -> Strict:
    """One content part, checked against the part types its role may carry."""
    if not isinstance(raw, dict):
        raise bad_request(f"Invalid type for '{where}': expected an object.", where, "invalid_type")
    kind = raw.get("type")
    allowed = PARTS_BY_ROLE[role]
    if kind == "file":
        raise unsupported(f"{where}.type", "file parts are not supported; send image_url, input_audio or "
                                           "video_url with a data: URL")
    if kind not in allowed:
        raise bad_request(f"Invalid value for '{where}.type': a {role} message may contain "
                          f"{', '.join(allowed)} parts; got {kind!r}.", f"{where}.type")
    try:
        return allowed[kind].model_validate(raw)
    except ValidationError as e:
        raise from_validation_error(e, where) from None


# ------------------------------------------------------------------------------------------------ request

class AudioOutputParams(Strict):
    voice: str | AudioRef
    format: str


class StreamOptions(Strict):
    include_usage: bool | None = None
    include_obfuscation: bool | None = None    # we never add obfuscation padding, so either value is honoured


class MMProcessorKwargs(Strict):
    use_audio_in_video: bool = False


class ChatCompletionRequest(Strict):
    model: str
    messages: list[Any] = Field(min_length=1)
    modalities: list[Literal["text", "audio"]] | None = None
    audio: AudioOutputParams | None = None
    stream: bool | None = False
    stream_options: StreamOptions | None = None
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, gt=0, le=1)
    max_tokens: int | None = Field(default=None, ge=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)
    seed: int | None = None
    stop: str | list[str] | None = None
    n: int | None = Field(default=None, ge=1)
    user: str | None = None                       # an end-user id for the operator's logs; not used by the model
    safety_identifier: str | None = None
    prompt_cache_key: str | None = None
    metadata: dict[str, str] | None = None
    store: bool | None = None
    service_tier: str | None = None
    # OpenAI fields omnistream does not implement: parsed only to refuse them by name.
    frequency_penalty: float | None = None
    presence_penalty: float | None = None
    logprobs: bool | None = None
    top_logprobs: int | None = None
    logit_bias: dict[str, Any] | None = None
    response_format: dict[str, Any] | None = None
    tools: list[Any] | None = None
    tool_choice: Any = None
    parallel_tool_calls: bool | None = None
    functions: list[Any] | None = None
    function_call: Any = None
    reasoning_effort: str | None = None
    prediction: Any = None
    web_search_options: Any = None
    verbosity: str | None = None
    # Extensions used by vLLM / vLLM-Omni clients (sent through the openai client's extra_body).
    speaker: str | None = None
    top_k: int | None = Field(default=None, ge=0)
    repetition_penalty: float | None = Field(default=None, gt=0)
    mm_processor_kwargs: MMProcessorKwargs | None = None

    def check_supported(self) -> None:
        """Refuse, by name, every OpenAI parameter whose value asks for something omnistream cannot do."""
        if self.n not in (None, 1):
            raise unsupported("n", "only n=1 is available")
        if self.frequency_penalty not in (None, 0):
            raise unsupported("frequency_penalty", "use repetition_penalty (vLLM extension) instead")
        if self.presence_penalty not in (None, 0):
            raise unsupported("presence_penalty", "use repetition_penalty (vLLM extension) instead")
        if self.logprobs or self.top_logprobs:
            raise unsupported("logprobs" if self.logprobs else "top_logprobs")
        if self.logit_bias:
            raise unsupported("logit_bias")
        if self.response_format not in (None, {"type": "text"}):
            raise unsupported("response_format", "only {'type': 'text'} is available")
        if self.tools or self.functions:
            raise unsupported("tools" if self.tools else "functions", "tool calling is not available")
        if self.tool_choice not in (None, "none") or self.function_call not in (None, "none"):
            raise unsupported("tool_choice" if self.tool_choice not in (None, "none") else "function_call")
        if self.store:
            raise unsupported("store", "completions are not stored")
        if self.service_tier not in (None, "auto", "default"):
            raise unsupported("service_tier")
        for name in ("reasoning_effort", "prediction", "web_search_options", "verbosity"):
            if getattr(self, name) is not None:
                raise unsupported(name)
        if self.stream_options is not None and not self.stream:
            raise bad_request("'stream_options' is only allowed when 'stream' is true.", "stream_options")
        if self.stop is not None:
            stops = [self.stop] if isinstance(self.stop, str) else self.stop
            if len(stops) > 4 or any(not s for s in stops):
                raise bad_request("Invalid value for 'stop': up to 4 non-empty strings.", "stop")

    @property
    def wants_audio(self) -> bool:
        return bool(self.modalities and "audio" in self.modalities)

    @property
    def max_new_tokens(self) -> int | None:
        return self.max_completion_tokens if self.max_completion_tokens is not None else self.max_tokens

    @property
    def stop_list(self) -> tuple[str, ...]:
        if self.stop is None:
            return ()
        return (self.stop,) if isinstance(self.stop, str) else tuple(self.stop)


def parse_request(body: Any) -> ChatCompletionRequest:
    if not isinstance(body, dict):
        raise APIError(400, "The request body must be a JSON object.", code="invalid_json")
    try:
        request = ChatCompletionRequest.model_validate(body)
    except ValidationError as e:
        raise from_validation_error(e) from None
    request.check_supported()
    return request


# ----------------------------------------------------------------------------------------------- response

class CompletionTokensDetails(BaseModel):
    reasoning_tokens: int = 0
    audio_tokens: int = 0
    text_tokens: int = 0
    accepted_prediction_tokens: int = 0
    rejected_prediction_tokens: int = 0


class Usage(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    completion_tokens_details: CompletionTokensDetails | None = None


class MessageAudio(BaseModel):
    id: str
    data: str
    expires_at: int
    transcript: str


class ResponseMessage(BaseModel):
    role: Literal["assistant"] = "assistant"
    content: str | None
    refusal: str | None = None
    annotations: list[Any] = Field(default_factory=list)
    audio: MessageAudio | None = None
    reasoning_content: str | None = None     # the <think> span (DeepSeek's and vLLM's field); only when there is one

    @model_serializer(mode="wrap")
    def _drop_absent_reasoning(self, handler: Any) -> dict[str, Any]:
        out = handler(self)
        if out.get("reasoning_content") is None:
            out.pop("reasoning_content", None)
        return out


class Choice(BaseModel):
    index: int = 0
    message: ResponseMessage
    finish_reason: Literal["stop", "length"]
    logprobs: None = None


class ChatCompletion(BaseModel):
    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str
    choices: list[Choice]
    usage: Usage
    system_fingerprint: str | None = None
    service_tier: str | None = "default"


class DeltaAudio(BaseModel):
    id: str | None = None
    data: str | None = None
    transcript: str | None = None
    expires_at: int | None = None

    @model_serializer(mode="wrap")
    def _drop_none(self, handler: Any) -> dict[str, Any]:
        return {k: v for k, v in handler(self).items() if v is not None}


class Delta(BaseModel):
    """A stream delta carries only the fields that changed (OpenAI omits the rest)."""
    role: Literal["assistant"] | None = None
    content: str | None = None
    reasoning_content: str | None = None     # thinking text, streamed before the answer and never spoken
    audio: DeltaAudio | None = None

    @model_serializer(mode="wrap")
    def _drop_none(self, handler: Any) -> dict[str, Any]:
        return {k: v for k, v in handler(self).items() if v is not None}


class ChunkChoice(BaseModel):
    index: int = 0
    delta: Delta
    finish_reason: Literal["stop", "length"] | None = None
    logprobs: None = None


class ChatCompletionChunk(BaseModel):
    id: str
    object: Literal["chat.completion.chunk"] = "chat.completion.chunk"
    created: int
    model: str
    choices: list[ChunkChoice]
    usage: Usage | None = None
    system_fingerprint: str | None = None
    service_tier: str | None = "default"


class ModelCard(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str = "omnistream"


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]
