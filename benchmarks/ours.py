"""omnistream's side of the benchmark: the engine driven step by step in this process (no thread)."""
from __future__ import annotations

import statistics
import time
from pathlib import Path
from typing import Any

import torch

from benchmarks.workloads import Workload, median_time, peak_memory_mb, prompt_ids, synchronizer
from omnistream.engine.config import EngineConfig
from omnistream.engine.defaults import GenerationDefaults
from omnistream.engine.engine import Engine
from omnistream.engine.events import AudioChunk, Done
from omnistream.inputs import ModelInputs, TokenIds
from omnistream.models.omni import OmniModel

SPECIAL_TOKENS = {"<|endoftext|>": 151643, "<|im_start|>": 151644, "<|im_end|>": 151645,
                  "<|vision_start|>": 151652, "<|vision_end|>": 151653, "<|image_pad|>": 151655,
                  "<|video_pad|>": 151656, "<|audio_start|>": 151669, "<|audio_end|>": 151670,
                  "<tts_pad>": 151671, "<tts_text_bos>": 151672, "<tts_text_eod>": 151673, "<|audio_pad|>": 151675}


class _SilentDecoder:
    """The benchmark has no tokenizer: text deltas stay empty (decoding cost is not what is measured)."""

    def push(self, token: int) -> str:
        return ""

    def flush(self) -> str:
        return ""


def _inputs(ids: torch.Tensor) -> ModelInputs:
    length = ids.shape[1]
    positions = torch.arange(length, dtype=torch.float32).view(1, 1, -1).expand(3, 1, -1).contiguous()
    return ModelInputs(input_ids=ids, attention_mask=torch.ones_like(ids), position_ids=positions,
                       rope_deltas=torch.zeros(1))


class OursSide:
    def __init__(self, folder: Path, dtype: torch.dtype, device: torch.device, compile: bool) -> None:
        started = time.perf_counter()
        self.model = OmniModel.from_pretrained(folder, dtype=dtype, device=device)
        self.load_seconds = time.perf_counter() - started
        self.device = device
        self.sync = synchronizer(device)
        config = self.model.config
        self.engine = Engine(self.model, text_decoder=_SilentDecoder, defaults=GenerationDefaults.from_dict(
            {}, config.im_end_token_id), token_ids=TokenIds.from_config(config, SPECIAL_TOKENS.get),
            config=EngineConfig(max_num_seqs=8, max_model_len=2048, first_audio_frames=1, audio_chunk_frames=4,
                                compile=compile))

    def _params(self, tokens: int, speech_frames: int | None = None):
        options: dict[str, Any] = dict(temperature=0, max_new_tokens=tokens, min_new_tokens=tokens)
        if speech_frames:
            options.update(talker_temperature=0, talker_max_new_tokens=speech_frames + 1,
                           talker_min_new_tokens=speech_frames + 1, return_audio=True)
        else:
            options["return_audio"] = False
        return self.engine.defaults.sampling_params(**options)

    def _run(self, prompts: list[torch.Tensor], tokens: int, speech_frames: int | None = None) -> dict[str, Any]:
        """Add the requests, step to the end; per-step times and first-event times."""
        engine = self.engine
        start = time.perf_counter()
        for i, ids in enumerate(prompts):
            engine.add_request(_inputs(ids), self._params(tokens, speech_frames), request_id=f"r{i}")
        steps, first_audio, done, samples = [], None, 0, 0
        while engine.has_work:
            step_start = time.perf_counter()
            events = engine.step()
            self.sync()
            now = time.perf_counter()
            steps.append(now - step_start)
            for event in events:
                if isinstance(event, AudioChunk):
                    samples += event.samples.shape[0]
                    first_audio = first_audio if first_audio is not None else now - start
                elif isinstance(event, Done):
                    done += 1
        return dict(total=time.perf_counter() - start, steps=steps, first_audio=first_audio, samples=samples)

    def measure(self, work: Workload) -> dict[str, Any]:
        out: dict[str, Any] = {"load_s": self.load_seconds}
        for batch in (1, 8):                     # warm-up (and, with --compile, compile both batch shapes)
            self._run([prompt_ids(work.prompt_tokens, 90 + i) for i in range(batch)], 3)
        self._run([prompt_ids(work.prompt_tokens, 98)], 3, 4)                              # speech warm-up
        prefill = median_time(lambda: self._run([prompt_ids(work.prefill_tokens, 1)], 1), work.repeats, self.sync)
        out["prefill_tok_s"] = work.prefill_tokens / prefill
        out["first_text_ms"] = 1000 * median_time(lambda: self._run([prompt_ids(work.prompt_tokens, 2)], 1),
                                                  work.repeats, self.sync)
        for batch in (1, 8):
            rates = []
            for r in range(work.repeats):
                run = self._run([prompt_ids(work.prompt_tokens, 10 + r * 8 + i) for i in range(batch)],
                                work.decode_tokens)
                rates.append(batch * (work.decode_tokens - 1) / sum(run["steps"][1:]))
            out[f"decode_b{batch}_tok_s"] = statistics.median(rates)
        self.engine.stage_seconds.clear()
        runs = [self._run([prompt_ids(work.prompt_tokens, 3 + r)], work.answer_tokens, work.speech_frames)
                for r in range(work.repeats)]
        frames = sum(r["samples"] for r in runs) / self.model.code2wav.total_upsample     # codec frames decoded
        out["speech_stage_ms_per_frame"] = {stage: 1000 * seconds / frames
                                            for stage, seconds in sorted(self.engine.stage_seconds.items())}
        out["first_audio_ms"] = 1000 * statistics.median(r["first_audio"] for r in runs)
        audio_seconds = runs[0]["samples"] / 24000
        out["speech_seconds"] = audio_seconds
        out["speech_total_s"] = statistics.median(r["total"] for r in runs)
        out["speech_rtf"] = out["speech_total_s"] / audio_seconds
        out["peak_memory_mb"] = peak_memory_mb(self.device)
        out["compiled"] = bool(self.engine.thinker._decode_forward.is_compiled)
        return out
