"""Chat template rendering (spec §4.5), conversation validation and placeholder expansion."""
from __future__ import annotations

import base64
import json

import numpy as np
import pytest

from omnistream.errors import OmniInputError
from omnistream.inputs.chat_template import QWEN3_OMNI_TEMPLATE, load_chat_template, render_chat, write_chat_template
from tests.inputs_fixtures import drawing, encode_audio, image_bytes, tone


def render(messages, **kwargs):
    return render_chat(QWEN3_OMNI_TEMPLATE, messages, **kwargs)


def test_media_parts_render_back_to_back_without_default_system():
    messages = [{"role": "user", "content": [{"type": "audio"}, {"type": "image"}, {"type": "video"},
                                             {"type": "text", "text": "What happens?"}]}]
    assert render(messages) == ("<|im_start|>user\n<|audio_start|><|audio_pad|><|audio_end|>"
                                "<|vision_start|><|image_pad|><|vision_end|><|vision_start|><|video_pad|><|vision_end|>"
                                "What happens?<|im_end|>\n<|im_start|>assistant\n")
    assert render(messages, add_generation_prompt=False).endswith("<|im_end|>\n")


def test_system_and_multi_turn_history():
    messages = [{"role": "system", "content": "Be brief."},
                {"role": "user", "content": "Hi"},
                {"role": "assistant", "content": "<think>\nplan\n</think>\n\nHello!"},
                {"role": "user", "content": "Again"}]
    assert render(messages) == ("<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n"
                                "<|im_start|>assistant\nHello!<|im_end|>\n<|im_start|>user\nAgain<|im_end|>\n"
                                "<|im_start|>assistant\n")


def test_reasoning_kept_after_last_string_query_only():
    messages = [{"role": "user", "content": "Q"},
                {"role": "assistant", "content": "A", "reasoning_content": "why"}]
    assert render(messages, add_generation_prompt=False).endswith(
        "<|im_start|>assistant\n<think>\nwhy\n</think>\n\nA<|im_end|>\n")
    # list-content users never count as the last query (the released template's behaviour, spec §7.2-10)
    messages[0]["content"] = [{"type": "text", "text": "Q"}]
    assert render(messages, add_generation_prompt=False).endswith("<|im_start|>assistant\nA<|im_end|>\n")


def test_tools_and_tool_calls():
    tools = [{"type": "function", "function": {"name": "now", "parameters": {}}}]
    messages = [{"role": "user", "content": "Time?"},
                {"role": "assistant", "content": "", "tool_calls": [{"function": {"name": "now",
                                                                                  "arguments": {"tz": "é"}}}]},
                {"role": "tool", "content": "12:00"}]
    text = render(messages, tools=tools)
    assert '"name": "now"' in text and '{"tz": "é"}' in text
    assert "<|im_start|>user\n<tool_response>\n12:00\n</tool_response><|im_end|>\n" in text


def test_enable_thinking_false_adds_an_empty_think_block():
    text = render([{"role": "user", "content": "Hi"}], enable_thinking=False)
    assert text.endswith("<|im_start|>assistant\n<think>\n\n</think>\n\n")


def test_template_loading_order(tmp_path):
    assert load_chat_template(tmp_path) == QWEN3_OMNI_TEMPLATE
    (tmp_path / "tokenizer_config.json").write_text(json.dumps({"chat_template": "from tokenizer config"}))
    assert load_chat_template(tmp_path) == "from tokenizer config"
    write_chat_template(tmp_path, "from chat_template.json")
    assert load_chat_template(tmp_path) == "from chat_template.json"


def test_processor_prompt_ids_start_like_the_reference(processor):
    inputs = processor([{"role": "user", "content": [{"type": "audio", "audio": (tone(1.0), 16000)}]}])
    assert inputs.input_ids[0, :5].tolist() == [151644, 872, 198, 151669, 151675]
    assert inputs.input_ids[0].tolist().count(151675) == 13            # 1 s → 100 frames → 13 tokens
    assert inputs.input_ids[0, -3:].tolist() == [151644, 77091, 198]   # generation prompt


def test_openai_style_parts(processor):
    png = "data:image/png;base64," + base64.b64encode(image_bytes(drawing(40, 40))).decode()
    wav = base64.b64encode(encode_audio(tone(0.5), 16000)).decode()
    inputs = processor([{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": png}},
        {"type": "input_audio", "input_audio": {"data": wav, "format": "wav"}},
        "plain string part"]}])
    assert inputs.image_grid_thw.tolist() == [[1, 4, 4]] and inputs.input_features.shape[0] == 1
    assert "plain string part" in inputs.prompts[0]


@pytest.mark.parametrize("conversation,match", [
    ([], "non-empty"),
    ([{"role": "robot", "content": "x"}], "role"),
    ([{"role": "user", "content": 5}], "content"),
    ([{"role": "user", "content": [{"type": "smell", "smell": "x"}]}], "unknown part type"),
    ([{"role": "user", "content": [{"type": "image"}]}], "no 'image' value"),
    ([{"role": "user", "content": "look: <|image_pad|>"}], "reserved image placeholder"),
    ([{"role": "user", "content": [{"type": "text", "text": "<|audio_pad|>"}]}], "reserved audio placeholder"),
    (["not a message"], "must be a dict"),
])
def test_bad_conversations_are_input_errors(processor, conversation, match):
    with pytest.raises(OmniInputError, match=match):
        processor(conversation if conversation else [])


def test_template_that_drops_media_is_a_count_mismatch(checkpoint, processor):
    from omnistream.inputs import Processor

    dropping = "{% for m in messages %}{{ m.role }}{% endfor %}"
    broken = Processor(processor.tokenizer, processor.token_ids, processor.settings, dropping)
    with pytest.raises(OmniInputError, match="placeholders"):
        broken([{"role": "user", "content": [{"type": "image", "image": np.zeros((32, 32, 3), np.uint8)}]}])
