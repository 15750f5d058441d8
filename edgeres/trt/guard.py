"""The adapter's TensorRT import guard, logger and local GPU: the low module the other trt modules use.

:func:`require_tensorrt` is :func:`edgeres._tensorrt.import_tensorrt` (shared with
the runtime) raising the builder's :class:`~edgeres.errors.TensorRTUnavailableError`
(a ``BuildError``) with install hints; the runtime raises ``EngineUnavailableError``.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

from edgeres._tensorrt import collecting_logger
from edgeres._tensorrt import import_tensorrt as _guarded_import
from edgeres.errors import TensorRTUnavailableError

INSTALL_HINT = (
    "on Jetson, TensorRT comes with JetPack (sudo apt install python3-libnvinfer, or reflash JetPack); "
    "on desktop GPUs: pip install --extra-index-url https://pypi.nvidia.com tensorrt cuda-python"
)


def require_tensorrt() -> ModuleType:
    """The ``tensorrt`` module (>= 8.5), or :class:`TensorRTUnavailableError` with install hints."""
    return _guarded_import(TensorRTUnavailableError, INSTALL_HINT)


def tensorrt_version() -> str:
    """The imported TensorRT's full version string as it reports it, e.g. ``10.3.0.30`` (JetPack) or ``10.3.0`` (pip)."""
    return str(require_tensorrt().__version__)


def logger(trt: ModuleType) -> Any:
    """A ``trt.ILogger`` that collects warnings and errors (``.messages``, ``.errors()``, ``.recent()``)."""
    return collecting_logger(trt)


def local_compute_capability() -> tuple[int, int] | None:
    """Compute capability of local GPU 0 (via :mod:`edgeres.runtime.cuda`); None without a GPU or CUDA binding."""
    from edgeres.runtime import cuda

    info = cuda.local_device()
    return None if info is None else info.compute_capability
