"""Synth tests write their speech cache into a temporary folder, never into ~/.cache."""
from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def speech_cache(tmp_path_factory: pytest.TempPathFactory):
    return tmp_path_factory.mktemp("omnistream-cache")


@pytest.fixture(autouse=True)
def _isolated_cache(speech_cache, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OMNISTREAM_CACHE", str(speech_cache))
