"""Runtime exceptions: every one is an :class:`~edgeres.errors.EngineError`.

Catch ``edgeres.EdgeresError`` (or ``EngineError``) to handle all of them; the
subclasses let robot code react to one cause, e.g. rebuild on
:class:`PlanMismatchError`.
"""

from __future__ import annotations

from edgeres.errors import EngineError, TensorRTUnavailableError


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


class SidecarMissingWarning(UserWarning):
    """A plan without ``model.plan.json``: its version and device cannot be checked."""


__all__ = [
    "CudaError",
    "EngineClosedError",
    "EngineError",
    "EngineInputError",
    "PlanIntegrityError",
    "PlanMismatchError",
    "SidecarMissingWarning",
    "TensorRTUnavailableError",
]
