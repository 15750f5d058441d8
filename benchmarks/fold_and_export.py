"""What BN folding and ONNX export buy on the CPU, measured A/B in one run.

For resnet18 and resnet50 at batch 1 and 8:
  * torch eager FP32, unfolded vs BN-folded (same weights), alternated;
  * onnxruntime CPU FP32 on the exported folded model vs torch eager folded.
onnxruntime's thread pool does not spin between runs, so it cannot slow the torch
side that follows it. Each pair runs in alternating rounds (A B A B ...); a round times ``--iters``
calls after a warm-up, and the table shows the median per-call latency of each
side and the median of the per-round ratios. Results go to stdout and JSON.

Usage:
    python benchmarks/fold_and_export.py [--rounds 7] [--iters 5] [--json out/fold_and_export.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

import numpy as np
import onnxruntime as ort
import torch

import edgeres
from edgeres.export import INPUT_NAME, realistic_inputs
from edgeres.models import create_model
from edgeres.pipeline import onnx_from_model


def randomize_batchnorm(model: torch.nn.Module) -> torch.nn.Module:
    """Non-trivial BN statistics, so folding has real work to remove."""
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.copy_(torch.rand(m.num_features, generator=gen) * 0.2 - 0.1)
                m.running_var.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
    return model


def time_calls_ms(fn: Callable[[], object], iters: int) -> float:
    """Mean wall time of one call over ``iters`` back-to-back calls, in ms."""
    start_s = time.perf_counter()
    for _ in range(iters):
        fn()
    return (time.perf_counter() - start_s) * 1000.0 / iters


def alternate(a: Callable[[], object], b: Callable[[], object], rounds: int, iters: int, warmup: int) -> dict:
    """A/B alternated rounds: median latency of each side and median of per-round ratios b/a."""
    for _ in range(warmup):
        a()
        b()
    a_ms, b_ms = [], []
    for r in range(rounds):
        # swap the order every round so neither side always runs first
        if r % 2 == 0:
            a_ms.append(time_calls_ms(a, iters))
            b_ms.append(time_calls_ms(b, iters))
        else:
            b_ms.append(time_calls_ms(b, iters))
            a_ms.append(time_calls_ms(a, iters))
    ratios = [x / y for x, y in zip(a_ms, b_ms)]
    return {
        "a_median_ms": statistics.median(a_ms),
        "b_median_ms": statistics.median(b_ms),
        "speedup_median": statistics.median(ratios),
        "speedup_min": min(ratios),
        "speedup_max": max(ratios),
        "a_ms": a_ms,
        "b_ms": b_ms,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--archs", default="resnet18,resnet50")
    parser.add_argument("--batches", default="1,8")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--iters", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--json", type=Path, default=Path("out/fold_and_export.json"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for arch in args.archs.split(","):
            model = randomize_batchnorm(create_model(arch))
            onnx_path = Path(tmp) / f"{arch}.onnx"
            folded, _report = onnx_from_model(model, onnx_path, (3, 224, 224))
            opts = ort.SessionOptions()
            opts.intra_op_num_threads = args.threads
            # onnxruntime's pool otherwise spin-waits after each run and steals the cores torch runs on next
            opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
            session = ort.InferenceSession(str(onnx_path), opts, providers=["CPUExecutionProvider"])
            for batch in map(int, args.batches.split(",")):
                x_np = realistic_inputs((batch, 3, 224, 224))
                x = torch.from_numpy(x_np)

                def eager() -> object:
                    with torch.inference_mode():
                        return model(x)

                def eager_folded() -> object:
                    with torch.inference_mode():
                        return folded(x)

                def onnxruntime_folded() -> object:
                    return session.run(None, {INPUT_NAME: x_np})

                for name, a, b in (
                    ("torch unfolded -> folded", eager, eager_folded),
                    ("torch folded -> onnxruntime", eager_folded, onnxruntime_folded),
                ):
                    result = alternate(a, b, args.rounds, args.iters, args.warmup)
                    rows.append({"arch": arch, "batch": batch, "comparison": name, **result})
                    print(
                        f"{arch:9s} b{batch:<2d} {name:30s} A {result['a_median_ms']:8.2f} ms  "
                        f"B {result['b_median_ms']:8.2f} ms  speedup {result['speedup_median']:.3f}x "
                        f"[{result['speedup_min']:.3f}, {result['speedup_max']:.3f}]",
                        flush=True,
                    )
    report = {
        "benchmark": "fold_and_export",
        "edgeres_version": edgeres.__version__,
        "torch_version": torch.__version__,
        "onnxruntime_version": ort.__version__,
        "cpu": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "threads": args.threads,
        "rounds": args.rounds,
        "iters_per_round": args.iters,
        "rows": rows,
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.json}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
