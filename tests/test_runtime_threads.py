"""Thread safety and memory stability of the onnxruntime backend (the issue's 8x1,000 and 10,000-run checks)."""

from __future__ import annotations

import gc
import threading
import time

import numpy as np
import pytest

from tests._runtime_helpers import reference_onnx, resident_bytes, sample_batch
from edgeres.runtime import Engine

THREADS = 8
PER_THREAD = 1_000
SOAK_RUNS = 10_000
SOAK_MAX_GROWTH_BYTES = 5 * 1024 * 1024
DISTINCT_INPUTS = 16


@pytest.fixture(scope="module")
def onnx_path():
    return reference_onnx()


def test_8_threads_x_1000_inferences_match_single_threaded(onnx_path):
    inputs = [sample_batch(1 + i % 2, seed=i) for i in range(DISTINCT_INPUTS)]
    with Engine(onnx_path, intra_op_threads=1) as engine:
        expected = [engine.infer(x) for x in inputs]
        mismatches: list[str] = []
        errors: list[BaseException] = []
        counts = [0] * THREADS
        start = threading.Barrier(THREADS)

        def worker(t: int) -> None:
            try:
                start.wait()
                for k in range(PER_THREAD):
                    i = (t * 7 + k) % DISTINCT_INPUTS  # threads interleave different inputs and batch sizes
                    out = engine.infer(inputs[i])
                    if not np.array_equal(out, expected[i]):
                        mismatches.append(f"thread {t} run {k} input {i}: max diff {np.abs(out - expected[i]).max()}")
                    counts[t] += 1
            except BaseException as exc:  # reported below
                errors.append(exc)

        threads = [threading.Thread(target=worker, args=(t,)) for t in range(THREADS)]
        t0 = time.perf_counter()
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        seconds = time.perf_counter() - t0
    assert not errors, f"worker raised: {errors[:3]}"
    assert sum(counts) == THREADS * PER_THREAD, f"expected {THREADS * PER_THREAD} runs, got {sum(counts)}"
    assert not mismatches, f"{len(mismatches)} outputs differ from single-threaded results: {mismatches[:3]}"
    print(f"\n{THREADS}x{PER_THREAD} inferences in {seconds:.1f} s")


def test_soak_10000_inferences_resident_growth_under_5_mb(onnx_path):
    x = sample_batch(1, seed=5)
    with Engine(onnx_path, intra_op_threads=1) as engine:
        expected = engine.infer(x)
        for _ in range(500):  # warm-up: allocator arenas and caches reach their steady size
            engine.infer(x)
        gc.collect()
        before = resident_bytes()
        last = None
        for _ in range(SOAK_RUNS):
            last = engine.infer(x)
        gc.collect()
        after = resident_bytes()
    growth = after - before
    np.testing.assert_array_equal(last, expected, err_msg="output drifted during the soak")
    print(f"\nRSS before {before / 2**20:.1f} MiB, after {after / 2**20:.1f} MiB, growth {growth / 2**20:.2f} MiB")
    assert growth < SOAK_MAX_GROWTH_BYTES, f"resident memory grew {growth / 2**20:.2f} MiB over {SOAK_RUNS} runs (limit 5)"


def test_open_close_cycles_do_not_leak(onnx_path):
    x = sample_batch(1)
    for _ in range(3):
        with Engine(onnx_path) as e:
            e.infer(x)
    gc.collect()
    before = resident_bytes()
    for _ in range(20):
        with Engine(onnx_path) as e:
            e.infer_async(x).result()
    gc.collect()
    growth = resident_bytes() - before
    assert growth < SOAK_MAX_GROWTH_BYTES, f"20 open/infer/close cycles grew RSS by {growth / 2**20:.2f} MiB"
    alive = [t.name for t in threading.enumerate() if t.name.startswith("edgeres-ort")]
    assert not alive, f"close() left async worker threads running: {alive}"
