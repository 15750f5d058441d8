"""Latency statistics: pure functions over samples, no timing and no I/O.

Percentiles use the nearest-rank definition (the smallest sample such that
at least p% of the samples are less than or equal to it), as trtexec and
MLPerf report them: every reported percentile is a latency that was really
observed, never an interpolation between two.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Sequence

import numpy as np

from edgeres.errors import BenchError

#: Coefficient of variation above which a measurement is flagged as unstable.
CV_WARN_THRESHOLD = 0.025

PERCENTILES = (90, 95, 99)


def percentile_nearest_rank(samples: Sequence[float] | np.ndarray, pct: float) -> float:
    """The nearest-rank ``pct`` percentile of ``samples`` (0 < pct <= 100).

    Raises:
        BenchError: no samples, or ``pct`` outside (0, 100].
    """
    values = np.sort(np.asarray(samples, dtype=np.float64).ravel())
    if values.size == 0:
        raise BenchError("cannot take a percentile of zero samples; measure at least one iteration")
    if not 0 < pct <= 100:
        raise BenchError(f"percentile must be in (0, 100], received {pct}")
    rank = max(1, math.ceil(pct / 100.0 * values.size))
    return float(values[rank - 1])


@dataclasses.dataclass(frozen=True)
class LatencyStats:
    """Summary of latency samples, in milliseconds.

    ``std_ms`` is the sample standard deviation (ddof=1, 0 for one sample);
    ``cv`` is std/mean. ``throughput_per_s`` is inferences (samples times
    batch size) per second of the measured window when the window is known,
    else batch size / mean latency.
    """

    count: int
    min_ms: float
    mean_ms: float
    median_ms: float
    p90_ms: float
    p95_ms: float
    p99_ms: float
    max_ms: float
    std_ms: float
    cv: float
    throughput_per_s: float

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @property
    def unstable(self) -> bool:
        """True when the coefficient of variation exceeds :data:`CV_WARN_THRESHOLD`."""
        return self.cv > CV_WARN_THRESHOLD


def latency_stats(
    samples_ms: Sequence[float] | np.ndarray,
    *,
    batch_size: int = 1,
    window_s: float | None = None,
) -> LatencyStats:
    """Summarize per-iteration latencies (ms).

    Args:
        samples_ms: one latency per iteration, milliseconds.
        batch_size: inferences per iteration, for throughput.
        window_s: wall time of the whole measured window (seconds); throughput
            is ``count * batch_size / window_s`` when given (what trtexec
            reports), else ``batch_size / mean``.

    Raises:
        BenchError: no samples, or a negative or non-finite sample.
    """
    values = np.asarray(samples_ms, dtype=np.float64).ravel()
    if values.size == 0:
        raise BenchError("no latency samples; the measurement needs at least one iteration")
    if not np.all(np.isfinite(values)) or np.any(values < 0):
        raise BenchError(f"latency samples must be finite and non-negative, received min {values.min()}")
    mean = float(values.mean())
    std = float(values.std(ddof=1)) if values.size > 1 else 0.0
    if window_s is not None and window_s > 0:
        throughput = values.size * batch_size / window_s
    else:
        throughput = batch_size * 1000.0 / mean if mean > 0 else math.inf
    return LatencyStats(
        count=int(values.size),
        min_ms=float(values.min()),
        mean_ms=mean,
        median_ms=percentile_nearest_rank(values, 50),
        p90_ms=percentile_nearest_rank(values, 90),
        p95_ms=percentile_nearest_rank(values, 95),
        p99_ms=percentile_nearest_rank(values, 99),
        max_ms=float(values.max()),
        std_ms=std,
        cv=std / mean if mean > 0 else 0.0,
        throughput_per_s=float(throughput),
    )


def median_confidence_interval(samples: Sequence[float] | np.ndarray, confidence: float = 0.95) -> tuple[float, float]:
    """Distribution-free confidence interval of the median (binomial order statistics).

    Returns the pair of order statistics (x_(j), x_(k)) with the narrowest
    symmetric ranks whose coverage P(j <= B < k), B ~ Binomial(n, 1/2), reaches
    ``confidence``; with too few samples for that coverage, (min, max).
    """
    values = np.sort(np.asarray(samples, dtype=np.float64).ravel())
    n = values.size
    if n == 0:
        raise BenchError("cannot bound the median of zero samples")
    if not 0 < confidence < 1:
        raise BenchError(f"confidence must be in (0, 1), received {confidence}")
    cdf = np.cumsum([math.comb(n, i) for i in range(n + 1)], dtype=np.float64) / 2.0**n
    # Coverage of [x_(j), x_(n+1-j)] (1-based) is P(j <= B <= n-j) = cdf[n-j] - cdf[j-1].
    best = (float(values[0]), float(values[-1]))
    for j in range(1, n // 2 + 1):
        coverage = cdf[n - j] - cdf[j - 1]
        if coverage < confidence:
            break
        best = (float(values[j - 1]), float(values[n - j]))
    return best


@dataclasses.dataclass(frozen=True)
class SpeedupStats:
    """Reference-over-candidate latency ratio, one value per alternated round.

    ``median`` > 1 means the candidate is faster. ``ci_low``/``ci_high`` are
    the 95% distribution-free interval of the median ratio; ``cv`` is the
    spread of the per-round ratios.
    """

    rounds: int
    per_round: tuple[float, ...]
    median: float
    min: float
    max: float
    ci_low: float
    ci_high: float
    cv: float

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["per_round"] = list(self.per_round)
        return d


def speedup_stats(reference_round_ms: Sequence[float], candidate_round_ms: Sequence[float]) -> SpeedupStats:
    """Per-round speedups ``reference / candidate`` from per-round median latencies.

    Raises:
        BenchError: the two sides have different round counts, none, or a non-positive latency.
    """
    ref = np.asarray(reference_round_ms, dtype=np.float64).ravel()
    cand = np.asarray(candidate_round_ms, dtype=np.float64).ravel()
    if ref.size != cand.size or ref.size == 0:
        raise BenchError(
            f"speedup needs the same positive number of rounds on both sides, received {ref.size} and {cand.size}"
        )
    if np.any(ref <= 0) or np.any(cand <= 0):
        raise BenchError("per-round latencies must be positive to form a speedup")
    ratios = ref / cand
    low, high = median_confidence_interval(ratios)
    mean = float(ratios.mean())
    std = float(ratios.std(ddof=1)) if ratios.size > 1 else 0.0
    return SpeedupStats(
        rounds=int(ratios.size),
        per_round=tuple(float(r) for r in ratios),
        median=float(np.median(ratios)),
        min=float(ratios.min()),
        max=float(ratios.max()),
        ci_low=low,
        ci_high=high,
        cv=std / mean if mean > 0 else 0.0,
    )


def stability_advice(cv: float, *, on_jetson: bool, clocks_locked: bool | None) -> str | None:
    """The warning printed when ``cv`` exceeds the threshold, with what to do; None if stable."""
    if cv <= CV_WARN_THRESHOLD:
        return None
    advice = [f"latency varies by {cv:.1%} (coefficient of variation > {CV_WARN_THRESHOLD:.1%}); results are noisy"]
    if on_jetson:
        advice.append("run `sudo nvpmodel -m 0` and `sudo jetson_clocks` to fix the power mode and lock clocks")
    elif clocks_locked is False:
        advice.append("lock clocks (GPU: `sudo nvidia-smi -lgc <max>`; CPU: performance governor)")
    advice.append("close other workloads and measure longer (--duration)")
    return "; ".join(advice)
