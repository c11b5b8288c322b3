"""`omnistream bench`: the benchmark lives in the source tree's `benchmarks/` (it runs transformers, which the
runtime package never imports). This module only finds it and hands over the command line."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from omnistream.errors import OmnistreamError

SOURCE_ROOT = Path(__file__).resolve().parents[1]


def _benchmarks():
    if not (SOURCE_ROOT / "benchmarks" / "bench.py").is_file():
        raise OmnistreamError("`omnistream bench` needs a source checkout (benchmarks/ next to omnistream/) "
                              "and the test extras: pip install -e '.[test]'")
    if str(SOURCE_ROOT) not in sys.path:
        sys.path.insert(0, str(SOURCE_ROOT))
    from benchmarks import bench
    return bench


def add_arguments(parser: argparse.ArgumentParser) -> None:
    try:
        _benchmarks().add_arguments(parser)
    except OmnistreamError:
        parser.add_argument("rest", nargs=argparse.REMAINDER)


def main(args: argparse.Namespace) -> int:
    return _benchmarks().main(args)
