"""One benchmark run: candidate (and reference) over a batch-size sweep, with power and agreement.

Library entry point behind ``edgeres bench``; it prints nothing (progress
goes through the optional ``log`` callback) and returns a
:class:`BenchResult` that :mod:`edgeres.bench.report` renders.
"""

from __future__ import annotations

import dataclasses
import datetime
import math
from typing import Any, Callable, Sequence

import numpy as np

from edgeres.bench.backends.base import Backend
from edgeres.bench.inputs import InputSource
from edgeres.bench.power import EnergyReport, PowerSampler, power_sampler
from edgeres.bench.stats import LatencyStats, SpeedupStats, latency_stats, speedup_stats, stability_advice
from edgeres.bench.timing import Samples, TimingConfig, alternate, measure_single
from edgeres.errors import BenchError


@dataclasses.dataclass
class SideResult:
    """One side (candidate or reference) at one batch size."""

    warmup_iters: int
    samples: Samples
    e2e: LatencyStats
    h2d: LatencyStats | None
    compute: LatencyStats | None
    d2h: LatencyStats | None
    energy: EnergyReport | None


@dataclasses.dataclass
class BatchResult:
    batch_size: int
    candidate: SideResult
    reference: SideResult | None
    speedup: SpeedupStats | None
    agreement: dict[str, Any] | None
    warnings: list[str]


@dataclasses.dataclass
class BenchResult:
    """Everything one run measured, with the settings and environment in effect."""

    created_utc: str
    config: TimingConfig
    num_buffers: int
    inputs: dict[str, Any]
    candidate: dict[str, Any]
    reference: dict[str, Any] | None
    environment: dict[str, Any]
    results: list[BatchResult]
    power_source: str | None


def output_agreement(reference: np.ndarray, candidate: np.ndarray, labels: np.ndarray | None = None) -> dict[str, Any]:
    """Top-1 agreement, max abs error, cosine and SQNR of two logit arrays (N, classes), via
    :func:`edgeres.evaluate.compare_logits`; accuracies of both sides when ``labels`` are given."""
    from edgeres.evaluate import compare_logits

    n = len(reference)
    return compare_logits(reference.reshape(n, -1), candidate.reshape(len(candidate), -1), labels)


def check_batch_sizes(batch_sizes: Sequence[int], backends: dict[str, Backend]) -> None:
    """Every batch size positive and inside each backend's accepted range (checked before loading)."""
    if not batch_sizes:
        raise BenchError("no batch size given; pass --batch 1 or a list like --batch 1,8,32")
    for b in batch_sizes:
        if b < 1:
            raise BenchError(f"batch sizes must be at least 1, received {b}")
    for role, backend in backends.items():
        rng = backend.batch_range()
        if rng is None:
            continue
        bad = [b for b in batch_sizes if not rng[0] <= b <= rng[1]]
        if bad:
            what = "profile" if backend.name == "tensorrt" else "static batch"
            raise BenchError(
                f"batch size {bad[0]} is outside the {role}'s {what} [{rng[0]}, {rng[1]}] "
                f"({backend.settings().get('model')}); benchmark a batch in range or rebuild the model for it"
            )


def _side_result(warmup_iters: int, samples: Samples, batch_size: int, sampler: PowerSampler | None) -> SideResult:
    def phase(values: list[float]) -> LatencyStats | None:
        return latency_stats(values, batch_size=batch_size) if values else None

    energy = sampler.report(samples.windows, len(samples.e2e_ms) * batch_size) if sampler else None
    return SideResult(
        warmup_iters=warmup_iters,
        samples=samples,
        e2e=latency_stats(samples.e2e_ms, batch_size=batch_size, window_s=samples.window_s),
        h2d=phase(samples.h2d_ms),
        compute=phase(samples.compute_ms),
        d2h=phase(samples.d2h_ms),
        energy=energy,
    )


def _outputs(backend: Backend, num_slots: int) -> np.ndarray:
    outs = []
    for slot in range(num_slots):
        backend.run(slot)
        backend.synchronize()
        outs.append(backend.output().copy())
    return np.concatenate(outs)


def run_benchmark(
    candidate: Backend,
    reference: Backend | None = None,
    *,
    batch_sizes: Sequence[int] = (1,),
    config: TimingConfig = TimingConfig(),
    inputs: InputSource = InputSource(),
    num_buffers: int = 4,
    agreement_samples: int = 64,
    environment: dict[str, Any] | None = None,
    sysfs_root: str = "/",
    log: Callable[[str], None] | None = None,
) -> BenchResult:
    """Benchmark ``candidate`` (against ``reference`` in alternated rounds) at each batch size.

    Args:
        candidate: the backend under test (not loaded yet).
        reference: the FP32 reference backend, or None for latency only.
        batch_sizes: the sweep.
        config: warm-up and measurement settings.
        inputs: where the rotating input batches come from (the same arrays reach both sides).
        num_buffers: how many distinct input batches rotate.
        agreement_samples: samples (at least; whole batches, at least the rotating buffers) on which
            both sides' outputs are compared after timing.
        environment: the recorded environment (collected here when None).
        sysfs_root: root of the power-rail and clock files (tests pass a fake tree).
        log: progress callback.

    Raises:
        BenchError: a bad batch size, buffer count or input shape; backend errors pass through.
    """
    from edgeres.bench.environment import collect_environment

    say = log or (lambda _msg: None)
    if num_buffers < 1:
        raise BenchError(f"--buffers must be at least 1, received {num_buffers}")
    sides: dict[str, Backend] = {"candidate": candidate}
    if reference is not None:
        sides["reference"] = reference
    check_batch_sizes(batch_sizes, sides)
    loaded: list[Backend] = []
    try:
        for role, backend in sides.items():
            say(f"- load {role}: {backend.name} {backend.settings().get('model')}")
            backend.load()
            loaded.append(backend)
        shapes = {role: b.input_shape() for role, b in sides.items() if b.input_shape() is not None}
        if not shapes:
            raise BenchError("cannot tell the model's input shape (C, H, W); use an ONNX model or an architecture name")
        if len(set(shapes.values())) > 1:
            raise BenchError(f"candidate and reference take different inputs: {shapes}; compare models of the same recipe")
        sample_shape = next(iter(shapes.values()))
        env = environment if environment is not None else collect_environment(sysfs_root)
        if candidate.name == "tensorrt":  # a plan on the device: say what makes its numbers incomparable
            for warning in (env.get("doctor") or {}).get("warnings", []):
                say(f"warning: {warning}")
        on_jetson = env.get("jetson") is not None
        locked = env.get("clocks_locked", {}).get("gpu") if on_jetson else env.get("clocks_locked", {}).get("cpu")
        results = []
        power_source = None
        for batch_size in batch_sizes:
            batches = inputs.batches(sample_shape, batch_size, num_buffers)
            for backend in sides.values():
                backend.prepare(batches)
            sampler = power_sampler(sysfs_root)
            say(f"- batch {batch_size}: measure " + ("reference and candidate alternately" if reference else "candidate")
                + f" ({config.duration_s:g} s each)")
            if sampler is not None:
                sampler.__enter__()
            try:
                if reference is not None:
                    (ref_warm, ref_samples), (cand_warm, cand_samples) = alternate(reference, candidate, num_buffers, config)
                else:
                    cand_warm, cand_samples = measure_single(candidate, num_buffers, config)
            finally:
                if sampler is not None:
                    sampler.__exit__(None, None, None)
                    power_source = sampler.method
            cand = _side_result(cand_warm, cand_samples, batch_size, sampler)
            ref = _side_result(ref_warm, ref_samples, batch_size, sampler) if reference is not None else None
            speedup = agreement = None
            if ref is not None:
                speedup = speedup_stats(ref.samples.round_medians_ms, cand.samples.round_medians_ms)
                count = max(num_buffers, math.ceil(agreement_samples / batch_size))
                agree_batches = inputs.batches(sample_shape, batch_size, count)
                for backend in sides.values():
                    backend.prepare(agree_batches)
                agreement = output_agreement(_outputs(reference, count), _outputs(candidate, count),
                                             inputs.batch_labels(batch_size, count))
            warnings = []
            for role, side in (("candidate", cand), ("reference", ref)):
                if side is None:
                    continue
                advice = stability_advice(side.e2e.cv, on_jetson=on_jetson, clocks_locked=locked)
                if advice:
                    warnings.append(f"batch {batch_size} {role}: {advice}")
            results.append(BatchResult(batch_size, cand, ref, speedup, agreement, warnings))
        settings = {role: b.settings() for role, b in sides.items()}
    finally:
        for backend in loaded:
            backend.close()
    return BenchResult(
        created_utc=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        config=config,
        num_buffers=num_buffers,
        inputs=inputs.to_dict(),
        candidate=settings["candidate"],
        reference=settings.get("reference"),
        environment=env,
        results=results,
        power_source=power_source,
    )
