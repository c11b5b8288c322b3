"""What both sides of the benchmark run, and the machine facts the figures are judged against.

Prompts are ChatML turns with random text ids (the same ids for both sides), so lengths are exact:
`<|im_start|>user\\n … <|im_end|>\\n<|im_start|>assistant\\n`. Answers are forced to their length
(min_new_tokens = max_new_tokens on both sides) because random weights would stop anywhere.
"""
from __future__ import annotations

import resource
import statistics
import time
from dataclasses import asdict, dataclass
from typing import Any, Callable

import torch

IM_START, IM_END, USER, ASSISTANT, NEWLINE = 151644, 151645, 872, 77091, 198


@dataclass(frozen=True)
class Workload:
    prefill_tokens: int = 512        # prompt length for prefill throughput
    prompt_tokens: int = 32          # prompt length for decode / first token / speech
    decode_tokens: int = 64          # generated per request in the decode runs
    answer_tokens: int = 100         # the spoken answer
    speech_frames: int = 108         # codec frames for that answer (8.6 s of speech)
    repeats: int = 3

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


WORKLOADS = {
    "tiny": Workload(),
    "slice": Workload(decode_tokens=16, repeats=1),
}


def prompt_ids(length: int, seed: int, vocab: int = 150000) -> torch.Tensor:
    """[1, length] ChatML user turn of random text ids + the assistant header."""
    head = [IM_START, USER, NEWLINE]
    tail = [IM_END, NEWLINE, IM_START, ASSISTANT, NEWLINE]
    body = torch.randint(1000, vocab, (length - len(head) - len(tail),),
                         generator=torch.Generator().manual_seed(seed)).tolist()
    return torch.tensor([head + body + tail])


def median_time(fn: Callable[[], Any], repeats: int, sync: Callable[[], None]) -> float:
    times = []
    for _ in range(repeats):
        sync()
        start = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def synchronizer(device: torch.device) -> Callable[[], None]:
    return torch.cuda.synchronize if device.type == "cuda" else (lambda: None)


def peak_memory_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2 ** 20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024       # Linux: KiB


def measure_bandwidth(device: torch.device, megabytes: int = 1024, repeats: int = 5) -> float:
    """Streaming read bandwidth in GB/s: the best of a few sums over a buffer far larger than the caches."""
    buffer = torch.ones(megabytes * 2 ** 20 // 4, dtype=torch.float32, device=device)
    sync = synchronizer(device)
    buffer.sum()
    best = float("inf")
    for _ in range(repeats):
        sync()
        start = time.perf_counter()
        buffer.sum()
        sync()
        best = min(best, time.perf_counter() - start)
    return buffer.nbytes / best / 1e9


def active_decode_bytes(config: dict[str, Any], bytes_per_param: int) -> int:
    """Weight bytes one thinker decode step must read: attention, norms, router, the top-k experts, lm_head
    and one embedding row (the KV cache is small next to these)."""
    text = config["thinker_config"]["text_config"]
    H, L, V = text["hidden_size"], text["num_hidden_layers"], text["vocab_size"]
    heads, kv, D = text["num_attention_heads"], text["num_key_value_heads"], text.get("head_dim") or H // text[
        "num_attention_heads"]
    attention = H * heads * D * 2 + H * kv * D * 2 + 2 * D
    experts = text["num_experts_per_tok"] * 3 * H * text["moe_intermediate_size"]
    router = text["num_experts"] * H
    per_layer = attention + experts + router + 2 * H
    return (L * per_layer + V * H + H + H) * bytes_per_param
