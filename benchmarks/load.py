"""Load benchmark for `omnistream serve`: N concurrent streaming clients over loopback vs one client.

Each client sends a streamed chat completion with spoken output (PCM16) and records
- time to first text and to first audio (from sending the request),
- real-time factor = (last audio byte − request sent) / seconds of audio received (< 1: faster than speech),
- and the batch's requests/s.
The server is started here in its own process (so client and server do not share a GIL), or `--url` points
at one already running.

`--realtime` measures voice turns instead: each session streams espeak-ng speech over WS /v1/realtime at
real-time pace (100 ms chunks) and records the time from the end of the speech (its last chunk sent) to the
first audio of the answer — the latency a talking user feels. `--no-early-prefill` starts the server without
the held answer at the first pause, for comparison.

    python -m benchmarks.load --model PATH --clients 16 --requests 32
    python -m benchmarks.load --url http://127.0.0.1:8000 --api-key KEY --clients 8
    python -m benchmarks.load --model PATH --realtime --clients 4 [--no-early-prefill]
"""
from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
QUESTIONS = ["What color is the circle?", "How many squares are there?", "Describe the picture.",
             "Where is the red triangle?", "What shape is on the left?", "Is the star above the square?"]


@dataclass
class Sample:
    first_text: float | None
    first_audio: float | None
    last_audio: float | None
    audio_s: float
    total: float

    @property
    def rtf(self) -> float | None:
        return self.last_audio / self.audio_s if self.audio_s > 0 and self.last_audio else None


async def one_request(client: httpx.AsyncClient, model: str, question: str, max_tokens: int, voice: str) -> Sample:
    body = {"model": model, "messages": [{"role": "user", "content": question}], "stream": True,
            "max_tokens": max_tokens, "temperature": 0, "modalities": ["text", "audio"],
            "audio": {"voice": voice, "format": "pcm16"}}
    start = time.perf_counter()
    first_text = first_audio = last_audio = None
    audio_bytes = 0
    async with client.stream("POST", "/v1/chat/completions", json=body) as response:
        response.raise_for_status()
        async for line in response.aiter_lines():
            if not line.startswith("data: {"):
                continue
            chunk = json.loads(line[6:])
            if "error" in chunk:
                raise RuntimeError(chunk["error"]["message"])
            delta = chunk["choices"][0]["delta"] if chunk.get("choices") else {}
            now = time.perf_counter() - start
            if delta.get("content") and first_text is None:
                first_text = now
            data = (delta.get("audio") or {}).get("data")
            if data:
                audio_bytes += len(base64.b64decode(data))
                first_audio = now if first_audio is None else first_audio
                last_audio = now
    return Sample(first_text, first_audio, last_audio, audio_bytes / 2 / 24000, time.perf_counter() - start)


async def run_load(url: str, api_key: str | None, model: str, clients: int, requests: int, max_tokens: int,
                   voice: str) -> tuple[list[Sample], float]:
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    queue: asyncio.Queue[str] = asyncio.Queue()
    for i in range(requests):
        queue.put_nowait(QUESTIONS[i % len(QUESTIONS)])
    samples: list[Sample] = []

    async def worker(client: httpx.AsyncClient) -> None:
        while not queue.empty():
            samples.append(await one_request(client, model, queue.get_nowait(), max_tokens, voice))

    limits = httpx.Limits(max_connections=clients + 4, max_keepalive_connections=clients + 4)
    async with httpx.AsyncClient(base_url=url, headers=headers, timeout=600, limits=limits) as client:
        await one_request(client, model, QUESTIONS[0], 8, voice)        # warm-up
        start = time.perf_counter()
        await asyncio.gather(*(worker(client) for _ in range(clients)))
        return samples, time.perf_counter() - start


def espeak_pcm16(text: str, rate: int = 24000) -> bytes:
    """Speech from espeak-ng as PCM16 at `rate` (the realtime input format)."""
    import io
    import wave

    import numpy as np

    from omnistream.server.audio_codecs import StreamResampler, float_to_pcm16

    wav = subprocess.run(["espeak-ng", "--stdout", text], check=True, capture_output=True).stdout
    with wave.open(io.BytesIO(wav)) as w:
        native = w.getframerate()
        samples = np.frombuffer(w.readframes(w.getnframes()), "<i2").astype(np.float32) / 32768
    resampler = StreamResampler(native, rate)
    return float_to_pcm16(np.concatenate([resampler.push(samples), resampler.flush()]))


async def realtime_turns(url: str, api_key: str | None, model: str, turns: int, max_tokens: int,
                         speech: bytes) -> list[float]:
    """One realtime session: `turns` spoken questions; end of speech → first answer audio, seconds each.

    Audio is sent at real-time pace while a reader takes the server's events, as a microphone client does.
    """
    import websockets

    chunk = 2400 * 2                                              # 100 ms of 24 kHz PCM16
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    ws_url = url.replace("http", "ws", 1) + f"/v1/realtime?model={model}"
    latencies: list[float] = []
    async with websockets.connect(ws_url, additional_headers=headers, max_size=None) as ws:
        await ws.recv()
        await ws.send(json.dumps({"type": "session.update", "session": {
            "type": "realtime", "max_output_tokens": max_tokens}}))
        for _ in range(turns):
            spoken_at: list[float] = []
            answered = asyncio.get_running_loop().create_future()

            async def read(answered: asyncio.Future = answered) -> None:
                first_audio = None
                while True:
                    event = json.loads(await ws.recv())
                    if event["type"] == "response.output_audio.delta" and first_audio is None:
                        first_audio = time.perf_counter()
                    elif event["type"] == "error":
                        raise RuntimeError(event["error"]["message"])
                    elif event["type"] == "response.done":
                        answered.set_result(first_audio)
                        return

            reader = asyncio.create_task(read())
            audio = bytes(chunk * 3) + speech + bytes(chunk * 12)
            speech_end_chunk = (chunk * 3 + len(speech)) // chunk
            start = time.perf_counter()
            for i in range(0, len(audio), chunk):
                if answered.done():
                    break
                await ws.send(json.dumps({"type": "input_audio_buffer.append",
                                          "audio": base64.b64encode(audio[i:i + chunk]).decode()}))
                if i // chunk == speech_end_chunk:
                    spoken_at.append(time.perf_counter())
                await asyncio.sleep(max(0.0, start + (i // chunk + 1) * 0.1 - time.perf_counter()))
            await reader
            first_audio = answered.result()
            if first_audio is not None and spoken_at:
                latencies.append(first_audio - spoken_at[0])
    return latencies


async def run_realtime(url: str, api_key: str | None, model: str, sessions: int, turns: int,
                       max_tokens: int) -> list[float]:
    speech = espeak_pcm16("What color is the circle next to the blue square?")
    if sessions == 1:
        await realtime_turns(url, api_key, model, 1, max_tokens, speech)       # warm-up
    results = await asyncio.gather(*(realtime_turns(url, api_key, model, turns, max_tokens, speech)
                                     for _ in range(sessions)))
    return [x for r in results for x in r]


def percentile(values: list[float], q: float) -> float:
    values = sorted(v for v in values if v is not None)
    if not values:
        return float("nan")
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1] if len(values) > 1 else values[0]


def summarize(samples: list[Sample], wall: float) -> dict[str, float]:
    ttft = [s.first_text for s in samples]
    ttfa = [s.first_audio for s in samples]
    rtf = [s.rtf for s in samples]
    return {"requests": len(samples), "requests_per_s": len(samples) / wall,
            "first_text_p50_ms": 1000 * percentile(ttft, 50), "first_audio_p50_ms": 1000 * percentile(ttfa, 50),
            "first_audio_p90_ms": 1000 * percentile(ttfa, 90), "rtf_p50": percentile(rtf, 50),
            "rtf_p90": percentile(rtf, 90), "audio_s_per_request": statistics.mean(s.audio_s for s in samples)}


def print_table(rows: dict[str, dict[str, float]]) -> None:
    labels = [("requests", "requests", "{:.0f}"), ("requests_per_s", "requests/s", "{:.2f}"),
              ("first_text_p50_ms", "first text p50, ms", "{:.0f}"),
              ("first_audio_p50_ms", "first audio p50, ms", "{:.0f}"),
              ("first_audio_p90_ms", "first audio p90, ms", "{:.0f}"),
              ("rtf_p50", "real-time factor p50", "{:.3f}"), ("rtf_p90", "real-time factor p90", "{:.3f}"),
              ("audio_s_per_request", "audio per answer, s", "{:.2f}")]
    names = list(rows)
    print(f"{'':26}" + "".join(f"{n:>16}" for n in names))
    for key, label, fmt in labels:
        print(f"{label:26}" + "".join(f"{fmt.format(rows[n][key]):>16}" for n in names))


def start_server(model: str | None, device: str, max_num_seqs: int, key: str,
                 extra: tuple[str, ...] = ()) -> tuple[subprocess.Popen, str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cmd = [sys.executable, "-m", "omnistream.server.cli", "--port", str(port), "--device", device,
           "--max-num-seqs", str(max_num_seqs), "--api-key", key, "--log-level", "warning", *extra]
    if model:
        cmd += ["--model", model]
    log = tempfile.NamedTemporaryFile(prefix="omnistream-load-", suffix=".log", delete=False)
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, env={**os.environ})
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 600
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the server exited; see {log.name}")
        try:
            if httpx.get(url + "/health", timeout=1).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    proc.kill()
    raise RuntimeError("the server did not start in 10 minutes")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--url", help="a running server (default: start one here)")
    parser.add_argument("--model", help="checkpoint folder for the server started here (default: built-in)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--api-key", default=None)
    parser.add_argument("--clients", type=int, default=16, help="concurrent clients (default 16)")
    parser.add_argument("--requests", type=int, default=None, help="requests in the loaded run (default 2×clients)")
    parser.add_argument("--single-requests", type=int, default=4, help="requests in the one-client run")
    parser.add_argument("--max-tokens", type=int, default=48)
    parser.add_argument("--voice", default="ethan")
    parser.add_argument("--realtime", action="store_true", help="spoken turns over WS /v1/realtime instead")
    parser.add_argument("--turns", type=int, default=3, help="realtime: turns per session")
    parser.add_argument("--no-early-prefill", action="store_true", help="realtime: start the server without it")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    args = parser.parse_args(argv)
    proc = None
    url, key = args.url, args.api_key
    if url is None:
        key = key or "load-benchmark"
        extra = ("--no-early-prefill",) if args.no_early_prefill else ()
        proc, url = start_server(args.model, args.device, max(args.clients, 1), key, extra)
    try:
        model = httpx.get(url + "/v1/models", headers={"Authorization": f"Bearer {key}"} if key else {},
                          timeout=30).json()["data"][0]["id"]
        rows = {}
        for clients, requests in ((1, args.single_requests), (args.clients, args.requests or 2 * args.clients)):
            name = f"{clients} {'session' if args.realtime else 'client'}{'s' if clients > 1 else ''}"
            if args.realtime:
                latencies = asyncio.run(run_realtime(url, key, model, clients, args.turns, args.max_tokens))
                rows[name] = {"turns": len(latencies), "speech_end_to_audio_p50_ms": 1000 * percentile(latencies, 50),
                              "speech_end_to_audio_p90_ms": 1000 * percentile(latencies, 90)}
                continue
            samples, wall = asyncio.run(run_load(url, key, model, clients, requests, args.max_tokens, args.voice))
            rows[name] = summarize(samples, wall)
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(timeout=30)
    if args.json:
        print(json.dumps(rows, indent=2))
    elif args.realtime:
        print(f"{'':34}" + "".join(f"{n:>14}" for n in rows))
        for key, label in (("turns", "turns"), ("speech_end_to_audio_p50_ms", "end of speech → audio p50, ms"),
                           ("speech_end_to_audio_p90_ms", "end of speech → audio p90, ms")):
            print(f"{label:34}" + "".join(f"{rows[n][key]:>14.0f}" for n in rows))
    else:
        print_table(rows)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
