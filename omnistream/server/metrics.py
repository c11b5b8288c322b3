"""Server metrics in the Prometheus text exposition format (version 0.0.4), written by hand.

Counters and histograms are updated from the event loop only (no locks needed); gauges that belong to the
engine (queue depth, running requests, cache slots) are read from it at scrape time.
"""
from __future__ import annotations

import bisect
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

LATENCY_BUCKETS = (0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
RTF_BUCKETS = (0.1, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 4.0, 8.0)


@dataclass
class Histogram:
    buckets: tuple[float, ...]
    counts: list[int] = field(default_factory=list)
    total: float = 0.0
    count: int = 0

    def __post_init__(self) -> None:
        self.counts = [0] * len(self.buckets)

    def observe(self, value: float) -> None:
        index = bisect.bisect_left(self.buckets, value)
        if index < len(self.counts):
            self.counts[index] += 1
        self.total += value
        self.count += 1

    def lines(self, name: str) -> Iterable[str]:
        running = 0
        for bound, n in zip(self.buckets, self.counts, strict=True):
            running += n
            yield f'{name}_bucket{{le="{bound:g}"}} {running}'
        yield f'{name}_bucket{{le="+Inf"}} {self.count}'
        yield f"{name}_sum {self.total:.6f}"
        yield f"{name}_count {self.count}"


class Metrics:
    """Everything /metrics reports. `engine_stats` returns the engine's gauges at scrape time."""

    def __init__(self, engine_stats: Callable[[], dict[str, float]] | None = None) -> None:
        self.engine_stats = engine_stats or (lambda: {})
        self.requests: dict[tuple[str, int], int] = defaultdict(int)      # (endpoint, status) → count
        self.prompt_tokens = 0
        self.completion_tokens = 0
        self.audio_seconds = 0.0
        self.active_streams = 0
        self.realtime_connections = 0
        self.aborted = 0
        self.speculative: dict[str, int] = {"started": 0, "adopted": 0, "discarded": 0}
        self.first_token = Histogram(LATENCY_BUCKETS)
        self.first_audio = Histogram(LATENCY_BUCKETS)
        self.real_time_factor = Histogram(RTF_BUCKETS)

    def count_request(self, endpoint: str, status: int) -> None:
        self.requests[(endpoint, status)] += 1

    def observe_generation(self, *, prompt_tokens: int, completion_tokens: int, audio_seconds: float,
                           first_token_s: float | None, first_audio_s: float | None,
                           audio_generation_s: float | None) -> None:
        """Record one finished generation; RTF = time spent producing the speech / its duration."""
        self.prompt_tokens += prompt_tokens
        self.completion_tokens += completion_tokens
        self.audio_seconds += audio_seconds
        if first_token_s is not None:
            self.first_token.observe(first_token_s)
        if first_audio_s is not None:
            self.first_audio.observe(first_audio_s)
        if audio_seconds > 0 and audio_generation_s is not None:
            self.real_time_factor.observe(audio_generation_s / audio_seconds)

    def render(self) -> str:
        out: list[str] = []

        def metric(name: str, kind: str, help_text: str, lines: Iterable[str]) -> None:
            out.append(f"# HELP {name} {help_text}")
            out.append(f"# TYPE {name} {kind}")
            out.extend(lines)

        metric("omnistream_requests_total", "counter", "HTTP and WebSocket requests by endpoint and status.",
               [f'omnistream_requests_total{{endpoint="{e}",status="{s}"}} {n}'
                for (e, s), n in sorted(self.requests.items())] or ["omnistream_requests_total 0"])
        metric("omnistream_prompt_tokens_total", "counter", "Prompt tokens processed.",
               [f"omnistream_prompt_tokens_total {self.prompt_tokens}"])
        metric("omnistream_generation_tokens_total", "counter", "Text tokens generated.",
               [f"omnistream_generation_tokens_total {self.completion_tokens}"])
        metric("omnistream_audio_seconds_total", "counter", "Seconds of speech generated.",
               [f"omnistream_audio_seconds_total {self.audio_seconds:.3f}"])
        metric("omnistream_aborted_requests_total", "counter", "Generations cancelled (disconnects, barge-in).",
               [f"omnistream_aborted_requests_total {self.aborted}"])
        metric("omnistream_realtime_speculative_total", "counter", "Realtime answers started at a speech pause, "
               "by outcome (adopted when the turn ended there).",
               [f'omnistream_realtime_speculative_total{{outcome="{k}"}} {v}' for k, v in self.speculative.items()])
        metric("omnistream_active_streams", "gauge", "Generations the server is streaming right now.",
               [f"omnistream_active_streams {self.active_streams}"])
        metric("omnistream_realtime_connections", "gauge", "Open realtime WebSocket connections.",
               [f"omnistream_realtime_connections {self.realtime_connections}"])
        for key, value in sorted(self.engine_stats().items()):
            metric(f"omnistream_engine_{key}", "gauge", f"Engine gauge {key}.", [f"omnistream_engine_{key} {value:g}"])
        metric("omnistream_time_to_first_token_seconds", "histogram", "Submission to first text token.",
               self.first_token.lines("omnistream_time_to_first_token_seconds"))
        metric("omnistream_time_to_first_audio_seconds", "histogram", "Submission to first audio chunk.",
               self.first_audio.lines("omnistream_time_to_first_audio_seconds"))
        metric("omnistream_real_time_factor", "histogram", "Speech generation time / speech duration (< 1 is "
               "faster than real time).", self.real_time_factor.lines("omnistream_real_time_factor"))
        return "\n".join(out) + "\n"
