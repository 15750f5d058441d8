"""What edgeres.runtime's Engine costs over a bare onnxruntime session, and what threads give, in one run.

On the shipped reference model (ResNet-20, 1x28x28, real digits) at batch 1 and 8:
  * per-call latency of ``Engine.infer`` vs ``InferenceSession.run`` on the same
    session options, alternated in rounds (A B A B ...): median of each side and
    median of the per-round ratios (Engine / bare);
  * throughput of 1, 2 and 4 threads sharing one Engine (inferences per second).
Results go to stdout and, with ``--json``, to a file.

The TensorRT path needs a GPU and is not measured here.

Usage:
    python benchmarks/runtime_overhead.py [--rounds 7] [--iters 200] [--json out/runtime_overhead.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Callable

import numpy as np


def time_calls_ms(fn: Callable[[], object], iters: int) -> float:
    """Mean wall time of one call over ``iters`` back-to-back calls, in ms."""
    start_s = time.perf_counter()
    for _ in range(iters):
        fn()
    return (time.perf_counter() - start_s) * 1000.0 / iters


def alternate(a: Callable[[], object], b: Callable[[], object], rounds: int, iters: int) -> dict:
    """Alternated rounds: median ms of each side and the median per-round ratio b/a."""
    for _ in range(max(iters // 4, 5)):
        a()
        b()
    a_ms, b_ms = [], []
    for _ in range(rounds):
        a_ms.append(time_calls_ms(a, iters))
        b_ms.append(time_calls_ms(b, iters))
    return {
        "bare_ms": statistics.median(a_ms),
        "engine_ms": statistics.median(b_ms),
        "ratio_engine_over_bare": statistics.median(y / x for x, y in zip(a_ms, b_ms)),
    }


def threaded_throughput(engine, x: np.ndarray, threads: int, per_thread: int) -> float:
    """Inferences per second with ``threads`` threads calling one engine."""
    barrier = threading.Barrier(threads + 1)

    def work() -> None:
        barrier.wait()
        for _ in range(per_thread):
            engine.infer(x)

    workers = [threading.Thread(target=work) for _ in range(threads)]
    for w in workers:
        w.start()
    barrier.wait()
    start_s = time.perf_counter()
    for w in workers:
        w.join()
    return threads * per_thread / (time.perf_counter() - start_s)


def export_reference(folder: Path) -> Path:
    from edgeres.pipeline import export_model

    path = folder / "model.onnx"
    export_model(None, None, path)  # the shipped reference model, through the one front end
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--iters", type=int, default=200)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)

    import onnxruntime as ort

    from edgeres.reference import reference_data_path, reference_recipe
    from edgeres.runtime import Engine

    with np.load(reference_data_path()) as archive:
        images = archive["test_images"][:8]
    batch8 = reference_recipe().normalize_uint8_nhwc(images)
    results: dict = {"machine": {"python": sys.version.split()[0], "platform": platform.platform(),
                                 "cpus": os.cpu_count(), "onnxruntime": ort.__version__},
                     "latency": {}, "threads": {}}
    with tempfile.TemporaryDirectory() as tmp:
        path = export_reference(Path(tmp))
        options = ort.SessionOptions()
        options.log_severity_level = 3
        options.intra_op_num_threads = 1
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        with Engine(path, intra_op_threads=1) as engine:
            for batch in (1, 8):
                x = np.ascontiguousarray(batch8[:batch])
                row = alternate(lambda: session.run(None, {"input": x}), lambda: engine.infer(x),
                                args.rounds, args.iters)
                results["latency"][f"batch{batch}"] = row
                print(f"batch {batch}: bare {row['bare_ms']:.3f} ms, Engine {row['engine_ms']:.3f} ms, "
                      f"ratio {row['ratio_engine_over_bare']:.3f}")
            x1 = np.ascontiguousarray(batch8[:1])
            for threads in (1, 2, 4):
                ips = threaded_throughput(engine, x1, threads, max(args.iters * 2 // threads, 50))
                results["threads"][str(threads)] = ips
                print(f"{threads} thread(s): {ips:.0f} inferences/s (batch 1)")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
