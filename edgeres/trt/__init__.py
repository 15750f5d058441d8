"""Thin, lazily imported TensorRT adapter (TensorRT 8.5 .. 11).

``import edgeres.trt`` imports neither tensorrt nor CUDA; names resolve on
first use. :class:`EngineSettings` and :func:`build_engine` are the build
stage's entry points; the rest are the one-step loaders they are made of.
Modules: ``guard`` (import guard, logger; lowest), ``caps``, ``settings``,
``calibrator`` (INT8), ``progress`` (build progress), ``loaders`` (the steps).
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "EngineSettings": "edgeres.trt.settings",
    "check_settings": "edgeres.trt.settings",
    "Capabilities": "edgeres.trt.caps",
    "capabilities": "edgeres.trt.caps",
    "require_tensorrt": "edgeres.trt.guard",
    "tensorrt_version": "edgeres.trt.guard",
    "local_compute_capability": "edgeres.trt.guard",
    "builder_from_logger": "edgeres.trt.loaders",
    "network_from_onnx": "edgeres.trt.loaders",
    "config_from_settings": "edgeres.trt.loaders",
    "engine_bytes_from_network": "edgeres.trt.loaders",
    "Int8EntropyCalibrator": "edgeres.trt.calibrator",
    "ProgressMonitor": "edgeres.trt.progress",
    "build_engine": "edgeres.trt.loaders",
    "onnx_precision": "edgeres.trt.loaders",
}

__all__ = list(_LAZY)


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'edgeres.trt' has no attribute {name!r}")
    value = getattr(importlib.import_module(_LAZY[name]), name)
    globals()[name] = value
    return value
