"""espeak-ng speech for the shapes world: input speech at 16 kHz and the model's own voices at 24 kHz.

Speech comes from the `espeak-ng` binary (WAV on stdout at 22,050 Hz), is resampled with an exact
FFT (band-limited) resampler in numpy, and is cached on disk keyed by (text, voice, rate, pitch,
sample rate) so that repeated synthesis is a file read. Noise is added after the cache, from the
caller's generator, so cached clean speech never fixes the noise.

Input voices are an accent (espeak language voice) plus a variant. Train and test voices use
disjoint variant sets, so no test voice (accent+variant) is ever heard in training; both sets hold
male and female variants. The two output voices ("ethan", "chelsie") use variants that are in
neither input set: the model is never trained to *understand* the voices it speaks with.
"""
from __future__ import annotations

import hashlib
import logging
import os
import shutil
import subprocess
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from omnistream.cache import cache_root
from omnistream.errors import ConfigError, MediaError, OmniInputError, RequestError

logger = logging.getLogger(__name__)

ESPEAK_BINARY = "espeak-ng"
ESPEAK_SAMPLE_RATE = 22050      # espeak-ng always writes 22,050 Hz mono int16
INPUT_SAMPLE_RATE = 16000       # what the audio encoder hears (spec §4.1)
OUTPUT_SAMPLE_RATE = 24000      # what Code2Wav produces, so the talker's targets use it too
RATE_RANGE = (120, 200)         # words per minute, inclusive
PITCH_RANGE = (25, 75)          # espeak pitch 0..99, 50 is the voice's default
SNR_DB_RANGE = (27.0, 33.0)     # "light noise": around 30 dB
_CACHE_VERSION = "1"            # bump when the resampler or storage changes

# Accents: espeak-ng's English language voices (the gmw/ files; mbrola voices are not installed).
ACCENTS = (
    "en-us", "en-us-nyc", "en-gb", "en-gb-x-rp", "en-gb-scotland",
    "en-gb-x-gbclan", "en-gb-x-gbcwmd", "en-029",
)

# Variants are espeak-ng's voices/!v files, named exactly as the files are (case matters).
# Left out of both input sets: the output voices' variants (klatt, f2) and effects voices that are not
# plain speech (whisper, whisperf, caleb (unvoiced), croak, Demonic, robots, announcer ...).
TRAIN_VARIANTS = {
    "male": ("m1", "m2", "m4", "m6", "m8", "klatt2", "klatt3", "klatt5", "adam", "Andy", "benjamin",
             "david", "edward", "john", "max", "norbert", "paul", "travis"),
    "female": ("f1", "f4", "Alicia", "Annie", "anika", "belinda", "grandma", "steph", "steph3"),
}
TEST_VARIANTS = {
    "male": ("m3", "m5", "m7", "klatt4", "Alex", "michel", "robert", "victor"),
    "female": ("f3", "f5", "Andrea", "linda", "steph2"),
}


@dataclass(frozen=True)
class Voice:
    """One espeak-ng voice: an accent plus a variant, e.g. `en-gb-scotland+f2`."""

    accent: str
    variant: str
    gender: str  # "male" | "female"

    @property
    def name(self) -> str:
        return f"{self.accent}+{self.variant}"


@dataclass(frozen=True)
class SpeechParams:
    """Everything that fixes the clean waveform of one utterance (the cache key, with the text)."""

    voice: str  # espeak -v argument, e.g. "en-us+m3"
    rate: int   # words per minute
    pitch: int  # 0..99


# The model's own voices: what the talker learns to say answers in (speak_answer). Chosen for being
# the variants pocketsphinx transcribes best (clean espeak speech, world grammar, en-us, 150 wpm:
# klatt 1.4% WER, f2 0.0%; by contrast m3 42%, f3 4%), since eval measures intelligibility with it.
OUTPUT_VOICES = {
    "ethan": SpeechParams(voice="en-us+klatt", rate=150, pitch=45),  # male
    "chelsie": SpeechParams(voice="en-us+f2", rate=150, pitch=50),   # female
}


def _voices(variants: dict[str, tuple[str, ...]]) -> tuple[Voice, ...]:
    return tuple(Voice(accent, variant, gender)
                 for gender, names in variants.items() for variant in names for accent in ACCENTS)


def train_voices() -> tuple[Voice, ...]:
    """Input voices used for the train (and validation) splits."""
    return _voices(TRAIN_VARIANTS)


def held_out_voices() -> tuple[Voice, ...]:
    """Input voices of the test split (held out from training); disjoint from `train_voices()`."""
    return _voices(TEST_VARIANTS)


def voices_for_split(split: str) -> tuple[Voice, ...]:
    """Validation uses train voices (in-distribution); only the test split hears the held-out voices."""
    if split in ("train", "val"):
        return train_voices()
    if split == "test":
        return held_out_voices()
    raise ConfigError(f"unknown split {split!r}; expected train, val or test", param="split")


def sample_speech_params(rng: np.random.Generator, split: str) -> SpeechParams:
    """Draw a voice of the split, a rate in 120–200 wpm and a pitch, from `rng`."""
    voices = voices_for_split(split)
    voice = voices[int(rng.integers(len(voices)))]
    rate = int(rng.integers(RATE_RANGE[0], RATE_RANGE[1] + 1))
    pitch = int(rng.integers(PITCH_RANGE[0], PITCH_RANGE[1] + 1))
    return SpeechParams(voice=voice.name, rate=rate, pitch=pitch)


def cache_dir() -> Path:
    """`$OMNISTREAM_CACHE/speech`, default `~/.cache/omnistream/speech`."""
    return cache_root() / "speech"


def resample(wave: np.ndarray, from_rate: int, to_rate: int) -> np.ndarray:
    """Band-limited resampling by FFT: keep (or zero-pad) the spectrum and invert at the new length.

    The signal is treated as periodic; espeak output starts and ends in silence, so the wrap-around
    is harmless. Exact and deterministic, no scipy needed.
    """
    if from_rate == to_rate or wave.size == 0:
        return wave.astype(np.float32, copy=True)
    num_out = int(round(wave.size * to_rate / from_rate))
    spectrum = np.fft.rfft(wave.astype(np.float64))
    num_bins = num_out // 2 + 1
    if num_bins <= spectrum.size:
        spectrum = spectrum[:num_bins]
    else:
        spectrum = np.concatenate([spectrum, np.zeros(num_bins - spectrum.size, spectrum.dtype)])
    out = np.fft.irfft(spectrum, n=num_out) * (num_out / wave.size)
    return out.astype(np.float32)


def _parse_wav_stdout(data: bytes) -> np.ndarray:
    """espeak-ng streams its WAV with placeholder sizes: read the samples after the 'data' tag."""
    tag = data.find(b"data", 12)
    if data[:4] != b"RIFF" or tag < 0:
        raise MediaError("espeak-ng did not produce a WAV stream", param="text")
    payload = data[tag + 8:]
    payload = payload[: len(payload) // 2 * 2]
    return np.frombuffer(payload, dtype="<i2").astype(np.float32) / 32768.0


def _run_espeak(text: str, params: SpeechParams) -> np.ndarray:
    """Clean speech at 22,050 Hz. Text goes through stdin so it is never parsed as an option."""
    if shutil.which(ESPEAK_BINARY) is None:
        raise MediaError("espeak-ng is not installed (apt-get install espeak-ng)", param="espeak-ng")
    cmd = [ESPEAK_BINARY, "--stdout", "-v", params.voice, "-s", str(params.rate), "-p", str(params.pitch)]
    proc = subprocess.run(cmd, input=text.encode("utf-8"), capture_output=True, timeout=60, check=False)
    if proc.returncode != 0:
        raise MediaError(f"espeak-ng failed for voice {params.voice!r}: {proc.stderr.decode()[:200]}",
                         param="voice")
    return _parse_wav_stdout(proc.stdout)


def _check_request(text: str, params: SpeechParams) -> None:
    if not text.strip():
        raise OmniInputError("speech text is empty", param="text")
    if not RATE_RANGE[0] // 2 <= params.rate <= 450:
        raise ConfigError(f"speech rate {params.rate} wpm is out of range", param="rate")
    if not 0 <= params.pitch <= 99:
        raise ConfigError(f"speech pitch {params.pitch} is outside 0..99", param="pitch")


def _cache_path(text: str, params: SpeechParams, sample_rate: int) -> Path:
    key = "|".join([_CACHE_VERSION, text, params.voice, str(params.rate), str(params.pitch), str(sample_rate)])
    digest = hashlib.sha256(key.encode("utf-8")).hexdigest()
    return cache_dir() / digest[:2] / f"{digest}.npy"


def synthesize(text: str, params: SpeechParams, sample_rate: int = INPUT_SAMPLE_RATE,
               use_cache: bool = True) -> np.ndarray:
    """Clean float32 mono speech of `text` at `sample_rate`; cached on disk when `use_cache`."""
    _check_request(text, params)
    path = _cache_path(text, params, sample_rate)
    if use_cache and path.exists():
        try:
            return np.load(path)
        except (OSError, ValueError):
            logger.warning("unreadable speech cache entry %s; synthesizing again", path)
    wave = resample(_run_espeak(text, params), ESPEAK_SAMPLE_RATE, sample_rate)
    if use_cache:
        _write_atomic(path, wave)
    return wave


def _write_atomic(path: Path, wave: np.ndarray) -> None:
    """Write to a temp file then rename, so parallel writers never leave a half-written entry."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
        with os.fdopen(fd, "wb") as handle:
            np.save(handle, wave)
        os.replace(tmp, path)
    except OSError as exc:  # a read-only cache only costs speed
        logger.warning("cannot write speech cache %s: %s", path, exc)


def synthesize_many(requests: Sequence[tuple[str, SpeechParams]], sample_rate: int = INPUT_SAMPLE_RATE,
                    workers: int = 2, use_cache: bool = True) -> list[np.ndarray]:
    """`synthesize` for many utterances, in order. Threads suffice: the work runs in espeak processes."""
    if workers <= 1 or len(requests) <= 1:
        return [synthesize(text, params, sample_rate, use_cache) for text, params in requests]
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(lambda r: synthesize(r[0], r[1], sample_rate, use_cache), requests))


def add_noise(wave: np.ndarray, rng: np.random.Generator, snr_db: float) -> np.ndarray:
    """Add white Gaussian noise at `snr_db` relative to the speech's mean power."""
    power = float(np.mean(np.square(wave, dtype=np.float64))) if wave.size else 0.0
    if power == 0.0:
        return wave.astype(np.float32, copy=True)
    noise_std = np.sqrt(power / (10.0 ** (snr_db / 10.0)))
    noisy = wave + rng.standard_normal(wave.size) * noise_std
    return np.clip(noisy, -1.0, 1.0).astype(np.float32)


def perturb_speed(wave: np.ndarray, factor: float) -> np.ndarray:
    """Play `wave` `factor` times faster (tempo and pitch together, like a tape): resampling it as if it had
    been recorded at `factor` times the rate. Shifts the formants as a different vocal tract would, which is
    why speech recognisers train with it (factors around 0.9–1.1)."""
    if not 0.5 <= factor <= 2.0:
        raise ConfigError(f"speed factor {factor} is outside 0.5..2", param="factor")
    if factor == 1.0 or wave.size == 0:
        return wave.astype(np.float32, copy=True)
    return resample(wave, int(round(INPUT_SAMPLE_RATE * factor)), INPUT_SAMPLE_RATE)


def speak_answer(text: str, voice_name: str) -> np.ndarray:
    """The talker's training target: `text` said by output voice `voice_name`, float32 at 24 kHz.

    Deterministic (fixed voice, rate and pitch; no noise).
    """
    if voice_name not in OUTPUT_VOICES:
        raise RequestError(f"unknown voice {voice_name!r}; expected one of {sorted(OUTPUT_VOICES)}",
                           param="voice")
    return synthesize(text, OUTPUT_VOICES[voice_name], sample_rate=OUTPUT_SAMPLE_RATE)
