"""TensorRT calibration cache: the text file implicit INT8 (and the DLA) reads.

Format: a header ``TRT-<version code>-EntropyCalibration2``, then one line per
tensor, ``<onnx tensor name>: <8 hex digits>``, the big-endian IEEE-754 float32
bits of the scale (amax / 127). TensorRT encodes versions as
``major*1000 + minor*100 + patch`` before 10 (8.5.2 -> 8502) and
``major*10000 + minor*100 + patch`` from 10 on (10.3.0 -> 100300).

TensorRT 11 removed implicit calibration; caches are still written for 8.5 to
10.x engines and read for migration (:func:`qdq_model_from_cache`).
"""

from __future__ import annotations

import os
import re
import struct
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from edgeres._io import write_text_atomic
from edgeres.errors import CalibrationError

CALIBRATOR_NAMES = ("EntropyCalibration2", "EntropyCalibration", "MinMaxCalibration", "LegacyCalibration")
MIN_VERSION = (8, 5)
MAX_MAJOR = 10  # last TensorRT with implicit INT8 calibration
_HEADER = re.compile(r"^TRT-(\d+)-(\w+)$")
_LINE = re.compile(r"^(.+): ([0-9a-fA-F]{8})$")


def trt_version_code(version: str) -> int:
    """``"8.5.2"`` -> 8502, ``"10.3.0"`` -> 100300 (TensorRT's NV_TENSORRT_VERSION)."""
    parts = str(version).strip().split(".")
    try:
        numbers = [int(p) for p in parts]
    except ValueError:
        raise CalibrationError(f"TensorRT version must look like 8.5.2 or 10.3.0, received {version!r}") from None
    if not 1 <= len(numbers) <= 4 or any(n < 0 or n > 99 for n in numbers[1:3]):
        raise CalibrationError(f"TensorRT version must look like 8.5.2 or 10.3.0, received {version!r}")
    major, minor, patch = (numbers + [0, 0])[:3]
    _check_supported(major, minor, version)
    return major * (10000 if major >= 10 else 1000) + minor * 100 + patch


def version_from_code(code: int) -> str:
    """Inverse of :func:`trt_version_code`: 8502 -> ``"8.5.2"``."""
    major, rest = (code // 10000, code % 10000) if code >= 100000 else (code // 1000, code % 1000)
    return f"{major}.{rest // 100}.{rest % 100}"


def _check_supported(major: int, minor: int, shown: object) -> None:
    if (major, minor) < MIN_VERSION or major > MAX_MAJOR:
        raise CalibrationError(
            f"unsupported TensorRT version {shown} for a calibration cache: expected 8.5 to {MAX_MAJOR}.x "
            "(TensorRT 11 reads no cache: use model.qdq.onnx; older than 8.5 is not supported)"
        )


def scale_to_hex(scale: float) -> str:
    """float32 big-endian bits as 8 lowercase hex digits."""
    return struct.pack(">f", float(scale)).hex()


def hex_to_scale(text: str) -> float:
    return float(struct.unpack(">f", bytes.fromhex(text))[0])


def calibration_cache_text(scales: Mapping[str, float], trt_version: str = "10.3.0") -> str:
    """The cache file's text for ``scales`` (tensor name -> scale), in the given order."""
    code = trt_version_code(trt_version)
    lines = [f"TRT-{code}-EntropyCalibration2"]
    for name, scale in scales.items():
        if not (np.isfinite(scale) and scale > 0):
            raise CalibrationError(f"scale of {name!r} must be finite and positive, received {scale}")
        if "\n" in name or ": " in name:
            raise CalibrationError(f"tensor name {name!r} cannot be written to a calibration cache")
        lines.append(f"{name}: {scale_to_hex(scale)}")
    return "\n".join(lines) + "\n"


def write_calibration_cache(path: str | os.PathLike[str], scales: Mapping[str, float], trt_version: str = "10.3.0") -> Path:
    """Write a TensorRT calibration cache atomically; returns the path."""
    return write_text_atomic(path, calibration_cache_text(scales, trt_version))


def parse_calibration_cache(text: str, source: str = "cache") -> tuple[str, str, dict[str, float]]:
    """(TensorRT version, calibrator name, scales) from cache text.

    Raises:
        CalibrationError: malformed header or line, unsupported version, bad scale.
    """
    lines = [ln.rstrip("\r") for ln in text.split("\n")]
    while lines and not lines[-1].strip():
        lines.pop()
    if not lines:
        raise CalibrationError(f"{source} is empty; expected a header like TRT-100300-EntropyCalibration2")
    match = _HEADER.match(lines[0].strip())
    if not match or match.group(2) not in CALIBRATOR_NAMES:
        raise CalibrationError(
            f"{source} line 1 is {lines[0][:60]!r}; expected TRT-<version>-<calibrator> with a calibrator among "
            f"{', '.join(CALIBRATOR_NAMES)} (not a TensorRT calibration cache?)"
        )
    code = int(match.group(1))
    version = version_from_code(code)
    major, minor = (int(p) for p in version.split(".")[:2])
    _check_supported(major, minor, f"{version} (code {code})")
    scales: dict[str, float] = {}
    for number, line in enumerate(lines[1:], start=2):
        m = _LINE.match(line)
        if not m:
            raise CalibrationError(f"{source} line {number} is {line[:80]!r}; expected '<tensor name>: <8 hex digits>'")
        name, value = m.group(1), hex_to_scale(m.group(2))
        if not (np.isfinite(value) and value > 0):
            raise CalibrationError(f"{source} line {number}: scale of {name!r} is {value}; expected finite and positive")
        if name in scales:
            raise CalibrationError(f"{source} line {number}: tensor {name!r} appears twice")
        scales[name] = value
    if not scales:
        raise CalibrationError(f"{source} has a header but no tensor scales")
    return version, match.group(2), scales


def read_calibration_cache(path: str | os.PathLike[str]) -> dict[str, float]:
    """Scales (tensor name -> scale) of a TensorRT calibration cache file."""
    path = Path(path)
    if not path.is_file():
        raise CalibrationError(f"calibration cache {path} does not exist")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise CalibrationError(f"{path} is not a text calibration cache (binary file?)") from None
    return parse_calibration_cache(text, str(path))[2]


def qdq_model_from_cache(model: Any, cache: str | os.PathLike[str] | Mapping[str, float], *, placement: str = "tensorrt") -> Any:
    """A Q/DQ ModelProto from an FP32 ModelProto and an existing cache (TensorRT 8/10 -> 11 migration).

    Raises:
        CalibrationError: the cache is malformed, or names tensors that are not
            in this model, or lacks a tensor the Q/DQ model needs.
    """
    from edgeres.calibrate.qdq import qdq_model, quantized_activations

    scales = dict(cache) if isinstance(cache, Mapping) else read_calibration_cache(cache)
    tensors = {i.name for i in model.graph.input} | {o for n in model.graph.node for o in n.output}
    foreign = [n for n in scales if n not in tensors]
    needed = quantized_activations(model)
    missing = [n for n in needed if n not in scales]
    if foreign or missing:
        detail = []
        if foreign:
            detail.append(f"{len(foreign)} cache tensor(s) not in the model (e.g. {foreign[0]!r})")
        if missing:
            detail.append(f"{len(missing)} model tensor(s) missing from the cache (e.g. {missing[0]!r})")
        raise CalibrationError(
            "calibration cache does not fit this model: " + "; ".join(detail) + " (a cache for another model or export?)"
        )
    return qdq_model(model, scales, placement=placement)
