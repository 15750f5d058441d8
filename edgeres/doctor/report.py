"""Doctor's output: a short table (facts, then one line per problem with its fix) or JSON.

The JSON schema is documented in docs/doctor.md; ``format`` is
``edgeres-doctor`` and ``schema_version`` changes when a key is renamed or
removed or its meaning changes.
"""

from __future__ import annotations

from typing import Any, Sequence

from edgeres.doctor.facts import DeviceFacts
from edgeres.doctor.rules import Problem, Subject

FORMAT = "edgeres-doctor"
SCHEMA_VERSION = 1
EXIT_OK = 0
EXIT_PROBLEMS = 1


def exit_code(problems: Sequence[Problem]) -> int:
    """0 when nothing needed is missing or wrong (warnings allowed), else 1."""
    return EXIT_PROBLEMS if any(p.severity == "error" for p in problems) else EXIT_OK


def _unknown(value: Any) -> str:
    return "unknown" if value is None or value == "" else str(value)


def _mib(n: int | None) -> str:
    return "unknown" if n is None else f"{n >> 20} MiB"


def fact_rows(facts: DeviceFacts) -> list[tuple[str, str]]:
    """(label, value) rows: what doctor read, with where it came from when that matters."""
    cc = f"sm_{facts.compute_capability[0]}.{facts.compute_capability[1]}" if facts.compute_capability else None
    gpu = " ".join(x for x in (facts.gpu_name, cc, f"[{facts.compute_capability_source}]" if cc else None) if x)
    rows = [("python", _unknown(facts.python))]
    if facts.is_jetson:
        rows += [
            ("L4T", f"{_unknown(facts.l4t)}" + (f" [{facts.l4t_source}]" if facts.l4t_source else "")),
            ("JetPack", f"{_unknown(facts.jetpack)}" + (f" [{facts.jetpack_source}]" if facts.jetpack_source else "")),
            ("model", _unknown(facts.model)),
        ]
    rows += [
        ("GPU", gpu or "none visible"),
        ("TensorRT", f"{_unknown(facts.tensorrt)} (Python bindings), {_unknown(facts.tensorrt_system)} (dpkg)"),
        ("CUDA", f"runtime {_unknown(facts.cuda_runtime)}, driver {_unknown(facts.cuda_driver)}, "
                 f"toolkit {_unknown(facts.cuda_system)} (dpkg)"),
        ("cuDNN", _unknown(facts.cudnn)),
        ("CUDA bindings", f"cuda-python {_unknown(facts.cuda_python)}, pycuda {_unknown(facts.pycuda)}"),
    ]
    if facts.nvidia_driver:
        rows.append(("NVIDIA driver", facts.nvidia_driver))
    if facts.is_jetson:
        on = facts.jetson_clocks_on
        rows += [
            ("DLA cores", _unknown(facts.dla_cores)),
            ("power mode", _unknown(facts.power_mode) + (f" (id {facts.power_mode_id})" if facts.power_mode_id is not None else "")),
            ("jetson_clocks", ("on" if on else "off" if on is False else "unknown") +
             (f" [{facts.clocks_source}]" if facts.clocks_source and on is not None else "")),
        ]
    rows += [
        ("memory available", _mib(facts.mem_available_bytes)),
        ("disk free", f"{_mib(facts.disk_free_bytes)} at {_unknown(facts.disk_path)}"),
        ("container", facts.container or "no"),
    ]
    return rows


def render_text(facts: DeviceFacts, problems: Sequence[Problem], subject: Subject | None = None) -> str:
    """The table ``edgeres doctor`` prints."""
    rows = fact_rows(facts)
    width = max(len(k) for k, _ in rows)
    lines = [f"{k.ljust(width)}  {v}" for k, v in rows]
    what = f"{subject.kind} {subject.path}" if subject is not None and subject.kind != "device" else "this device"
    lines.append("")
    if not problems:
        lines.append(f"ok: nothing missing for {what}")
    else:
        errors = sum(p.severity == "error" for p in problems)
        lines.append(f"{errors} error(s), {len(problems) - errors} warning(s) for {what}:")
        lines += [f"  {p.severity.upper():7} {p.what}: {p.fix}" for p in problems]
    return "\n".join(lines)


def report_dict(facts: DeviceFacts, problems: Sequence[Problem], subject: Subject | None = None) -> dict[str, Any]:
    """The ``--json`` document (docs/doctor.md)."""
    subject = subject or Subject()
    return {
        "format": FORMAT,
        "schema_version": SCHEMA_VERSION,
        "subject": {"kind": subject.kind, "path": subject.path},
        "facts": facts.to_dict(),
        "problems": [p.to_dict() for p in problems],
        "exit_code": exit_code(problems),
    }


def bench_summary(facts: DeviceFacts) -> dict[str, Any]:
    """What ``edgeres bench`` records of the device (``environment.doctor``) and the warnings it prints."""
    from edgeres.doctor.rules import diagnose

    return {
        "l4t": facts.l4t,
        "jetpack": facts.jetpack,
        "tensorrt": facts.tensorrt or facts.tensorrt_system,
        "power_mode": facts.power_mode,
        "power_mode_id": facts.power_mode_id,
        "jetson_clocks": facts.jetson_clocks_on if facts.is_jetson else None,
        "clocks_source": facts.clocks_source if facts.is_jetson else None,
        "warnings": [p.line() for p in diagnose(facts, only=("power-mode", "clocks"))],
    }
