"""Request checks that run before any compute: voice, audio support, context room, input shape.

Every failure raises an OmnistreamError subclass naming the offending field, so the caller learns what to
fix and the engine never starts work it cannot finish.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from omnistream.engine.request import Request, SamplingParams, TalkerStage
from omnistream.errors import LimitExceeded, OmniInputError, RequestError

if TYPE_CHECKING:
    from omnistream.engine.engine import Engine

DEFAULT_VOICE = "ethan"   # the reference's generate(speaker="Ethan") default (spec §1)


def voices(engine: Engine) -> tuple[str, ...]:
    """Voice names the checkpoint lists (lower case), empty for thinker-only checkpoints."""
    talker = engine.model.config.talker_config
    return tuple(talker.speaker_id) if (talker is not None and engine.model.has_speech) else ()


def resolve_voice(engine: Engine, voice: str | None) -> int:
    talker = engine.model.config.talker_config
    names = voices(engine)
    if voice is None:
        voice = DEFAULT_VOICE if DEFAULT_VOICE in names else sorted(names)[0]
    speaker = talker.speaker_id.get(voice.lower())
    if speaker is None:
        raise RequestError(f"unknown voice {voice!r}; this checkpoint has {sorted(names)}", param="voice")
    return speaker


def resolve_request(engine: Engine, inputs: object, params: SamplingParams, request_id: str) -> Request:
    input_ids = getattr(inputs, "input_ids", None)
    if input_ids is None or input_ids.ndim != 2 or input_ids.shape[0] != 1:
        raise OmniInputError("a request needs ModelInputs holding exactly one conversation", param="messages")
    mask = getattr(inputs, "attention_mask", None)
    if mask is not None and not bool(mask.all()):
        inputs = inputs.row(0)                                  # drop left padding
    num_prompt = int(inputs.input_ids.shape[1])
    context = engine.thinker_len
    if num_prompt >= context:
        raise LimitExceeded(f"the prompt has {num_prompt} tokens; the context holds {context} "
                            f"(prompt + answer)", param="messages")
    room = context - num_prompt
    if params.max_new_tokens is not None:
        if params.max_new_tokens > room:
            raise RequestError(f"max_new_tokens={params.max_new_tokens} exceeds the context left after the "
                               f"{num_prompt}-token prompt ({room} of {context})", param="max_new_tokens")
        max_new = params.max_new_tokens
    else:
        max_new = min(engine.defaults.max_new_tokens or engine.config.default_max_new_tokens, room)
    speaks = engine.model.has_speech if params.return_audio is None else params.return_audio
    if speaks and not engine.model.has_speech:
        raise RequestError("audio output was requested but this checkpoint has no talker (thinker-only)",
                           param="return_audio")
    if params.voice is not None and not engine.model.has_speech:
        raise RequestError("a voice was given but this checkpoint has no talker (thinker-only)", param="voice")
    speaker = resolve_voice(engine, params.voice) if engine.model.has_speech and (speaks or params.voice) else None
    if speaks:
        _check_assistant_turn(engine, inputs.input_ids[0])
    request = Request(request_id=request_id, inputs=inputs, params=params, num_prompt_tokens=num_prompt,
                      max_new_tokens=max_new, speaker_id=speaker if speaks else None)
    if speaks:
        request.talker_stage = TalkerStage.PENDING
    return request


def _check_assistant_turn(engine: Engine, ids) -> None:
    """The talker answers in the last `<|im_start|>assistant` turn (spec §1.1): the prompt must have one."""
    config = engine.model.config
    pairs = (ids[:-1] == config.im_start_token_id) & (ids[1:] == config.assistant_token_id)
    if not bool(pairs.any()):
        raise OmniInputError("speech needs a prompt that ends in an '<|im_start|>assistant' turn "
                             "(use the chat template's generation prompt)", param="messages")
