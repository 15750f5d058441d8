"""Statistics against known distributions and exact small cases."""

from __future__ import annotations

import math

import numpy as np
import pytest

from edgeres.bench.stats import (
    CV_WARN_THRESHOLD,
    latency_stats,
    median_confidence_interval,
    percentile_nearest_rank,
    speedup_stats,
    stability_advice,
)
from edgeres.errors import BenchError


def test_nearest_rank_on_1_to_100() -> None:
    values = np.arange(1, 101, dtype=float)
    np.random.default_rng(0).shuffle(values)
    for pct, expected in ((50, 50), (90, 90), (95, 95), (99, 99), (100, 100), (0.5, 1), (90.5, 91)):
        got = percentile_nearest_rank(values, pct)
        assert got == expected, f"p{pct} of 1..100 must be {expected} (nearest rank), got {got}"


def test_percentile_is_an_observed_sample() -> None:
    values = [1.0, 2.0, 10.0]
    assert percentile_nearest_rank(values, 50) == 2.0, "median of 3 values is the middle one"
    assert percentile_nearest_rank(values, 90) == 10.0, "p90 of 3 values is the largest (rank ceil(2.7)=3)"


@pytest.mark.parametrize("bad", [0, -1, 101])
def test_percentile_rejects_out_of_range(bad: float) -> None:
    with pytest.raises(BenchError, match="percentile"):
        percentile_nearest_rank([1.0], bad)


def test_normal_distribution_quantiles() -> None:
    mu, sigma = 5.0, 0.5
    samples = np.random.default_rng(1).normal(mu, sigma, 200_000)
    s = latency_stats(samples)
    # Standard normal quantiles: 1.2816 (p90), 1.6449 (p95), 2.3263 (p99).
    for name, z in (("median_ms", 0.0), ("p90_ms", 1.2816), ("p95_ms", 1.6449), ("p99_ms", 2.3263)):
        expected = mu + z * sigma
        assert abs(getattr(s, name) - expected) < 0.02, f"{name} of N(5, 0.5) should be {expected:.3f}, got {getattr(s, name):.4f}"
    assert abs(s.mean_ms - mu) < 0.01, f"mean should be {mu}, got {s.mean_ms}"
    assert abs(s.std_ms - sigma) < 0.01, f"std should be {sigma}, got {s.std_ms}"
    assert abs(s.cv - sigma / mu) < 0.002, f"cv should be {sigma / mu}, got {s.cv}"
    assert s.unstable, "a 10% CV must be flagged unstable"


def test_exponential_distribution_quantiles() -> None:
    rate = 2.0  # per ms
    samples = np.random.default_rng(2).exponential(1 / rate, 200_000)
    s = latency_stats(samples)
    for name, pct in (("median_ms", 50), ("p90_ms", 90), ("p99_ms", 99)):
        expected = -math.log(1 - pct / 100) / rate
        assert abs(getattr(s, name) - expected) / expected < 0.03, f"{name} of Exp(2) should be {expected:.4f}, got {getattr(s, name):.4f}"


def test_uniform_min_max_and_throughput() -> None:
    samples = np.random.default_rng(3).uniform(2.0, 4.0, 50_000)
    s = latency_stats(samples, batch_size=8)
    assert 2.0 <= s.min_ms < 2.001 and 3.999 < s.max_ms <= 4.0, f"min/max of U(2,4): {s.min_ms}, {s.max_ms}"
    assert abs(s.throughput_per_s - 8 * 1000 / 3.0) < 5, f"throughput of batch 8 at mean 3 ms ~2667/s, got {s.throughput_per_s}"
    windowed = latency_stats([1.0, 1.0, 1.0, 1.0], batch_size=2, window_s=0.01)
    assert windowed.throughput_per_s == pytest.approx(800.0), "4 iterations x batch 2 in 10 ms is 800/s"


def test_constant_samples_are_stable() -> None:
    s = latency_stats([3.0] * 20)
    assert s.std_ms == 0 and s.cv == 0 and not s.unstable, "identical samples have zero spread"
    single = latency_stats([3.0])
    assert single.std_ms == 0 and single.count == 1, "one sample: std 0, count 1"


@pytest.mark.parametrize("bad", [[], [1.0, -0.5], [float("nan")]])
def test_latency_stats_rejects_bad_samples(bad: list[float]) -> None:
    with pytest.raises(BenchError):
        latency_stats(bad)


def test_median_ci_exact_small_case() -> None:
    # n=10: [x(2), x(9)] covers with 1 - 2*11/1024 = 0.9785; [x(3), x(8)] only 0.8906.
    assert median_confidence_interval(np.arange(1, 11)) == (2.0, 9.0), "95% CI of n=10 is (x(2), x(9))"
    assert median_confidence_interval([1.0, 2.0, 3.0]) == (1.0, 3.0), "too few samples: (min, max)"


def test_median_ci_coverage_by_simulation() -> None:
    rng = np.random.default_rng(4)
    trials, covered = 2000, 0
    for _ in range(trials):
        lo, hi = median_confidence_interval(rng.normal(0, 1, 15))
        covered += lo <= 0.0 <= hi
    rate = covered / trials
    assert 0.95 <= rate <= 0.995, f"95% median CI must cover the true median at least 95% of the time, covered {rate:.3f}"


def test_speedup_stats() -> None:
    s = speedup_stats([10.0, 10.0, 12.0, 10.0, 10.0], [5.0, 5.0, 5.0, 4.0, 5.0])
    assert s.per_round == (2.0, 2.0, 2.4, 2.5, 2.0), f"per-round ratios ref/cand, got {s.per_round}"
    assert s.median == 2.0 and s.min == 2.0 and s.max == 2.5, f"median/min/max of ratios, got {s}"
    assert s.ci_low <= s.median <= s.ci_high, "median inside its interval"
    with pytest.raises(BenchError, match="same positive number of rounds"):
        speedup_stats([1.0, 2.0], [1.0])
    with pytest.raises(BenchError, match="positive"):
        speedup_stats([1.0], [0.0])


def test_stability_advice() -> None:
    assert stability_advice(CV_WARN_THRESHOLD, on_jetson=True, clocks_locked=False) is None, "at the threshold: no warning"
    jetson = stability_advice(0.05, on_jetson=True, clocks_locked=False)
    assert jetson and "nvpmodel -m 0" in jetson and "jetson_clocks" in jetson, f"Jetson advice names the commands: {jetson}"
    desktop = stability_advice(0.05, on_jetson=False, clocks_locked=None)
    assert desktop and "5.0%" in desktop and "jetson_clocks" not in desktop, f"desktop advice: {desktop}"
