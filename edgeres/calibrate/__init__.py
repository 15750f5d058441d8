"""INT8 calibration: streaming statistics, calibrators, Q/DQ ONNX, TensorRT cache, report, budget.

Importing this package loads numpy only; onnx/onnxruntime load on first use. It depends on
ONNX and data only: a PyTorch model reaches it as ONNX through :mod:`edgeres.pipeline`
(``edgeres.pipeline.calibrate_model``).
"""

from edgeres.calibrate.api import CalibrationResult, calibrate
from edgeres.calibrate.cache import (
    parse_calibration_cache,
    qdq_model_from_cache,
    read_calibration_cache,
    trt_version_code,
    write_calibration_cache,
)
from edgeres.calibrate.calibrators import CALIBRATORS, DEFAULT_METHOD, Histogram, compute_amax, scale_from_amax
from edgeres.calibrate.qdq import qdq_model

__all__ = [
    "CALIBRATORS",
    "CalibrationResult",
    "DEFAULT_METHOD",
    "Histogram",
    "calibrate",
    "compute_amax",
    "parse_calibration_cache",
    "qdq_model",
    "qdq_model_from_cache",
    "read_calibration_cache",
    "scale_from_amax",
    "trt_version_code",
    "write_calibration_cache",
]


def __getattr__(name: str) -> object:
    """``calibrate_model`` moved to :mod:`edgeres.pipeline` (it starts from a PyTorch model); old imports warn."""
    if name == "calibrate_model":
        import warnings

        from edgeres import pipeline

        warnings.warn("edgeres.calibrate.calibrate_model moved to edgeres.pipeline.calibrate_model",
                      DeprecationWarning, stacklevel=2)
        return pipeline.calibrate_model
    raise AttributeError(f"module 'edgeres.calibrate' has no attribute {name!r}")
