"""`omnistream bench`: omnistream vs transformers on the same random weights, printed side by side.

For each shape: build (or reuse) the random checkpoint, run each side in its own subprocess (so peak memory
is each side's own and neither warms the other's caches), then print one table and optionally one JSON
object. Figures are medians of `repeats` runs (see workloads.py for what each one runs).

    omnistream bench                      # tiny shape, CPU, bf16
    omnistream bench --shape slice        # the real widths, 2 layers per component (minutes; ~10 GB RAM)
    omnistream bench --shape tiny slice --device cuda --json
    python -m benchmarks.bench ...        # the same, from a source checkout
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]

ROWS = [  # key, label, higher is better
    ("prefill_tok_s", "prefill tokens/s (512-token prompt)", True),
    ("decode_b1_tok_s", "decode tokens/s, batch 1", True),
    ("decode_b8_tok_s", "decode tokens/s, batch 8 (aggregate)", True),
    ("first_text_ms", "time to first text token, ms", False),
    ("first_audio_ms", "time to first audio chunk, ms", False),
    ("speech_rtf", "speech real-time factor (lower is better)", False),
    ("peak_memory_mb", "peak memory, MiB", False),
]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--shape", nargs="+", choices=["tiny", "slice"], default=["tiny"])
    parser.add_argument("--device", default="cpu", help="cpu or cuda (default: cpu)")
    parser.add_argument("--dtype", default="bfloat16", help="bfloat16 (default) or float32")
    parser.add_argument("--layers", type=int, default=2, help="layers per component of the slice shape")
    parser.add_argument("--repeats", type=int, help="runs per figure (median); default per shape")
    parser.add_argument("--answer-tokens", type=int, help="length of the spoken answer (default 100)")
    parser.add_argument("--compile", action="store_true", help="omnistream with torch.compile")
    parser.add_argument("--threads", type=int, help="CPU threads for both sides (default: torch's default); "
                                                   "use 1 on a machine shared with other jobs")
    parser.add_argument("--skip-reference", action="store_true", help="measure omnistream only")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    parser.add_argument("--side", choices=["ours", "reference", "bandwidth"], help=argparse.SUPPRESS)
    parser.add_argument("--folder", help=argparse.SUPPRESS)


def main(args: argparse.Namespace) -> int:
    if args.side:
        return _run_side(args)
    import torch

    from benchmarks import shapes
    from benchmarks.workloads import active_decode_bytes
    from omnistream.engine.config import resolve_device, resolve_dtype

    if args.threads:
        torch.set_num_threads(args.threads)
    dtype, device = resolve_dtype(args.dtype), resolve_device(args.device)
    # Measured in a child process: Linux keeps a process's peak RSS across fork+exec, so a big buffer here
    # would show up as the peak memory of both measured sides.
    bandwidth = _spawn(args, "bandwidth", Path("."), "tiny")["bandwidth_gb_s"]
    result: dict[str, Any] = {"device": str(device), "dtype": str(dtype).removeprefix("torch."),
                              "torch": torch.__version__, "threads": torch.get_num_threads(),
                              "bandwidth_gb_s": bandwidth, "shapes": {}}
    for shape in args.shape:
        folder = shapes.checkpoint(shape, dtype, args.layers)
        work = _workload(shape, args)
        sides = {"ours": _spawn(args, "ours", folder, shape)}
        if not args.skip_reference:
            sides["reference"] = _spawn(args, "reference", folder, shape)
        config = json.loads((folder / "config.json").read_text())
        active = active_decode_bytes(config, torch.finfo(dtype).bits // 8)
        result["shapes"][shape] = _summary(sides, active, bandwidth, work.as_dict())
    result.update(_headline(result["shapes"]))
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(format_table(result))
    return 0


def _workload(shape: str, args: argparse.Namespace):
    from benchmarks.workloads import WORKLOADS

    work = WORKLOADS[shape]
    if args.repeats:
        work = replace(work, repeats=args.repeats)
    if args.answer_tokens:
        work = replace(work, answer_tokens=args.answer_tokens, speech_frames=args.answer_tokens + 8)
    return work


def _spawn(args: argparse.Namespace, side: str, folder: Path, shape: str) -> dict[str, Any]:
    command = [sys.executable, "-m", "benchmarks.bench", "--side", side, "--folder", str(folder),
               "--shape", shape, "--device", args.device, "--dtype", args.dtype, "--layers", str(args.layers)]
    for flag, value in (("--repeats", args.repeats), ("--answer-tokens", args.answer_tokens)):
        if value:
            command += [flag, str(value)]
    if args.compile:
        command.append("--compile")
    print(f"[bench] {shape}: measuring {side} ...", file=sys.stderr, flush=True)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    if args.threads:
        env["OMP_NUM_THREADS"] = str(args.threads)
        command += ["--threads", str(args.threads)]
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{side} benchmark failed:\n{done.stderr[-4000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _run_side(args: argparse.Namespace) -> int:
    from omnistream.engine.config import resolve_device, resolve_dtype

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    dtype, device = resolve_dtype(args.dtype), resolve_device(args.device)
    work = _workload(args.shape[0], args)
    if args.side == "bandwidth":
        from benchmarks.workloads import measure_bandwidth
        figures = {"bandwidth_gb_s": measure_bandwidth(device)}
    elif args.side == "ours":
        from benchmarks.ours import OursSide
        figures = OursSide(Path(args.folder), dtype, device, args.compile).measure(work)
    else:
        from benchmarks.reference import ReferenceSide
        figures = ReferenceSide(Path(args.folder), dtype, device).measure(work)
    print(json.dumps(figures))
    return 0


def _summary(sides: dict[str, dict], active_bytes: int, bandwidth: float, work: dict) -> dict[str, Any]:
    ours, ref = sides["ours"], sides.get("reference")
    limit = bandwidth * 1e9 / active_bytes                         # tokens/s if weights streamed at full speed
    summary: dict[str, Any] = {**sides, "workload": work, "active_weight_bytes_per_token": active_bytes,
                               "bandwidth_limit_tok_s": limit,
                               "bandwidth_efficiency": ours["decode_b1_tok_s"] / limit,
                               "batch8_throughput_scaling": ours["decode_b8_tok_s"] / ours["decode_b1_tok_s"]}
    if ref:
        summary["reference_bandwidth_efficiency"] = ref["decode_b1_tok_s"] / limit
        summary["speedups"] = {key: (ours[key] / ref[key] if higher else ref[key] / ours[key])
                               for key, _, higher in ROWS}
    return summary


def _headline(shapes: dict[str, dict]) -> dict[str, Any]:
    """The tracked figures: from the slice shape when it ran, else the tiny one."""
    main = shapes.get("slice") or shapes.get("tiny") or {}
    speedups = main.get("speedups", {})
    out = {"headline_shape": "slice" if "slice" in shapes else "tiny",
           "decode_speedup_vs_reference": speedups.get("decode_b1_tok_s"),
           "first_audio_speedup_vs_reference": speedups.get("first_audio_ms"),
           "speech_rtf_speedup_vs_reference": speedups.get("speech_rtf"),
           "bandwidth_efficiency": main.get("bandwidth_efficiency"),
           "batch8_throughput_scaling": main.get("batch8_throughput_scaling")}
    if "tiny" in shapes:
        out["tiny_rtf"] = shapes["tiny"]["ours"]["speech_rtf"]
    return out


def format_table(result: dict[str, Any]) -> str:
    lines = [f"omnistream vs transformers — {result['device']}, {result['dtype']}, {result['threads']} threads, "
             f"measured read bandwidth {result['bandwidth_gb_s']:.1f} GB/s", ""]
    for shape, s in result["shapes"].items():
        ours, ref = s["ours"], s.get("reference")
        lines.append(f"[{shape}]  (workload {s['workload']})")
        lines.append(f"{'':44} {'omnistream':>12} {'transformers':>13} {'ratio':>8}")
        for key, label, _ in ROWS:
            theirs = f"{ref[key]:13.1f}" if ref else f"{'-':>13}"
            ratio = f"{s['speedups'][key]:7.1f}×" if ref else f"{'':>8}"
            lines.append(f"{label:44} {ours[key]:12.1f} {theirs} {ratio}")
        lines.append(f"{'decode efficiency vs bandwidth limit':44} {s['bandwidth_efficiency']:11.0%} "
                     f"{(format(s['reference_bandwidth_efficiency'], '12.0%') if ref else '-'):>13}   "
                     f"(limit {s['bandwidth_limit_tok_s']:.0f} tok/s = "
                     f"{s['active_weight_bytes_per_token'] / 1e6:.0f} MB/token)")
        lines.append(f"{'batch-8 aggregate / batch-1 decode':44} {s['batch8_throughput_scaling']:11.1f}×")
        lines.append(f"{'spoken answer':44} {ours['speech_seconds']:10.1f} s  (ratios: >1 means omnistream "
                     f"is better)")
        stages = ours.get("speech_stage_ms_per_frame")
        if stages:
            lines.append(f"{'omnistream ms per 80 ms frame, by stage':44} " +
                         ", ".join(f"{name} {ms:.1f}" for name, ms in stages.items()))
        lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench")
    add_arguments(parser)
    sys.exit(main(parser.parse_args()))
