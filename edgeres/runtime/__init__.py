"""edgeres.runtime: run a TensorRT plan or an ONNX model from robot code, without PyTorch.

Imports numpy (and Pillow through :mod:`edgeres.recipe`) only; never torch,
onnx or click. TensorRT, cuda-python/pycuda and onnxruntime are imported when
an engine of that kind is opened.

    from edgeres.runtime import Engine
    with Engine("bundle/model.plan") as engine:    # or "bundle/model.onnx"
        logits = engine.infer(batch)                # numpy in, numpy out

Threading: see :class:`~edgeres.runtime.onnx_engine.OnnxEngine` (one shared
session) and :class:`~edgeres.runtime.trt_engine.TrtEngine` (one execution
context, stream and buffer set per thread, created lazily).
"""

from __future__ import annotations

import importlib.util
import os
import warnings
from pathlib import Path
from typing import Any

from edgeres.runtime._base import Engine, TensorInfo
from edgeres.runtime._errors import (
    CudaError,
    CudaGraphWarning,
    CudaUnavailableError,
    EngineClosedError,
    EngineError,
    EngineInputError,
    EngineUnavailableError,
    PlanIntegrityError,
    PlanMismatchError,
    PlanVersionWarning,
    SidecarMissingWarning,
    deprecated_name,
)

# Bundle file names (edgeres bundle / edgeres compile), in order of preference per choice.
BUNDLE_FILES = {
    "plan": ("model.plan",),
    "onnx": ("model.onnx",),
    "qdq": ("model.qdq.onnx",),
    "auto": ("model.plan", "model.onnx", "model.qdq.onnx"),
}


def tensorrt_available() -> bool:
    """True if the ``tensorrt`` package is importable here (says nothing about a GPU)."""
    return importlib.util.find_spec("tensorrt") is not None


def model_path_in_bundle(bundle: str | os.PathLike[str], prefer: str = "auto") -> Path:
    """The model file a bundle folder should run with.

    ``prefer="auto"`` picks ``model.plan`` when it exists and TensorRT is
    importable, else ``model.onnx`` (then ``model.qdq.onnx``), so the same code
    runs on a GPU robot and on a CPU-only one.
    """
    if prefer not in BUNDLE_FILES:
        raise EngineError(f"prefer must be one of {sorted(BUNDLE_FILES)}, received {prefer!r}")
    folder = Path(bundle)
    if not folder.is_dir():
        raise EngineError(f"expected a bundle folder, received {folder} (not a folder)")
    candidates = [folder / name for name in BUNDLE_FILES[prefer]]
    for path in candidates:
        if not path.is_file():
            continue
        if path.suffix == ".plan" and prefer == "auto" and not tensorrt_available():
            warnings.warn(
                f"{path} exists but TensorRT is not installed here; running {folder}'s ONNX model on onnxruntime",
                stacklevel=2,
            )
            continue
        return path
    raise EngineError(
        f"bundle {folder} has no runnable model; expected one of {[c.name for c in candidates]}, "
        f"received {sorted(p.name for p in folder.iterdir())}"
    )


def open_engine(path: str | os.PathLike[str], *, prefer: str = "auto", **kwargs: Any) -> Engine:
    """An :class:`Engine` for a model file or a deploy-bundle folder (see :func:`model_path_in_bundle`).

    A model inside a bundle is checked before it runs: a plan against its sidecar's sha256, an
    ``.onnx`` against the sha256 its ``manifest.json`` lists (:class:`PlanIntegrityError` on a
    mismatch); ``verify=False`` (passed on to the backend with the other keyword arguments) skips that.
    """
    target = Path(path)
    if target.is_dir():
        target = model_path_in_bundle(target, prefer)
    return Engine(target, **kwargs)


def __getattr__(name: str) -> Any:
    """Deprecated names (``TensorRTUnavailableError`` -> :class:`EngineUnavailableError`)."""
    return deprecated_name(__name__, name)


__all__ = [
    "CudaError",
    "CudaGraphWarning",
    "CudaUnavailableError",
    "Engine",
    "EngineClosedError",
    "EngineError",
    "EngineInputError",
    "EngineUnavailableError",
    "PlanIntegrityError",
    "PlanMismatchError",
    "PlanVersionWarning",
    "SidecarMissingWarning",
    "TensorInfo",
    "model_path_in_bundle",
    "open_engine",
    "tensorrt_available",
]
