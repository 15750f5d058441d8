"""INT8 calibration: streaming statistics, calibrators, Q/DQ ONNX, TensorRT cache, report, budget.

Importing this package loads numpy only; onnx/onnxruntime load on first use.
"""

from edgeres.calibrate.api import CalibrationResult, calibrate, calibrate_model
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
    "calibrate_model",
    "compute_amax",
    "parse_calibration_cache",
    "qdq_model",
    "qdq_model_from_cache",
    "read_calibration_cache",
    "scale_from_amax",
    "trt_version_code",
    "write_calibration_cache",
]
