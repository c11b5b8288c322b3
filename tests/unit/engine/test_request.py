"""SamplingParams validation: every bad value raises RequestError naming the field."""
from __future__ import annotations

import pytest

from omnistream.engine.request import SamplingParams, TalkerSamplingParams
from omnistream.errors import RequestError


@pytest.mark.parametrize("kwargs,param", [
    (dict(temperature=-0.1), "temperature"),
    (dict(temperature=float("nan")), "temperature"),
    (dict(top_p=0.0), "top_p"),
    (dict(top_p=1.5), "top_p"),
    (dict(top_k=-1), "top_k"),
    (dict(top_k=2.5), "top_k"),
    (dict(repetition_penalty=0.0), "repetition_penalty"),
    (dict(max_new_tokens=0), "max_new_tokens"),
    (dict(min_new_tokens=-2), "min_new_tokens"),
    (dict(stop=[""]), "stop"),
    (dict(stop_token_ids=[-1]), "stop_token_ids"),
    (dict(seed="x"), "seed"),
    (dict(voice=""), "voice"),
])
def test_bad_values_name_the_field(kwargs, param):
    with pytest.raises(RequestError) as info:
        SamplingParams(**kwargs)
    assert info.value.param == param


@pytest.mark.parametrize("kwargs,param", [
    (dict(temperature=-1), "talker_temperature"),
    (dict(top_k=-5), "talker_top_k"),
    (dict(max_new_tokens=0), "talker_max_new_tokens"),
    (dict(predictor_top_p=0), "predictor_top_p"),
])
def test_bad_talker_values_name_the_field(kwargs, param):
    with pytest.raises(RequestError) as info:
        TalkerSamplingParams(**kwargs)
    assert info.value.param == param


def test_reference_talker_defaults_and_predictor_mirror():
    talker = TalkerSamplingParams()
    assert (talker.temperature, talker.top_k, talker.top_p, talker.repetition_penalty, talker.max_new_tokens) == \
        (0.9, 50, 1.0, 1.05, 4096)
    assert (talker.predictor_top_k, talker.predictor_top_p, talker.effective_predictor_temperature) == (50, 0.8, 1.0)
    assert TalkerSamplingParams(temperature=0).effective_predictor_temperature == 0.0


def test_stop_string_is_normalised_to_tuple():
    params = SamplingParams(stop="END", stop_token_ids=[5, 6], temperature=0)
    assert params.stop == ("END",) and params.stop_token_ids == (5, 6) and params.is_greedy
