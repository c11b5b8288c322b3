"""Where omnistream keeps what it builds once per machine (espeak-ng speech, native kernels, benchmark
checkpoints): `$OMNISTREAM_CACHE`, default `~/.cache/omnistream`."""
from __future__ import annotations

import os
from pathlib import Path


def cache_root() -> Path:
    return Path(os.environ.get("OMNISTREAM_CACHE") or Path.home() / ".cache" / "omnistream")
