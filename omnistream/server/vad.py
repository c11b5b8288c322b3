"""Server voice-activity detection: the silero-vad v5 network in plain PyTorch and a turn-taking state machine.

The weights come from the `silero-vad` package's own `silero_vad_16k.safetensors` (shipped inside the wheel,
so nothing is downloaded). We do not import the package: its import calls `torch.set_num_threads(1)` for the
whole process, which would slow the engine, and its TorchScript model keeps hidden per-model state. Here the
recurrent state is an explicit tensor per connection.

The network reads 512-sample windows at 16 kHz (32 ms) with 64 samples of left context and returns a speech
probability. `TurnDetector` turns those into OpenAI server-VAD events with hysteresis (start at `threshold`,
end below `threshold - 0.15` for `silence_duration_ms`).
"""
from __future__ import annotations

import importlib.util
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

logger = logging.getLogger(__name__)
SAMPLE_RATE = 16000
WINDOW = 512           # samples per probability (32 ms)
CONTEXT = 64           # left context the network sees in front of each window
_WEIGHTS = "silero_vad_16k.safetensors"


def weights_path() -> Path:
    """Locate the weights inside the installed silero-vad package without importing it."""
    spec = importlib.util.find_spec("silero_vad")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("server VAD needs the silero-vad package: pip install 'omnistream[serve]'")
    path = Path(next(iter(spec.submodule_search_locations))) / "data" / _WEIGHTS
    if not path.is_file():
        raise ImportError(f"silero-vad is installed but {_WEIGHTS} is missing from it (need silero-vad ≥ 6)")
    return path


class SileroVAD(nn.Module):
    """Silero VAD v5, 16 kHz branch: STFT conv → 4 convs → LSTM cell → sigmoid head."""

    def __init__(self) -> None:
        super().__init__()
        self.stft_conv = nn.Conv1d(1, 258, kernel_size=256, stride=128, bias=False)   # real+imag of 129 bins
        self.conv1 = nn.Conv1d(129, 128, 3, padding=1)
        self.conv2 = nn.Conv1d(128, 64, 3, stride=2, padding=1)
        self.conv3 = nn.Conv1d(64, 64, 3, stride=2, padding=1)
        self.conv4 = nn.Conv1d(64, 128, 3, padding=1)
        self.lstm_cell = nn.LSTMCell(128, 128)
        self.final_conv = nn.Conv1d(128, 1, 1)

    @classmethod
    def load(cls) -> SileroVAD:
        from safetensors.torch import load_file

        model = cls()
        model.load_state_dict(load_file(str(weights_path())))
        return model.eval()

    @torch.no_grad()
    def forward(self, x: torch.Tensor, state: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x [B, CONTEXT + WINDOW] float32, state [2, B, 128] (h, c) → (prob [B], new state)."""
        x = nn.functional.pad(x, (0, 64), mode="reflect").unsqueeze(1)     # [B, 1, 640]
        spec = self.stft_conv(x)                                            # [B, 258, 4]
        mag = torch.sqrt(spec[:, :129] ** 2 + spec[:, 129:] ** 2)           # [B, 129, 4]
        h = torch.relu(self.conv1(mag))
        h = torch.relu(self.conv2(h))
        h = torch.relu(self.conv3(h))
        h = torch.relu(self.conv4(h)).squeeze(-1)                           # [B, 128]
        hx, cx = self.lstm_cell(h, (state[0], state[1]))
        prob = torch.sigmoid(self.final_conv(torch.relu(hx).unsqueeze(-1)))  # [B, 1, 1]
        return prob.reshape(-1), torch.stack([hx, cx])


_SHARED: SileroVAD | None = None


def shared_model() -> SileroVAD | None:
    """The VAD network, loaded once per process (stateless; each connection keeps its own state)."""
    global _SHARED
    if _SHARED is None:
        try:
            _SHARED = SileroVAD.load()
        except ImportError:
            logger.warning("silero-vad is not installed: realtime server VAD is off (manual commit only)")
    return _SHARED


class SpeechProbabilities:
    """Streaming probabilities for one audio stream: buffers samples into windows, keeps context and state."""

    def __init__(self, model: SileroVAD) -> None:
        self.model = model
        self._state = torch.zeros(2, 1, 128)
        self._context = torch.zeros(CONTEXT)
        self._pending = np.zeros(0, np.float32)

    def push(self, samples: np.ndarray) -> list[float]:
        """16 kHz float32 samples in → one probability per completed 512-sample window."""
        self._pending = np.concatenate([self._pending, samples.astype(np.float32, copy=False)])
        probs: list[float] = []
        while self._pending.size >= WINDOW:
            window = torch.from_numpy(self._pending[:WINDOW].copy())
            self._pending = self._pending[WINDOW:]
            x = torch.cat([self._context, window]).unsqueeze(0)
            prob, self._state = self.model(x, self._state)
            self._context = window[-CONTEXT:]
            probs.append(float(prob[0]))
        return probs


@dataclass(frozen=True)
class TurnDetection:
    """OpenAI `server_vad` settings (same names and defaults)."""
    threshold: float = 0.5
    prefix_padding_ms: int = 300
    silence_duration_ms: int = 500
    create_response: bool = True
    interrupt_response: bool = True


@dataclass(frozen=True)
class VADEvent:
    """`kind` is "speech_started", "speech_paused" (a possible turn end), "speech_resumed" or "speech_stopped".

    `sample` indexes the 16 kHz input stream: for speech_started the start including prefix padding, for
    speech_paused / speech_stopped the end of the turn's audio (the pause point plus a short tail).
    """
    kind: str
    sample: int


class TurnDetector:
    """Turns speech probabilities into turn events with hysteresis.

    A turn ends after `silence_duration_ms` below the lower threshold. Before that, once the silence has lasted
    `tail_ms`, a "speech_paused" event marks the same end point the turn will have if the silence continues —
    the connection may start generating speculatively there and keep the answer if the turn does end.
    """

    def __init__(self, probabilities: SpeechProbabilities, settings: TurnDetection, tail_ms: int = 160) -> None:
        self.probabilities, self.settings = probabilities, settings
        self.tail_windows = max(1, round(min(tail_ms, settings.silence_duration_ms) * SAMPLE_RATE / 1000 / WINDOW))
        self.silence_windows = max(1, round(settings.silence_duration_ms * SAMPLE_RATE / 1000 / WINDOW))
        self.in_speech = False
        self.windows_seen = 0
        self._silent_run = 0
        self._pause_at = 0           # first silent window of the current run

    def reset(self) -> None:
        """Forget the current turn (after a manual commit or clear); stream time keeps counting."""
        self.in_speech, self._silent_run = False, 0

    def push(self, samples: np.ndarray) -> list[VADEvent]:
        events: list[VADEvent] = []
        for prob in self.probabilities.push(samples):
            events.extend(self._step(prob))
            self.windows_seen += 1
        return events

    def _step(self, prob: float) -> list[VADEvent]:
        s = self.settings
        here = self.windows_seen * WINDOW
        if not self.in_speech:
            if prob >= s.threshold:
                self.in_speech, self._silent_run = True, 0
                start = max(0, here - s.prefix_padding_ms * SAMPLE_RATE // 1000)
                return [VADEvent("speech_started", start)]
            return []
        if prob >= s.threshold - 0.15:
            resumed = self._silent_run >= self.tail_windows
            self._silent_run = 0
            return [VADEvent("speech_resumed", here)] if resumed else []
        if self._silent_run == 0:
            self._pause_at = here
        self._silent_run += 1
        end = self._pause_at + self.tail_windows * WINDOW
        if self._silent_run == self.tail_windows and self.tail_windows < self.silence_windows:
            return [VADEvent("speech_paused", end)]
        if self._silent_run >= self.silence_windows:
            self.in_speech, self._silent_run = False, 0
            return [VADEvent("speech_stopped", end)]
        return []
