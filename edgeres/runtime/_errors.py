"""Runtime exceptions: every one is an :class:`~edgeres.errors.EngineError`.

Catch ``edgeres.EdgeresError`` (or ``EngineError``) to handle all of them; the
subclasses let robot code react to one cause, e.g. rebuild on
:class:`PlanMismatchError`, fall back to ONNX on :class:`EngineUnavailableError`.

The builder (:mod:`edgeres.trt`) raises its own ``edgeres.errors.TensorRTUnavailableError``
(a ``BuildError``) for the same causes; ``edgeres.runtime.TensorRTUnavailableError`` is a
deprecated alias of :class:`EngineUnavailableError`, kept for code written before the split.
"""

from __future__ import annotations

import warnings
from typing import Any

from edgeres.errors import EngineError


class EngineInputError(EngineError):
    """An input of the wrong type, dtype, shape, batch size or device."""


class EngineClosedError(EngineError):
    """The engine was used after ``close()``."""


class PlanMismatchError(EngineError):
    """A TensorRT plan built for another TensorRT version or GPU compute capability."""


class PlanIntegrityError(EngineError):
    """A plan file that is empty, corrupt, or does not match its sidecar's sha256."""


class CudaError(EngineError):
    """A CUDA call returned an error code."""


class EngineUnavailableError(EngineError):
    """This machine cannot run the engine: no TensorRT (>= 8.5), no CUDA binding, or no usable GPU."""


class CudaUnavailableError(EngineUnavailableError):
    """No CUDA binding (cuda-python, pycuda) imports, or none sees a usable GPU."""


class PlanVersionWarning(UserWarning):
    """The plan's TensorRT build number cannot be compared (one side reports only major.minor.patch)."""


class SidecarMissingWarning(UserWarning):
    """A plan without ``model.plan.json``: its version and device cannot be checked."""


class CudaGraphWarning(UserWarning):
    """``cuda_graph=True`` but the engine's work could not be captured or instantiated: it runs without graphs."""


_DEPRECATED = {"TensorRTUnavailableError": "EngineUnavailableError"}


def deprecated_name(module: str, name: str) -> Any:
    """The current class for a deprecated runtime error name, with a DeprecationWarning."""
    if name not in _DEPRECATED:
        raise AttributeError(f"module {module!r} has no attribute {name!r}")
    warnings.warn(f"{module}.{name} is deprecated; use {module}.{_DEPRECATED[name]} (an EngineError)",
                  DeprecationWarning, stacklevel=3)
    return globals()[_DEPRECATED[name]]


def __getattr__(name: str) -> Any:
    return deprecated_name(__name__, name)


__all__ = [
    "CudaError",
    "CudaGraphWarning",
    "CudaUnavailableError",
    "EngineClosedError",
    "EngineError",
    "EngineInputError",
    "EngineUnavailableError",
    "PlanIntegrityError",
    "PlanMismatchError",
    "PlanVersionWarning",
    "SidecarMissingWarning",
]
