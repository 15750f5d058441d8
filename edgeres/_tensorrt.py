"""TensorRT shims shared by the runtime (:mod:`edgeres.runtime`) and the builder (:mod:`edgeres.trt`).

Pure at import time (``tensorrt`` is imported inside :func:`import_tensorrt`), and
it depends only on :mod:`edgeres.errors` and :mod:`edgeres.tensorrt_version`, so
the runtime may import it without pulling in anything of the host side.

* :func:`import_tensorrt`: the import guard. It raises the caller's error type:
  the runtime passes ``EngineUnavailableError`` (an ``EngineError``), the builder
  ``TensorRTUnavailableError`` (a ``BuildError``), so each stage keeps its own hierarchy.
* :func:`collecting_logger`: a ``trt.ILogger`` that keeps warnings and errors for messages.
* :data:`DTYPE_NAMES`: TensorRT ``DataType`` name -> dtype name (sidecars, numpy).
"""

from __future__ import annotations

import functools
from types import ModuleType
from typing import Any

from edgeres.errors import EdgeresError
from edgeres.tensorrt_version import MIN_ADAPTER, SUPPORTED, parse_version

# TensorRT DataType name -> dtype name. BF16, FP8 and INT4 have no numpy type (NUMPY_DTYPE_NAMES lacks them);
# names follow tensorrt.DataType in NvInferRuntimeBase.h / NvInferRuntimeCommon.h of 8.5 .. 11.
DTYPE_NAMES: dict[str, str] = {
    "FLOAT": "float32",
    "HALF": "float16",
    "INT8": "int8",
    "INT32": "int32",
    "INT64": "int64",
    "UINT8": "uint8",
    "BOOL": "bool",
    "BF16": "bfloat16",
    "FP8": "float8",
    "INT4": "int4",
}
NUMPY_DTYPE_NAMES: dict[str, str] = {k: v for k, v in DTYPE_NAMES.items() if k not in ("BF16", "FP8", "INT4")}


def dtype_key(trt_dtype: Any) -> str:
    """``DataType.HALF`` -> ``"HALF"``."""
    return str(trt_dtype).rsplit(".", 1)[-1]


def import_tensorrt(error: type[EdgeresError], hint: str) -> ModuleType:
    """``tensorrt`` at :data:`~edgeres.tensorrt_version.MIN_ADAPTER` or later, else ``error`` ending in ``hint``."""
    try:
        import tensorrt as trt
    except (ImportError, OSError) as exc:
        raise error(f"TensorRT is not importable in this Python ({exc}); {hint}") from exc
    version = str(getattr(trt, "__version__", ""))
    parsed = parse_version(version, error=error)
    if parsed < MIN_ADAPTER:
        raise error(
            f"edgeres needs TensorRT >= {MIN_ADAPTER[0]}.{MIN_ADAPTER[1]} ({SUPPORTED['adapter'].reason}), "
            f"found {version} (on TensorRT 8.2 / JetPack 4 build with the bundle's build.sh and run the plan with "
            f"trtexec); {hint}"
        )
    return trt


@functools.lru_cache(maxsize=None)
def _logger_class(trt: ModuleType) -> type:
    class CollectingLogger(trt.ILogger):
        """Keeps TensorRT's errors and warnings so a failure can say why in one line."""

        def __init__(self, min_severity: Any = None) -> None:
            trt.ILogger.__init__(self)  # pybind11 trampolines need the base initialised explicitly
            self.min_severity = trt.ILogger.Severity.WARNING if min_severity is None else min_severity
            self.messages: list[tuple[str, str]] = []  # (severity name, message)

        def log(self, severity: Any, msg: str) -> None:
            if int(severity) <= int(self.min_severity):
                self.messages.append((str(severity).rsplit(".", 1)[-1], str(msg)))

        def errors(self) -> list[str]:
            return [m for sev, m in self.messages if sev in ("ERROR", "INTERNAL_ERROR")]

        def recent(self, count: int = 3) -> list[str]:
            """The last ``count`` messages as ``"SEVERITY: message"``."""
            return [f"{sev}: {m}" for sev, m in self.messages[-count:]]

    return CollectingLogger


def collecting_logger(trt: ModuleType, min_severity: Any = None) -> Any:
    """A ``trt.ILogger`` keeping messages at ``min_severity`` (default WARNING) or worse (``.messages``, ``.errors()``)."""
    return _logger_class(trt)(min_severity)
