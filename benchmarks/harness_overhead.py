"""Does ``edgeres bench`` report the latency a bare timing loop sees? Target: medians within 2%.

In one process, on one loaded onnxruntime session, rounds alternate between
a bare loop (``perf_counter_ns`` around ``session.run``, nothing else) and
edgeres' measurement path (:func:`edgeres.bench.timing.measure` through the
backend interface, summarized by :func:`edgeres.bench.stats.latency_stats`,
exactly what ``edgeres bench`` reports). The overhead is the median over
rounds of (harness median / bare median - 1). Writes JSON and exits 1 when
the target is missed. The default models are fast (sub-millisecond to ~1 ms on
a CPU) because a fixed per-iteration overhead weighs most there; slower models
(``--models resnet18``) only add machine noise to the comparison.

    python benchmarks/harness_overhead.py [--models resnet20,resnet56] [--rounds 30] [--duration 0.3]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from _common import fp32_onnx

TARGET = 0.02


def bare_samples_ms(session, input_name: str, output_name: str, buffers: list[np.ndarray], duration_s: float) -> list[float]:
    samples = []
    end = time.perf_counter_ns() + int(duration_s * 1e9)
    i = 0
    while True:
        t0 = time.perf_counter_ns()
        session.run([output_name], {input_name: buffers[i % len(buffers)]})
        t1 = time.perf_counter_ns()
        samples.append((t1 - t0) / 1e6)
        i += 1
        if t1 >= end and len(samples) >= 10:
            return samples


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="resnet20,resnet56")
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--duration", type=float, default=0.3, help="seconds per side per round")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default="out/harness_overhead.json")
    args = parser.parse_args()

    from edgeres.bench.backends import BackendOptions, create_backend
    from edgeres.bench.inputs import InputSource
    from edgeres.bench.stats import latency_stats
    from edgeres.bench.timing import measure, warm_up

    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for arch in args.models.split(","):
            path, shape = fp32_onnx(arch, Path(tmp))
            backend = create_backend(path, options=BackendOptions(threads=args.threads))
            backend.load()
            buffers = InputSource().batches(shape, args.batch, 4)
            backend.prepare(buffers)
            session, in_name, out_name = backend._session, backend._input_name, backend._output_name
            warm_up(backend, 4, 500.0, 10)
            ratios, bare_pool, harness_pool = [], [], []
            for r in range(args.rounds):
                order = ("bare", "harness") if r % 2 == 0 else ("harness", "bare")
                got = {}
                for side in order:
                    if side == "bare":
                        got[side] = bare_samples_ms(session, in_name, out_name, buffers, args.duration)
                    else:
                        got[side] = measure(backend, 4, args.duration, 10).e2e_ms
                bare_pool += got["bare"]
                harness_pool += got["harness"]
                ratios.append(latency_stats(got["harness"]).median_ms / float(np.median(got["bare"])) - 1)
            backend.close()
            # edgeres' reported median over all its rounds (latency_stats, as `edgeres bench` prints it)
            # against the plain numpy median of all bare-loop samples.
            harness_median = latency_stats(harness_pool, batch_size=args.batch).median_ms
            bare_median = float(np.median(bare_pool))
            overhead = harness_median / bare_median - 1
            row = {
                "model": arch, "batch": args.batch, "threads": args.threads, "rounds": args.rounds,
                "duration_per_round_s": args.duration, "bare_samples": len(bare_pool), "harness_samples": len(harness_pool),
                "bare_median_ms": bare_median, "harness_median_ms": harness_median, "overhead": overhead,
                "overhead_median_of_rounds": statistics.median(ratios), "overhead_per_round": ratios,
                "within_target": abs(overhead) <= TARGET,
            }
            results.append(row)
            print(f"{arch} batch {args.batch}: bare {bare_median:.4f} ms, edgeres {harness_median:.4f} ms "
                  f"({len(bare_pool)} and {len(harness_pool)} samples over {args.rounds} alternated rounds), overhead {overhead:+.2%} "
                  f"(median of rounds {row['overhead_median_of_rounds']:+.2%}, range {min(ratios):+.2%}..{max(ratios):+.2%}), target +-{TARGET:.0%}: "
                  f"{'met' if row['within_target'] else 'MISSED'}")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"target": TARGET, "results": results}, indent=2) + "\n")
    print(f"wrote {out}")
    return 0 if all(r["within_target"] for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
