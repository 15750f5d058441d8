"""What a benchmark ran on, recorded with every result.

Device and driver, compute capability, library versions, CPU model and
threads, and on Jetson the power mode and whether clocks are locked. Every
probe reads files under ``root`` (``/`` on a device; a fake tree in tests) or
asks an already-importable library; a probe that fails yields None, never an
error.
"""

from __future__ import annotations

import importlib.metadata
import os
import platform
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

# one parser for each Jetson format, shared with edgeres doctor (its facts are the lower layer)
from edgeres.doctor.facts import clocks_locked, parse_nvpmodel_query

#: Distributions whose versions are recorded (absent ones are left out).
LIBRARIES = ("edgeres", "numpy", "onnx", "onnxruntime", "onnxruntime-gpu", "torch", "tensorrt", "cuda-python", "pycuda")


def _read(path: Path) -> str | None:
    try:
        return path.read_text(errors="replace").strip("\x00").strip()
    except OSError:
        return None


def library_versions() -> dict[str, str]:
    """Installed versions of the libraries that can take part in a benchmark."""
    versions = {}
    for name in LIBRARIES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return versions


def cpu_model(root: Path) -> str | None:
    """CPU model name from /proc/cpuinfo (x86 ``model name``; ARM ``Hardware`` or the device-tree model)."""
    text = _read(root / "proc/cpuinfo") or ""
    for key in ("model name", "Hardware", "Processor"):
        m = re.search(rf"^{key}\s*:\s*(.+)$", text, re.MULTILINE)
        if m:
            return m.group(1).strip()
    return _read(root / "proc/device-tree/model") or platform.processor() or None


def jetson_release(root: Path) -> str | None:
    """L4T release (``R35.3.1``) from /etc/nv_tegra_release, or None off Jetson."""
    text = _read(root / "etc/nv_tegra_release")
    if not text:
        return None
    m = re.search(r"R(\d+)\s*\(release\),\s*REVISION:\s*([\d.]+)", text)
    return f"R{m.group(1)}.{m.group(2)}" if m else text.splitlines()[0]


def jetson_power_mode(root: Path) -> dict[str, Any] | None:
    """The nvpmodel power mode: ``nvpmodel -q`` when run on the device, else /var/lib/nvpmodel/status."""
    if str(root) == "/" and shutil.which("nvpmodel"):
        try:
            out = subprocess.run(["nvpmodel", "-q"], capture_output=True, text=True, timeout=5).stdout
            parsed = parse_nvpmodel_query(out)
            if parsed:
                return {**parsed, "source": "nvpmodel -q"}
        except (OSError, subprocess.SubprocessError):
            pass
    status = _read(root / "var/lib/nvpmodel/status")
    m = re.search(r"pmode:(\d+)", status or "")
    return {"name": None, "id": int(m.group(1)), "source": "/var/lib/nvpmodel/status"} if m else None


def nvidia_driver(root: Path) -> str | None:
    """Kernel driver version from /proc/driver/nvidia/version (desktop GPUs)."""
    m = re.search(r"Kernel Module\s+(?:for \S+\s+)?([\d.]+)", _read(root / "proc/driver/nvidia/version") or "")
    return m.group(1) if m else None


def cuda_device(index: int = 0) -> dict[str, Any] | None:
    """Name, compute capability and memory of CUDA device ``index`` via torch, if torch sees one."""
    try:
        import torch
    except ImportError:
        return None
    if not torch.cuda.is_available():
        return None
    props = torch.cuda.get_device_properties(index)
    return {
        "name": props.name,
        "compute_capability": [props.major, props.minor],
        "memory_bytes": int(props.total_memory),
        "multiprocessors": int(props.multi_processor_count),
        "cuda_runtime": torch.version.cuda,
    }


def doctor_facts(root: Path, *, probe_python: bool = True) -> dict[str, Any] | None:
    """``edgeres doctor``'s L4T, JetPack, TensorRT, power mode and clocks, with its power/clock warnings.

    MLPerf's Jetson results are measured at MaxN with clocks pinned (mlcommons/ck
    ``cm-mlops/challenge/optimize-mlperf-inference-v3.0-2023/docs/setup-nvidia-jetson-orin.md``:
    NVIDIA's submitted ResNet-50 runs are "MaxN"); a run outside that is flagged.
    """
    from edgeres.doctor import collect_facts
    from edgeres.doctor.report import bench_summary

    return bench_summary(collect_facts(root, probe=None if probe_python else dict))


def collect_environment(root: str | os.PathLike[str] = "/", *, probe_gpu: bool = True) -> dict[str, Any]:
    """Everything recorded with a result (see docs/bench_json.md, ``environment``)."""
    root = Path(root)
    release = jetson_release(root)
    try:
        affinity = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        affinity = None
    env: dict[str, Any] = {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "machine": platform.machine(),
        "cpu_model": cpu_model(root),
        "cpu_count": os.cpu_count(),
        "cpu_affinity": affinity,
        "libraries": library_versions(),
        "gpu": cuda_device() if probe_gpu else None,
        "nvidia_driver": nvidia_driver(root),
        "clocks_locked": clocks_locked(root),
        "jetson": None,
        "doctor": doctor_facts(root, probe_python=probe_gpu),
    }
    if release is not None:
        env["jetson"] = {
            "l4t": release,
            "model": _read(root / "proc/device-tree/model"),
            "power_mode": jetson_power_mode(root),
        }
    return env
