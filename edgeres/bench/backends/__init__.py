"""Benchmark backends behind one interface, chosen from the model file (or ``--backend``)."""

from __future__ import annotations

import dataclasses
import importlib
import importlib.util
import os
from pathlib import Path
from typing import Any

from edgeres.bench.backends.base import Backend, BackendOptions, Phases
from edgeres.errors import BenchError


@dataclasses.dataclass(frozen=True)
class BackendInfo:
    """Where a backend lives and what it needs installed."""

    module: str
    cls: str
    requires: str  # importable module the backend needs
    install: str  # what to tell a user who lacks it


BACKENDS: dict[str, BackendInfo] = {
    "onnxruntime": BackendInfo("edgeres.bench.backends.onnxruntime", "OnnxRuntimeBackend", "onnxruntime",
                               "pip install onnxruntime (CPU) or onnxruntime-gpu (CUDA/TensorRT EP)"),
    "tensorrt": BackendInfo("edgeres.bench.backends.tensorrt", "TensorRTBackend", "tensorrt",
                            "pip install 'edgeres[tensorrt]' (desktop, NVIDIA index) or use JetPack's TensorRT (Jetson)"),
    "torch": BackendInfo("edgeres.bench.backends.torch", "TorchBackend", "torch", "pip install torch"),
}

#: File suffix -> backend that runs it.
SUFFIX_BACKENDS: dict[str, str] = {
    ".onnx": "onnxruntime",
    ".plan": "tensorrt",
    ".engine": "tensorrt",
    ".pt": "torch",
    ".pth": "torch",
    ".safetensors": "torch",
}


def backend_for(model: str | os.PathLike[str]) -> str:
    """The backend that runs ``model``: by file suffix, or ``torch`` for an architecture name.

    Raises:
        BenchError: a file of unknown type, or neither a file nor a known architecture.
    """
    path = Path(model)
    suffix = path.suffix.lower()
    if suffix in SUFFIX_BACKENDS:
        return SUFFIX_BACKENDS[suffix]
    known = ", ".join(f"{s} ({b})" for s, b in SUFFIX_BACKENDS.items())
    if path.exists():
        raise BenchError(f"unknown model file type {suffix or '(no suffix)'!r} for {model}; expected one of {known}, or pass --backend")
    from edgeres.models.registry import MODELS

    if str(model) in MODELS:
        return "torch"
    raise BenchError(f"{model} is neither an existing model file ({known}) nor an architecture name ({', '.join(MODELS)})")


def check_installed(backend: str) -> None:
    """Raise a BenchError naming the package to install if ``backend``'s library is missing."""
    if backend not in BACKENDS:
        raise BenchError(f"unknown backend {backend!r}; expected one of {sorted(BACKENDS)}")
    info = BACKENDS[backend]
    if importlib.util.find_spec(info.requires) is None:
        raise BenchError(f"backend {backend!r} needs the {info.requires} package, which is not installed; {info.install}")


def available_backends() -> list[str]:
    """Backends whose library is importable here (says nothing about GPUs)."""
    return [name for name, info in BACKENDS.items() if importlib.util.find_spec(info.requires) is not None]


def create_backend(model: Any, backend: str | None = None, options: BackendOptions = BackendOptions(), **kwargs: Any) -> Backend:
    """Instantiate the backend for ``model`` (not loaded yet).

    Args:
        model: a model file, an architecture name, or (torch) a callable returning a module.
        backend: force a backend; chosen from the file when None.
        options: backend options.
        **kwargs: passed to the backend's constructor (``input_shape`` for torch).
    """
    if backend is None:
        backend = "torch" if callable(model) else backend_for(model)
    check_installed(backend)
    if isinstance(model, (str, os.PathLike)) and backend != "torch" and not Path(model).is_file():
        raise BenchError(f"model file {model} does not exist")
    info = BACKENDS[backend]
    cls = getattr(importlib.import_module(info.module), info.cls)
    return cls(model, options, **kwargs)


__all__ = ["BACKENDS", "Backend", "BackendOptions", "Phases", "SUFFIX_BACKENDS", "available_backends",
           "backend_for", "check_installed", "create_backend"]
