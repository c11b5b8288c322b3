"""transformers' side of the benchmark: the reference model's own generate() on the same checkpoint.

The reference is sequential (spec §5.1): its first audio exists only when generate() returns, after the
whole answer, its speech and the decoding of all frames — so time to first audio = the whole call.
"""
from __future__ import annotations

import statistics
import time
from pathlib import Path
from typing import Any

import torch

from benchmarks.workloads import Workload, median_time, peak_memory_mb, prompt_ids, synchronizer


class ReferenceSide:
    def __init__(self, folder: Path, dtype: torch.dtype, device: torch.device) -> None:
        from transformers import Qwen3OmniMoeForConditionalGeneration

        started = time.perf_counter()
        self.model = Qwen3OmniMoeForConditionalGeneration.from_pretrained(folder, dtype=dtype).to(device).eval()
        if self.model.config.enable_audio_output:   # spec §7.2-1 workaround (harmless for these prompts)
            self.model.talker.config.audio_config = self.model.config.thinker_config.audio_config
        self.load_seconds = time.perf_counter() - started
        self.device = device
        self.sync = synchronizer(device)

    def _ids(self, length: int, seeds: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        ids = torch.cat([prompt_ids(length, s) for s in seeds]).to(self.device)
        return ids, torch.ones_like(ids)

    @torch.no_grad()
    def _text(self, ids: torch.Tensor, mask: torch.Tensor, tokens: int) -> None:
        self.model.thinker.generate(input_ids=ids, attention_mask=mask, max_new_tokens=tokens,
                                    min_new_tokens=tokens, do_sample=False)

    @torch.no_grad()
    def measure(self, work: Workload) -> dict[str, Any]:
        out: dict[str, Any] = {"load_s": self.load_seconds}
        for batch in (1, 8):                                                                   # warm-up
            self._text(*self._ids(work.prompt_tokens, [90 + i for i in range(batch)]), 3)
        ids, mask = self._ids(work.prompt_tokens, [98])
        self.model.generate(input_ids=ids, attention_mask=mask, thinker_max_new_tokens=3, thinker_min_new_tokens=3,
                            thinker_do_sample=False, talker_do_sample=False, talker_max_new_tokens=5,
                            talker_min_new_tokens=5)                                             # speech warm-up
        ids, mask = self._ids(work.prefill_tokens, [1])
        prefill = median_time(lambda: self.model.thinker(input_ids=ids, attention_mask=mask, use_cache=True),
                              work.repeats, self.sync)
        out["prefill_tok_s"] = work.prefill_tokens / prefill
        short = self._ids(work.prompt_tokens, [2])
        first = median_time(lambda: self._text(*short, 1), work.repeats, self.sync)
        out["first_text_ms"] = 1000 * first
        for batch in (1, 8):
            rates = []
            for r in range(work.repeats):
                batch_ids = self._ids(work.prompt_tokens, [10 + r * 8 + i for i in range(batch)])
                one = median_time(lambda: self._text(*batch_ids, 1), 1, self.sync)
                full = median_time(lambda: self._text(*batch_ids, work.decode_tokens), 1, self.sync)
                rates.append(batch * (work.decode_tokens - 1) / max(full - one, 1e-9))
            out[f"decode_b{batch}_tok_s"] = statistics.median(rates)
        totals, samples = [], 0
        for r in range(work.repeats):
            ids, mask = self._ids(work.prompt_tokens, [3 + r])
            self.sync()
            start = time.perf_counter()
            _, wav = self.model.generate(
                input_ids=ids, attention_mask=mask, speaker="ethan", thinker_max_new_tokens=work.answer_tokens,
                thinker_min_new_tokens=work.answer_tokens, thinker_do_sample=False, talker_do_sample=False,
                talker_max_new_tokens=work.speech_frames + 1, talker_min_new_tokens=work.speech_frames + 1)
            self.sync()
            totals.append(time.perf_counter() - start)
            samples = wav.shape[-1]
        out["first_audio_ms"] = 1000 * statistics.median(totals)     # nothing is audible before the end
        out["speech_seconds"] = samples / 24000
        out["speech_total_s"] = statistics.median(totals)
        out["speech_rtf"] = out["speech_total_s"] / out["speech_seconds"]
        out["peak_memory_mb"] = peak_memory_mb(self.device)
        return out
