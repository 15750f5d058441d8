"""Warm-up, measurement and A/B alternation loops (trtexec/MLPerf methodology).

One iteration is timed on the host wall clock from just before
:meth:`Backend.run` to just after :meth:`Backend.synchronize` returns: that is
the end-to-end latency an application sees (copies included where the
backend's settings say so). Device-timed phases come from the backend.
Inputs rotate over several buffers so one cached batch does not flatter
the result.
"""

from __future__ import annotations

import dataclasses
import math
import time
from typing import Callable

from edgeres.bench.backends.base import Backend
from edgeres.errors import BenchError


@dataclasses.dataclass(frozen=True)
class TimingConfig:
    """How long to warm up and measure.

    Attributes:
        warmup_ms: warm-up wall time per side (trtexec default 200 ms).
        min_warmup_iters: warm-up iterations at least, whatever the time.
        duration_s: measured wall time per side (trtexec default 3 s), split over ``rounds``.
        min_iters: measured iterations per side at least (trtexec default 10).
        rounds: alternation rounds (A B A B ...) when comparing with a reference.
        round_warmup_iters: untimed iterations before each side's turn in a round,
            so the switch from the other model's caches is not measured.
    """

    warmup_ms: float = 200.0
    min_warmup_iters: int = 5
    duration_s: float = 3.0
    min_iters: int = 10
    rounds: int = 10
    round_warmup_iters: int = 2

    def __post_init__(self) -> None:
        checks = {  # field: (valid, requirement)
            "duration_s": (self.duration_s > 0 and math.isfinite(self.duration_s), "--duration must be a positive number of seconds"),
            "min_iters": (self.min_iters > 0, "--iterations must be at least 1"),
            "rounds": (self.rounds > 0, "--rounds must be at least 1"),
            "warmup_ms": (self.warmup_ms >= 0 and math.isfinite(self.warmup_ms), "--warmup must be 0 or more milliseconds"),
            "min_warmup_iters": (self.min_warmup_iters >= 0, "--warmup-iterations must be 0 or more"),
            "round_warmup_iters": (self.round_warmup_iters >= 0, "round warm-up iterations must be 0 or more"),
        }
        for name, (ok, requirement) in checks.items():
            if not ok:
                raise BenchError(f"{requirement}, received {getattr(self, name)}")

    def per_round(self, rounds: int) -> tuple[float, int]:
        """(seconds, minimum iterations) of one side's turn when the measurement is split in ``rounds``."""
        return self.duration_s / rounds, max(1, math.ceil(self.min_iters / rounds))


@dataclasses.dataclass
class Samples:
    """Per-iteration timings of one side, milliseconds; phase lists are empty where n/a."""

    e2e_ms: list[float] = dataclasses.field(default_factory=list)
    h2d_ms: list[float] = dataclasses.field(default_factory=list)
    compute_ms: list[float] = dataclasses.field(default_factory=list)
    d2h_ms: list[float] = dataclasses.field(default_factory=list)
    window_s: float = 0.0
    windows: list[tuple[float, float]] = dataclasses.field(default_factory=list)  # (start, end) perf_counter seconds
    round_medians_ms: list[float] = dataclasses.field(default_factory=list)

    def extend(self, other: "Samples") -> None:
        """Append another window's samples (for pooling alternated rounds)."""
        for name in ("e2e_ms", "h2d_ms", "compute_ms", "d2h_ms", "windows"):
            getattr(self, name).extend(getattr(other, name))
        self.window_s += other.window_s


def warm_up(backend: Backend, num_slots: int, warmup_ms: float, min_iters: int, clock: Callable[[], float] = time.perf_counter) -> int:
    """Run untimed iterations for ``warmup_ms`` and at least ``min_iters``; return how many ran."""
    end_s = clock() + warmup_ms / 1000.0
    count = 0
    while count < min_iters or clock() < end_s:
        backend.run(count % num_slots)
        backend.synchronize()
        count += 1
    return count


def measure(
    backend: Backend,
    num_slots: int,
    duration_s: float,
    min_iters: int,
    *,
    start_slot: int = 0,
    clock_ns: Callable[[], int] = time.perf_counter_ns,
) -> Samples:
    """Time iterations until ``duration_s`` has passed and at least ``min_iters`` ran.

    Each iteration's end-to-end latency is the host time of ``run`` plus
    ``synchronize``; device phases are recorded when the backend returns them.
    """
    samples = Samples()
    e2e = samples.e2e_ms
    slot = start_slot % num_slots
    start_ns = clock_ns()
    end_ns = start_ns + int(duration_s * 1e9)
    t1 = start_ns
    while True:
        t0 = clock_ns()
        backend.run(slot)
        phases = backend.synchronize()
        t1 = clock_ns()
        e2e.append((t1 - t0) / 1e6)
        if phases is not None:
            if phases.h2d_ms is not None:
                samples.h2d_ms.append(phases.h2d_ms)
            if phases.compute_ms is not None:
                samples.compute_ms.append(phases.compute_ms)
            if phases.d2h_ms is not None:
                samples.d2h_ms.append(phases.d2h_ms)
        slot = slot + 1 if slot + 1 < num_slots else 0
        if len(e2e) >= min_iters and t1 >= end_ns:
            break
    samples.window_s = (t1 - start_ns) / 1e9
    samples.windows.append((start_ns / 1e9, t1 / 1e9))
    return samples


def measure_single(backend: Backend, num_slots: int, config: TimingConfig) -> tuple[int, Samples]:
    """Warm up, then measure one backend for the whole duration; returns (warm-up iterations, samples)."""
    warmup_iters = warm_up(backend, num_slots, config.warmup_ms, config.min_warmup_iters)
    samples = measure(backend, num_slots, config.duration_s, config.min_iters)
    samples.round_medians_ms.append(_median(samples.e2e_ms))
    return warmup_iters, samples


def alternate(
    reference: Backend, candidate: Backend, num_slots: int, config: TimingConfig
) -> tuple[tuple[int, Samples], tuple[int, Samples]]:
    """Warm both up, then measure them in rounds: reference, candidate, reference, candidate, ...

    Each side's turn lasts ``duration_s / rounds`` (and at least
    ``ceil(min_iters / rounds)`` iterations) after ``round_warmup_iters``
    untimed iterations. Alternating spreads slow drifts (thermal throttling,
    other processes) over both sides instead of penalizing whichever ran last.

    Returns:
        ((reference warm-up iterations, samples), (candidate warm-up iterations, samples)),
        each with the per-round medians in ``round_medians_ms``.
    """
    warm = [warm_up(b, num_slots, config.warmup_ms, config.min_warmup_iters) for b in (reference, candidate)]
    pooled = [Samples(), Samples()]
    turn_s, turn_iters = config.per_round(config.rounds)
    for round_index in range(config.rounds):
        for side, backend in enumerate((reference, candidate)):
            for i in range(config.round_warmup_iters):
                backend.run(i % num_slots)
                backend.synchronize()
            window = measure(backend, num_slots, turn_s, turn_iters, start_slot=round_index)
            pooled[side].extend(window)
            pooled[side].round_medians_ms.append(_median(window.e2e_ms))
    return (warm[0], pooled[0]), (warm[1], pooled[1])


def _median(values: list[float]) -> float:
    from edgeres.bench.stats import percentile_nearest_rank

    return percentile_nearest_rank(values, 50)
