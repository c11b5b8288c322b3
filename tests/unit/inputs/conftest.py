"""Fixtures for the inputs-layer unit tests: a processor checkpoint folder (no weights) and its Processor."""
from __future__ import annotations

from pathlib import Path

import pytest

from omnistream.inputs import Processor
from tests.inputs_fixtures import build_checkpoint


@pytest.fixture(scope="session")
def checkpoint(tmp_path_factory) -> Path:
    return build_checkpoint(tmp_path_factory.mktemp("inputs_ckpt"))


@pytest.fixture(scope="session")
def processor(checkpoint) -> Processor:
    return Processor.from_pretrained(checkpoint)
