"""Config from config.json: the Instruct fixture builds the exact released model skeleton; errors name fields."""
from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from omnistream.config import OmniConfig
from omnistream.errors import ConfigError
from omnistream.models.omni import OmniModel

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "instruct_config.json"

# spec §2.7 (transformers builds exactly these from the same config)
COMPONENT_PARAMS = {
    "thinker.audio_tower": 647_927_168,
    "thinker.visual": 538_631_408,
    "thinker.model": 30_221_219_840,
    "thinker.lm_head": 311_427_072,
    "code2wav": 216_016_577,
}
TOTAL_PARAMS = 35_259_818_545


@pytest.fixture(scope="module")
def instruct() -> dict:
    return json.loads(FIXTURE.read_text())


def _count(module) -> int:
    return sum(p.numel() for p in module.parameters())


@pytest.fixture(scope="module")
def skeleton(instruct):
    return OmniModel.from_config(OmniConfig.from_dict(instruct))


def test_instruct_skeleton_has_exact_parameter_count(skeleton):
    assert all(p.device.type == "meta" for p in skeleton.parameters())
    assert skeleton.thinker.missing_components() == [] and skeleton.has_speech
    assert _count(skeleton) == TOTAL_PARAMS


@pytest.mark.parametrize("name", sorted(COMPONENT_PARAMS))
def test_component_parameter_counts(skeleton, name):
    assert _count(skeleton.get_submodule(name)) == COMPONENT_PARAMS[name]


def test_instruct_values_read_from_file(instruct):
    cfg = OmniConfig.from_dict(instruct)
    text = cfg.thinker_config.text_config
    assert (text.num_hidden_layers, text.num_experts, text.num_experts_per_tok, text.head_dim) == (48, 128, 8, 128)
    assert text.mrope_section == (24, 20, 20) and text.mrope_interleaved and text.rope_theta == 1e6
    assert cfg.talker_config.accept_hidden_layer == 24 and cfg.talker_config.text_config.num_experts_per_tok == 6
    assert cfg.thinker_config.position_id_per_seconds == 13  # not the class default 25 (spec §7.1)


def test_rope_parameters_spelling_equals_legacy_spelling(instruct):
    v5 = copy.deepcopy(instruct)
    text = v5["thinker_config"]["text_config"]
    scaling = text.pop("rope_scaling")
    text["rope_parameters"] = {"rope_type": "default", "rope_theta": text.pop("rope_theta"),
                               "mrope_section": scaling["mrope_section"], "interleaved": True}
    assert OmniConfig.from_dict(v5).thinker_config.text_config == OmniConfig.from_dict(instruct).thinker_config.text_config


@pytest.mark.parametrize("keep_speech_sections", [False, True])
def test_thinker_only_variant_builds_without_speech(instruct, keep_speech_sections):
    d = copy.deepcopy(instruct)
    d["enable_audio_output"] = False
    if not keep_speech_sections:
        del d["talker_config"], d["code2wav_config"]
    cfg = OmniConfig.from_dict(d)
    model = OmniModel.from_config(cfg)
    assert cfg.talker_config is None and model.talker is None and model.code2wav is None
    assert _count(model) == sum(v for k, v in COMPONENT_PARAMS.items() if k.startswith("thinker"))
    assert set(model.skipped_prefixes()) == {"talker.", "code2wav."}


def _broken(instruct, path: str, value=None, delete: bool = False) -> dict:
    d = copy.deepcopy(instruct)
    *parents, leaf = path.split(".")
    node = d
    for p in parents:
        node = node[p]
    if delete:
        del node[leaf]
    else:
        node[leaf] = value
    return d


@pytest.mark.parametrize("path", ["thinker_config.text_config.num_experts", "thinker_config.audio_config.d_model",
                                  "thinker_config.vision_config.deepstack_visual_indexes",
                                  "talker_config.accept_hidden_layer", "code2wav_config.sliding_window",
                                  "thinker_config.text_config"])
def test_missing_field_names_it(instruct, path):
    with pytest.raises(ConfigError) as info:
        OmniConfig.from_dict(_broken(instruct, path, delete=True))
    assert path in str(info.value) and info.value.param == path


@pytest.mark.parametrize("path,value,named", [
    ("thinker_config.text_config.num_key_value_heads", 5, "thinker_config.text_config.num_key_value_heads"),
    ("thinker_config.text_config.num_experts_per_tok", 200, "thinker_config.text_config.num_experts_per_tok"),
    ("thinker_config.audio_config.output_dim", 1024, "thinker_config.audio_config.output_dim"),
    ("thinker_config.vision_config.out_hidden_size", 1024, "thinker_config.vision_config.out_hidden_size"),
    ("talker_config.thinker_hidden_size", 1024, "talker_config.thinker_hidden_size"),
    ("talker_config.accept_hidden_layer", 49, "talker_config.accept_hidden_layer"),
    ("code2wav_config.num_quantizers", 8, "code2wav_config.num_quantizers"),
    ("thinker_config.vision_config.num_position_embeddings", 2300,
     "thinker_config.vision_config.num_position_embeddings"),
    ("thinker_config.text_config.hidden_size", -1, "thinker_config.text_config.hidden_size"),
])
def test_inconsistent_sizes_name_the_field(instruct, path, value, named):
    with pytest.raises(ConfigError) as info:
        OmniConfig.from_dict(_broken(instruct, path, value))
    assert info.value.param.startswith(named) or named in str(info.value)


def test_mrope_section_must_cover_head_dim(instruct):
    d = copy.deepcopy(instruct)
    d["thinker_config"]["text_config"]["rope_scaling"]["mrope_section"] = [24, 20, 19]
    with pytest.raises(ConfigError, match="mrope_section"):
        OmniConfig.from_dict(d)


def test_unknown_keys_are_kept_and_round_trip(instruct):
    d = _broken(instruct, "thinker_config.text_config.some_future_knob", 3)
    cfg = OmniConfig.from_dict(d)
    assert cfg.thinker_config.text_config.extra["some_future_knob"] == 3
    assert cfg.to_dict() == d


def test_missing_file_and_bad_json(tmp_path):
    with pytest.raises(ConfigError, match="config.json"):
        OmniConfig.from_file(tmp_path)
    (tmp_path / "config.json").write_text("{nope")
    with pytest.raises(ConfigError, match="not valid JSON"):
        OmniConfig.from_file(tmp_path)
