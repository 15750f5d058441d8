"""``edgeres bench``: on-device latency against the FP32 reference, fair by construction.

Methodology (trtexec / MLPerf style):

* one iteration = the backend's ``run`` + ``synchronize``, timed on the host wall
  clock: end-to-end latency as an application sees it, H2D/D2H copies included
  on GPUs (settings say so per side); CUDA events give H2D, compute and D2H
  separately where the backend can split them (torch on CUDA);
* warm-up by time (200 ms) and iterations (5); measurement by time (3 s per
  side) and iterations (10); inputs rotate over several distinct batches, never
  all zeros, and every backend of a run gets the same arrays;
* candidate and reference run alternately in rounds (A B A B ...); the speedup
  is reported per round with a distribution-free 95% interval of its median;
* nearest-rank percentiles, sample standard deviation, coefficient of variation
  with a warning (and what to do) above 2.5%;
* environment (device, driver, versions, CPU, Jetson power mode, clock locks) and,
  on Jetson, board power from the INA3221 rails during the measured windows.

Modules: :mod:`~edgeres.bench.stats` (pure statistics), :mod:`~edgeres.bench.timing`
(loops), :mod:`~edgeres.bench.backends` (onnxruntime, torch, tensorrt behind one
Protocol), :mod:`~edgeres.bench.runner` (one run), :mod:`~edgeres.bench.api`
(command-line-like entry), :mod:`~edgeres.bench.report` (table, JSON schema),
:mod:`~edgeres.bench.plot` (PNG), :mod:`~edgeres.bench.power`,
:mod:`~edgeres.bench.environment`. Importing this package loads numpy only.
"""

from __future__ import annotations

from edgeres.bench.stats import LatencyStats, SpeedupStats, latency_stats, speedup_stats
from edgeres.bench.timing import TimingConfig

__all__ = ["LatencyStats", "SpeedupStats", "TimingConfig", "bench_models", "run_benchmark", "latency_stats", "speedup_stats"]


def __getattr__(name: str):  # noqa: ANN202 - lazy re-exports keep `import edgeres.bench` light
    if name == "bench_models":
        from edgeres.bench.api import bench_models

        return bench_models
    if name == "run_benchmark":
        from edgeres.bench.runner import run_benchmark

        return run_benchmark
    raise AttributeError(f"module 'edgeres.bench' has no attribute {name!r}")
