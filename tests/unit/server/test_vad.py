"""Server VAD: our plain-PyTorch silero network and the turn detector, on espeak-ng speech."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from omnistream.server.vad import SileroVAD, SpeechProbabilities, TurnDetection, TurnDetector
from tests.serving_fixtures import speech

RATE = 16000


@pytest.fixture(scope="module")
def model() -> SileroVAD:
    return SileroVAD.load()


@pytest.fixture(scope="module")
def utterance() -> np.ndarray:
    """0.5 s silence, a sentence, 1.5 s silence at 16 kHz."""
    return np.concatenate([np.zeros(RATE // 2, np.float32), speech("What color is the circle?", RATE),
                           np.zeros(3 * RATE // 2, np.float32)])


def test_probabilities_separate_speech_from_silence(model, utterance):
    probs = np.array(SpeechProbabilities(model).push(utterance))
    windows = np.arange(len(probs)) * 512 / RATE
    speech_end = len(utterance) / RATE - 1.5
    assert probs[windows < 0.4].max() < 0.1                       # leading silence
    assert probs[(windows > 0.8) & (windows < speech_end - 0.3)].mean() > 0.8
    assert probs[windows > speech_end + 0.3].max() < 0.2          # trailing silence


def test_agrees_with_silero_reference_decisions(model, utterance):
    threads = torch.get_num_threads()
    try:
        silero = pytest.importorskip("silero_vad")           # its import sets torch threads to 1: restore it
        reference = silero.load_silero_vad()
    finally:
        torch.set_num_threads(threads)
    theirs = [reference(torch.from_numpy(utterance[i:i + 512]), RATE).item()
              for i in range(0, len(utterance) - 511, 512)]
    ours = SpeechProbabilities(model).push(utterance)
    agree = np.mean((np.array(ours) > 0.5) == (np.array(theirs) > 0.5))
    assert agree >= 0.93, agree                                # two releases of the weights: same decisions


def test_chunking_does_not_change_probabilities(model, utterance):
    whole = SpeechProbabilities(model).push(utterance)
    streamed, probe = [], SpeechProbabilities(model)
    for start in range(0, len(utterance), 777):
        streamed += probe.push(utterance[start:start + 777])
    assert np.allclose(whole, streamed, atol=1e-6)


def test_turn_events(model, utterance):
    detector = TurnDetector(SpeechProbabilities(model), TurnDetection(silence_duration_ms=500, prefix_padding_ms=300))
    events = []
    for start in range(0, len(utterance), 1600):
        events += detector.push(utterance[start:start + 1600])
    kinds = [e.kind for e in events if e.kind in ("speech_started", "speech_stopped")]
    assert kinds == ["speech_started", "speech_stopped"]
    started = next(e for e in events if e.kind == "speech_started").sample / RATE
    stopped = next(e for e in events if e.kind == "speech_stopped").sample / RATE
    speech_end = len(utterance) / RATE - 1.5
    assert 0.1 <= started <= 0.35                               # speech at 0.5 s minus 300 ms padding
    assert speech_end - 0.3 <= stopped <= speech_end + 0.4
    paused = [e for e in events if e.kind == "speech_paused"]
    assert paused and paused[-1].sample == next(e for e in events if e.kind == "speech_stopped").sample
