"""Warm-up, measurement and alternation loops, driven by fake backends and fake clocks."""

from __future__ import annotations

import itertools

import pytest

from tests.bench_fixtures import FakeBackend
from edgeres.bench.backends.base import Phases
from edgeres.bench.timing import TimingConfig, alternate, measure, measure_single, warm_up
from edgeres.errors import BenchError


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"duration_s": 0}, "--duration"),
        ({"duration_s": -1}, "--duration"),
        ({"min_iters": 0}, "--iterations"),
        ({"min_iters": -5}, "--iterations"),
        ({"rounds": 0}, "--rounds"),
        ({"warmup_ms": -1}, "--warmup"),
        ({"duration_s": float("nan")}, "--duration"),
    ],
)
def test_config_rejects_non_positive(kwargs: dict, message: str) -> None:
    with pytest.raises(BenchError, match=message):
        TimingConfig(**kwargs)


def test_per_round_split() -> None:
    assert TimingConfig(duration_s=3.0, min_iters=10).per_round(4) == (0.75, 3), "3 s over 4 rounds, ceil(10/4)=3 iterations"


def test_measure_runs_min_iters_even_when_time_is_up() -> None:
    backend = FakeBackend()
    clock = itertools.count(0, 10**9)  # every call advances one second: duration is always over
    samples = measure(backend, 3, 0.001, 7, clock_ns=lambda: next(clock))
    assert len(samples.e2e_ms) == 7, f"min_iters=7 must run 7 iterations, ran {len(samples.e2e_ms)}"
    assert backend.slots == [0, 1, 2, 0, 1, 2, 0], f"inputs rotate over the 3 buffers, got {backend.slots}"
    assert all(v == 1000.0 for v in samples.e2e_ms), f"each iteration spans one fake second, got {samples.e2e_ms[:3]}"


def test_measure_runs_until_duration() -> None:
    backend = FakeBackend()
    clock = itertools.count(0, 10**6)  # 1 ms per clock read, 2 reads per iteration
    samples = measure(backend, 2, 0.1, 1, clock_ns=lambda: next(clock))
    assert 45 <= len(samples.e2e_ms) <= 55, f"0.1 s at ~2 ms per iteration is ~50 iterations, got {len(samples.e2e_ms)}"
    assert samples.window_s == pytest.approx(0.1, abs=0.003), f"window covers the duration, got {samples.window_s}"


def test_measure_records_device_phases() -> None:
    backend = FakeBackend(phases=Phases(h2d_ms=0.1, compute_ms=1.0, d2h_ms=0.05))
    samples = measure(backend, 1, 0.0, 5)
    assert samples.h2d_ms == [0.1] * 5 and samples.compute_ms == [1.0] * 5 and samples.d2h_ms == [0.05] * 5, "phases per iteration"
    cpu = measure(FakeBackend(), 1, 0.0, 5)
    assert cpu.h2d_ms == [] and cpu.compute_ms == [], "no phases on a backend that reports none"


def test_warm_up_by_time_and_iterations() -> None:
    backend = FakeBackend()
    assert warm_up(backend, 2, 0.0, 4) == 4, "zero warm-up time still runs the minimum iterations"
    clock = itertools.count(0.0, 0.01)  # 10 ms per read
    n = warm_up(FakeBackend(), 2, 200.0, 1, clock=lambda: next(clock))
    assert 18 <= n <= 21, f"200 ms at 10 ms per check is ~20 iterations, got {n}"


def test_alternate_order_and_rounds() -> None:
    log: list[str] = []
    ref, cand = FakeBackend("R", log=log), FakeBackend("C", log=log)
    config = TimingConfig(warmup_ms=0, min_warmup_iters=1, duration_s=1e-9, min_iters=4, rounds=4, round_warmup_iters=1)
    (ref_warm, ref_s), (cand_warm, cand_s) = alternate(ref, cand, 2, config)
    assert ref_warm == 1 and cand_warm == 1, "one warm-up iteration per side"
    # warm-up R, C; then per round: R (1 untimed + 1 timed), C (1 untimed + 1 timed)
    assert log == ["R", "C"] + ["R", "R", "C", "C"] * 4, f"A B A B alternation, got {log}"
    assert len(ref_s.round_medians_ms) == 4 and len(cand_s.round_medians_ms) == 4, "one median per round per side"
    assert len(ref_s.e2e_ms) == 4 and len(ref_s.windows) == 4, "pooled samples and one window per round"


def test_measure_single() -> None:
    warm, samples = measure_single(FakeBackend(), 2, TimingConfig(warmup_ms=0, min_warmup_iters=3, duration_s=1e-9, min_iters=6))
    assert warm == 3 and len(samples.e2e_ms) == 6 and len(samples.round_medians_ms) == 1, "single side: one round"
