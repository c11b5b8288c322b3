"""Word error rate and the independent recogniser used to check the model's own speech."""
from __future__ import annotations

import logging
from functools import lru_cache
from pathlib import Path
import tempfile

import numpy as np

from omnistream.errors import ConfigError

logger = logging.getLogger(__name__)


def word_errors(reference: str, hypothesis: str) -> tuple[int, int]:
    """(substitutions + deletions + insertions, reference length) by word-level Levenshtein."""
    ref, hyp = reference.split(), hypothesis.split()
    row = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, 1):
        prev, row[0] = row[0], i
        for j, h in enumerate(hyp, 1):
            prev, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, prev + (r != h))
    return row[len(hyp)], len(ref)


def wer(pairs: list[tuple[str, str]]) -> float:
    """Corpus WER over (reference, hypothesis) pairs: total errors / total reference words."""
    errors = words = 0
    for ref, hyp in pairs:
        e, n = word_errors(ref, hyp)
        errors, words = errors + e, words + n
    return errors / max(words, 1)


@lru_cache(maxsize=1)
def _grammar_file() -> str:
    from omnistream.synth import write_jsgf

    path = Path(tempfile.gettempdir()) / "omnistream-shapesworld.jsgf"
    write_jsgf(path)
    return str(path)


class Recogniser:
    """pocketsphinx (its bundled en-us model) restricted to the JSGF grammar of everything the world says."""

    def __init__(self) -> None:
        try:
            from pocketsphinx import Decoder
        except ImportError:
            raise ConfigError("pocketsphinx is not installed (pip install -c constraints.txt pocketsphinx)",
                              param="pocketsphinx") from None
        self.decoder = Decoder(jsgf=_grammar_file(), samprate=16000, loglevel="FATAL")

    def transcribe(self, samples: np.ndarray, sample_rate: int) -> str:
        from omnistream.synth.speech import resample

        wave = resample(np.asarray(samples, dtype=np.float32), sample_rate, 16000)
        pcm = (np.clip(wave, -1, 1) * 32767).astype("<i2").tobytes()
        self.decoder.start_utt()
        self.decoder.process_raw(pcm, full_utt=True)
        self.decoder.end_utt()
        hyp = self.decoder.hyp()
        return hyp.hypstr if hyp is not None else ""
