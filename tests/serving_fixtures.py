"""A real omnistream server for the serving tests: real engine, real uvicorn, loopback port, one per session.

The model is the tiny random-weight checkpoint from tests/reference.py with the inputs tests' tokenizer
(tests/inputs_fixtures.py), adjusted so its output is usable by protocol tests:
- the thinker's output head only scores ids that decode to whole characters (other rows zeroed), so greedy
  answers are real, deterministic text;
- the talker's codec head is flattened so each frame ends the speech with probability ~1/33 — answers speak
  for a few seconds instead of filling the talker cache — and it speaks at least 6 frames (generation
  default `talker_min_new_tokens=6`), so no answer is silent by chance.
Every test file gets the same server (built once, torn down at exit), started with an API key so auth is on.
"""
from __future__ import annotations

import atexit
import base64
import io
import json
import shutil
import socket
import tempfile
import threading
import time
import wave
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file

API_KEY = "test-key"
MODEL = "tiny-omni"
MAX_BODY = 8 * 1024 * 1024


def build_serving_checkpoint(folder: Path) -> Path:
    from tests.inputs_fixtures import build_checkpoint
    from tests.reference import build_reference_checkpoint, tiny_config

    build_reference_checkpoint(folder, tiny_config(), seed=0)
    build_checkpoint(folder, json.loads((folder / "config.json").read_text()))
    from tokenizers import Tokenizer

    weights = load_file(str(folder / "model.safetensors"))
    tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
    vocab = json.loads((folder / "tokenizer.json").read_text())["model"]["vocab"]
    # Ordinary tokens that decode to whole characters on their own (no partial UTF-8 byte pieces).
    decodable = torch.tensor(sorted(i for i in vocab.values() if i < 151643
                                    and (text := tokenizer.decode([i])) and "\ufffd" not in text))
    head = weights["thinker.lm_head.weight"]
    keep = torch.zeros(head.shape[0], dtype=torch.bool)
    keep[decodable] = True
    weights["thinker.lm_head.weight"] = head * keep[:, None]
    weights["talker.codec_head.weight"] = weights["talker.codec_head.weight"] * 0.02
    save_file(weights, str(folder / "model.safetensors"), metadata={"format": "pt"})
    return folder


@dataclass
class RunningServer:
    base_url: str            # http://127.0.0.1:PORT
    omni: object
    client: object
    server: object
    thread: threading.Thread
    folder: Path

    @property
    def api_url(self) -> str:
        return self.base_url + "/v1"

    @property
    def ws_url(self) -> str:
        return self.base_url.replace("http://", "ws://") + "/v1/realtime"

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)
        self.omni.close()
        shutil.rmtree(self.folder, ignore_errors=True)


_SERVER: RunningServer | None = None
_LOCK = threading.Lock()


def shared_server() -> RunningServer:
    """The session's server (started on first use)."""
    global _SERVER
    with _LOCK:
        if _SERVER is None:
            _SERVER = start_server()
            atexit.register(_SERVER.stop)
        return _SERVER


def start_server(builtin: bool = False, **settings: object) -> RunningServer:
    """A server on a free loopback port: the tiny test model, or the built-in model with `builtin=True`."""
    import uvicorn

    from omnistream.api import Omni
    from omnistream.server.app import create_app
    from omnistream.server.engine_client import EngineClient
    from omnistream.server.settings import ServerSettings

    folder = Path(tempfile.mkdtemp(prefix="omnistream-serve-"))
    if builtin:
        omni = Omni.from_pretrained(None, device="cpu", max_num_seqs=16)
        names: tuple[str, ...] = ("omnistream-builtin", "omnistream")
    else:
        omni = Omni.from_pretrained(build_serving_checkpoint(folder), device="cpu", max_num_seqs=16,
                                    max_model_len=1024)
        # A random talker may end its speech at the very first frame; like a real model, always say something.
        defaults = omni.sampling_params
        omni.sampling_params = lambda **options: defaults(**{"talker_min_new_tokens": 6, **options})
        names = (MODEL, "omnistream")
    client = EngineClient.from_omni(omni, names)
    options = {"api_key": API_KEY, "max_body_bytes": MAX_BODY, **settings}
    app = create_app(client, ServerSettings(**options))
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", ws_max_size=16 * 1024 * 1024))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True, name="uvicorn")
    thread.start()
    deadline = time.time() + 60
    while not server.started:
        if time.time() > deadline or not thread.is_alive():
            raise RuntimeError("the test server did not start")
        time.sleep(0.05)
    return RunningServer(f"http://127.0.0.1:{port}", omni, client, server, thread, folder)


# ------------------------------------------------------------------------------------------ media

def speech(text: str, rate: int = 24000) -> np.ndarray:
    """espeak-ng speech as float32 mono at `rate`."""
    from omnistream.server.audio_codecs import StreamResampler
    from tests.inputs_fixtures import espeak_wav

    with wave.open(io.BytesIO(espeak_wav(text))) as w:
        native = w.getframerate()
        samples = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").astype(np.float32) / 32768
    resampler = StreamResampler(native, rate)
    return np.concatenate([resampler.push(samples), resampler.flush()])


def pcm16(samples: np.ndarray) -> bytes:
    from omnistream.server.audio_codecs import float_to_pcm16

    return float_to_pcm16(samples)


def wav_bytes(samples: np.ndarray, rate: int) -> bytes:
    from omnistream.server.audio_codecs import encode_audio

    return encode_audio(samples, rate, "wav")


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def png_data_url(size: int = 64) -> str:
    from tests.inputs_fixtures import drawing, image_bytes

    return "data:image/png;base64," + b64(image_bytes(drawing(size, size)))


def mp4_data_url(frames: int = 4, size: int = 64) -> str:
    from tests.inputs_fixtures import encode_video, video_frames

    return "data:video/mp4;base64," + b64(encode_video(video_frames(frames, size, size), fps=2))


def metric(text: str, name: str) -> float:
    """One un-labelled sample from Prometheus text."""
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise KeyError(name)
