"""Render a :class:`~edgeres.bench.runner.BenchResult`: JSON (one stable, documented schema) and a table.

The JSON schema is documented in ``docs/bench_json.md``; :data:`SCHEMA` is its
machine-checkable form and :func:`validate_report` checks a report against
it. Bump :data:`SCHEMA_VERSION` on any change that renames or removes a key
(adding a key is compatible).
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

from edgeres.bench.runner import BatchResult, BenchResult, SideResult
from edgeres.bench.stats import LatencyStats
from edgeres.errors import BenchError

SCHEMA_VERSION = 1
FORMAT = "edgeres-bench"

# Declarative schema: a type (or tuple of types), a nested dict, a one-element
# list (every item matches it), or Optional[...] written as (schema, None).
_NUM = (int, float)
STATS_SCHEMA: dict[str, Any] = {
    "count": int, "min_ms": _NUM, "mean_ms": _NUM, "median_ms": _NUM, "p90_ms": _NUM, "p95_ms": _NUM,
    "p99_ms": _NUM, "max_ms": _NUM, "std_ms": _NUM, "cv": _NUM, "throughput_per_s": _NUM,
}
SETTINGS_SCHEMA: dict[str, Any] = {
    "backend": str, "model": str, "device": str,
    "transfers_included": (bool, None), "phases_separated": bool, "cuda_graphs": bool,
    "sync": (str, None), "host_memory": (str, None),
}
POWER_SCHEMA: dict[str, Any] = {
    "average_power_mw": _NUM, "energy_per_inference_mj": _NUM, "samples": int, "rails": [str], "method": str,
}
SIDE_SCHEMA: dict[str, Any] = {
    "warmup_iters": int,
    "iterations": int,
    "window_s": _NUM,
    "latency_ms": {
        "end_to_end": STATS_SCHEMA,
        "h2d": (STATS_SCHEMA, None),
        "compute": (STATS_SCHEMA, None),
        "d2h": (STATS_SCHEMA, None),
    },
    "round_median_ms": [_NUM],
    "power": (POWER_SCHEMA, None),
}
SPEEDUP_SCHEMA: dict[str, Any] = {
    "rounds": int, "per_round": [_NUM], "median": _NUM, "min": _NUM, "max": _NUM,
    "ci_low": _NUM, "ci_high": _NUM, "cv": _NUM,
}
AGREEMENT_SCHEMA: dict[str, Any] = {
    "top1_agreement": _NUM, "max_abs": _NUM, "cosine": _NUM, "sqnr_db": (_NUM, None), "samples": int,
    "accuracy_ref": (_NUM, None), "accuracy": (_NUM, None),
}
SCHEMA: dict[str, Any] = {
    "format": str,
    "schema_version": int,
    "edgeres_version": str,
    "created_utc": str,
    "config": {
        "warmup_ms": _NUM, "min_warmup_iters": int, "duration_s": _NUM, "min_iters": int, "rounds": int,
        "round_warmup_iters": int, "num_buffers": int, "batch_sizes": [int],
    },
    "inputs": {"description": str, "samples": (int, None), "seed": int},
    "candidate": SETTINGS_SCHEMA,
    "reference": (SETTINGS_SCHEMA, None),
    "environment": {
        "platform": str, "python": str, "machine": str, "cpu_model": (str, None), "cpu_count": (int, None),
        "cpu_affinity": (int, None), "libraries": dict, "gpu": (dict, None), "nvidia_driver": (str, None),
        "clocks_locked": {"cpu": (bool, None), "gpu": (bool, None)}, "jetson": (dict, None),
    },
    "power_source": (str, None),
    "results": [{
        "batch_size": int,
        "candidate": SIDE_SCHEMA,
        "reference": (SIDE_SCHEMA, None),
        "speedup": (SPEEDUP_SCHEMA, None),
        "agreement": (AGREEMENT_SCHEMA, None),
        "warnings": [str],
    }],
}


def _check(value: Any, schema: Any, where: str, errors: list[str]) -> None:
    if isinstance(schema, tuple) and schema[-1] is None:  # Optional
        if value is None:
            return
        schema = schema[0]
    if isinstance(schema, dict):
        if not isinstance(value, dict):
            errors.append(f"{where}: expected an object, received {type(value).__name__}")
            return
        for key, sub in schema.items():
            if key not in value:
                errors.append(f"{where}.{key}: missing")
            else:
                _check(value[key], sub, f"{where}.{key}", errors)
    elif isinstance(schema, list):
        if not isinstance(value, list):
            errors.append(f"{where}: expected a list, received {type(value).__name__}")
            return
        for i, item in enumerate(value):
            _check(item, schema[0], f"{where}[{i}]", errors)
    else:
        types = schema if isinstance(schema, tuple) else (schema,)
        if isinstance(value, bool) and bool not in types:
            errors.append(f"{where}: expected {'/'.join(t.__name__ for t in types)}, received bool")
        elif not isinstance(value, types):
            errors.append(f"{where}: expected {'/'.join(t.__name__ for t in types)}, received {type(value).__name__}")


def validate_report(report: dict[str, Any]) -> list[str]:
    """Schema violations of ``report`` (empty when it conforms to :data:`SCHEMA`)."""
    errors: list[str] = []
    _check(report, SCHEMA, "$", errors)
    if not errors and (report["format"] != FORMAT or report["schema_version"] != SCHEMA_VERSION):
        errors.append(f"$: expected format {FORMAT!r} version {SCHEMA_VERSION}, "
                      f"received {report['format']!r} version {report['schema_version']}")
    return errors


def _finite(value: Any) -> Any:
    """``value`` with every non-finite float replaced by None (strict JSON has no inf/NaN)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def _stats(stats: LatencyStats | None) -> dict[str, Any] | None:
    return None if stats is None else stats.to_dict()


def _side(side: SideResult | None) -> dict[str, Any] | None:
    if side is None:
        return None
    return {
        "warmup_iters": side.warmup_iters,
        "iterations": side.e2e.count,
        "window_s": side.samples.window_s,
        "latency_ms": {
            "end_to_end": _stats(side.e2e),
            "h2d": _stats(side.h2d),
            "compute": _stats(side.compute),
            "d2h": _stats(side.d2h),
        },
        "round_median_ms": list(side.samples.round_medians_ms),
        "power": side.energy.to_dict() if side.energy else None,
    }


def _batch(result: BatchResult) -> dict[str, Any]:
    return {
        "batch_size": result.batch_size,
        "candidate": _side(result.candidate),
        "reference": _side(result.reference),
        "speedup": result.speedup.to_dict() if result.speedup else None,
        "agreement": result.agreement,
        "warnings": list(result.warnings),
    }


def report_dict(result: BenchResult) -> dict[str, Any]:
    """The JSON-ready report (see docs/bench_json.md)."""
    from edgeres import __version__

    cfg = result.config
    return _finite({
        "format": FORMAT,
        "schema_version": SCHEMA_VERSION,
        "edgeres_version": __version__,
        "created_utc": result.created_utc,
        "config": {
            "warmup_ms": cfg.warmup_ms,
            "min_warmup_iters": cfg.min_warmup_iters,
            "duration_s": cfg.duration_s,
            "min_iters": cfg.min_iters,
            "rounds": cfg.rounds if result.reference is not None else 1,
            "round_warmup_iters": cfg.round_warmup_iters,
            "num_buffers": result.num_buffers,
            "batch_sizes": [r.batch_size for r in result.results],
        },
        "inputs": result.inputs,
        "candidate": result.candidate,
        "reference": result.reference,
        "environment": result.environment,
        "power_source": result.power_source,
        "results": [_batch(r) for r in result.results],
    })


def write_json(result: BenchResult, path: str | os.PathLike[str]) -> Path:
    """Write the report to ``path`` atomically; refuses to write a report that breaks its own schema."""
    from edgeres._io import write_text_atomic

    data = report_dict(result)
    errors = validate_report(data)
    if errors:
        raise BenchError(f"internal error: report does not match schema v{SCHEMA_VERSION}: {errors[:3]}")
    return write_text_atomic(path, json.dumps(data, indent=2, allow_nan=False) + "\n")


def _ms(value: float | None) -> str:
    if value is None:
        return "n/a"
    return f"{value:.3f}" if value < 10 else f"{value:.2f}" if value < 100 else f"{value:.1f}"


def _settings_line(settings: dict[str, Any]) -> str:
    keys = ("device", "precision", "execution_providers", "mode", "channels_last", "transfers_included",
            "cuda_graphs", "sync", "host_memory", "threads")
    parts = []
    for key in keys:
        if key in settings and settings[key] is not None:
            value = settings[key]
            parts.append(f"{key}={','.join(value) if isinstance(value, list) else value}")
    return " ".join(parts)


def render_table(result: BenchResult, console: Any = None) -> None:
    """Print latency, device phases and power, speedup, agreement, settings and warnings with rich."""
    from rich.console import Console
    from rich.table import Table

    if console is None:
        console = Console()
        if not console.is_terminal:
            console = Console(width=max(console.width, 132))
    rows = [(r.batch_size, role, side) for r in result.results
            for role, side in (("candidate", r.candidate), ("reference", r.reference)) if side is not None]
    table = Table(title="latency (ms): end-to-end = host wall clock around run + synchronize", title_justify="left")
    for col in ("batch", "side", "median", "mean", "p90", "p95", "p99", "min", "max", "std", "CV", "inferences/s"):
        table.add_column(col, justify="left" if col == "side" else "right")
    for batch_size, role, side in rows:
        e = side.e2e
        table.add_row(str(batch_size), role, _ms(e.median_ms), _ms(e.mean_ms), _ms(e.p90_ms), _ms(e.p95_ms),
                      _ms(e.p99_ms), _ms(e.min_ms), _ms(e.max_ms), _ms(e.std_ms), f"{e.cv:.1%}", f"{e.throughput_per_s:.1f}")
    console.print(table)
    if any(side.h2d or side.compute or side.d2h or side.energy for _, _, side in rows):
        phases = Table(title="device phases (median ms, CUDA events) and board power", title_justify="left")
        for col in ("batch", "side", "H2D", "compute", "D2H", "power (W)", "mJ/inference"):
            phases.add_column(col, justify="left" if col == "side" else "right")
        for batch_size, role, side in rows:
            phases.add_row(
                str(batch_size), role, *(_ms(s.median_ms) if s else "n/a" for s in (side.h2d, side.compute, side.d2h)),
                f"{side.energy.average_power_mw / 1000:.2f}" if side.energy else "n/a",
                f"{side.energy.energy_per_inference_mj:.2f}" if side.energy else "n/a",
            )
        console.print(phases)
    lines = [f"candidate: {result.candidate.get('backend')} {result.candidate.get('model')} ({_settings_line(result.candidate)})"]
    if result.reference:
        lines.append(f"reference: {result.reference.get('backend')} {result.reference.get('model')} ({_settings_line(result.reference)})")
    lines.append(f"inputs: {result.inputs.get('description')}, {result.num_buffers} rotating buffers")
    for r in result.results:
        if r.speedup:
            s = r.speedup
            lines.append(
                f"batch {r.batch_size}: speedup vs reference {s.median:.2f}x (median of {s.rounds} alternated rounds; "
                f"95% CI {s.ci_low:.2f}..{s.ci_high:.2f}, range {s.min:.2f}..{s.max:.2f}, round CV {s.cv:.1%})"
            )
        if r.agreement:
            a = r.agreement
            lines.append(
                f"batch {r.batch_size}: outputs on the same {a.get('samples')} inputs: top-1 agreement {a['top1_agreement']:.2%}, "
                f"max abs error {a['max_abs']:.3g}, cosine {a['cosine']:.6f}"
            )
    lines.append(f"power: {result.power_source or 'n/a (no INA3221 rails or tegrastats on this machine)'}")
    for line in lines:
        console.print(line, markup=False, highlight=False)
    for r in result.results:
        for w in r.warnings:
            console.print(f"warning: {w}", markup=False, highlight=False, style="yellow")
