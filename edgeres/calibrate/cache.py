"""TensorRT calibration cache: the text file implicit INT8 (and the DLA) reads.

Format: a header ``TRT-<version code>-EntropyCalibration2``, then one line per
tensor, ``<onnx tensor name>: <8 hex digits>``, the big-endian IEEE-754 float32
bits of the scale (amax / 127). The header's version code is TensorRT's
``NV_TENSORRT_VERSION`` (8.5.2 -> 8502, 10.3.0 -> 100300), encoded by
:func:`edgeres.tensorrt_version.calibration_cache_code`.

TensorRT 11 removed implicit calibration; caches are still written for 8.5 to
10.x engines and read for migration (:func:`qdq_model_from_cache`).

Coverage (:func:`cache_scales`): every tensor TensorRT lists, i.e. the network
input and every layer output. TensorRT's ONNX parser names each layer output
after the ONNX node output it implements, so these are the graph input and
every node output. A tensor without a dynamic range makes TensorRT fall back
from INT8 around it (sampleINT8API: "provide the dynamic range for each
network tensor"), and on the DLA it forces GPU fallback.

Caches TensorRT itself wrote also hold ``(Unnamed Layer* N) [...]_output``
entries (tensors of layers the parser adds, e.g. the bias reshape of a Gemm)
and values written as ``0`` (tensors it never quantizes); reading skips both
with one warning per kind (NVIDIA's own example caches show both: TensorRT 7.2
and 8.4 caches in the TensorRT developer guide and user posts).

Not verified here (no TensorRT): that a given TensorRT build reads this cache
without warnings; the names follow the ONNX parser's documented naming.
"""

from __future__ import annotations

import os
import re
import struct
import warnings
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

import numpy as np

from edgeres._io import write_text_atomic
from edgeres._readers import (
    MAX_CACHE_BYTES,
    check_regular_file,
    has_control_characters,
    read_regular_file,
    text_from_bytes,
)
from edgeres.errors import CalibrationError
from edgeres.tensorrt_version import (
    DEFAULT_TENSORRT,
    SUPPORTED,
    TensorRTVersion,
    calibration_cache_code,
    version_from_calibration_cache_code,
)

CALIBRATOR_NAMES = ("EntropyCalibration2", "EntropyCalibration", "MinMaxCalibration", "LegacyCalibration")
_HEADER = re.compile(r"TRT-(\d{1,9})-(\w{1,64})", re.ASCII)  # codes reach 6 digits (110400); more is junk
# TensorRT writes the scale bits as unpadded hex (``0`` for a zero scale); ours are always 8 digits
_LINE = re.compile(r"(.{1,1024}): ([0-9a-fA-F]{1,8})")
MAX_LINES = 1 << 20  # tensors in one cache; a ResNet-152 has ~500
_RANGE = SUPPORTED["calibration_cache"]
_UNNAMED = re.compile(r"^\(Unnamed (Layer|ITensor)\* \d+\)")
# ops whose output keeps its input's scale (scale-preserving under symmetric INT8), with sources:
# ReLU: relu(x) = x for x >= 0 and the negative part maps to 0 under any zero-point-0 scale, so
# Q(relu(x), s) = relu(Q(x, s)); max pooling and pure data movement commute with per-tensor Q/DQ.
# NVIDIA's qdq-translator propagates scales over the same ops (Deep-Learning-Accelerator-SW,
# tools/qdq-translator/qdq_translator.py DEFAULT_OPS_TO_INFER_ADJACENT_SCALES, Sigmoid aside,
# which it treats specially), and TensorRT's own caches give pool1 the scale of conv1
# (TensorRT developer guide, sampleINT8 CalibrationTable example).
SCALE_PRESERVING_OPS = ("Relu", "MaxPool", "Flatten", "Pad", "Transpose", "Reshape", "Squeeze")


def trt_version_code(version: str) -> int:
    """``"8.5.2"`` -> 8502, ``"10.3.0"`` -> 100300 (TensorRT's NV_TENSORRT_VERSION), for a supported version.

    The encoding and the range live in :mod:`edgeres.tensorrt_version`; this adds calibration's error type.
    """
    code = calibration_cache_code(version, error=CalibrationError)
    _check_supported(version_from_calibration_cache_code(code), version)
    return code


def version_from_code(code: int) -> str:
    """Inverse of :func:`trt_version_code`: 8502 -> ``"8.5.2"``."""
    return str(version_from_calibration_cache_code(code))


def _check_supported(version: TensorRTVersion, shown: object) -> None:
    if not _RANGE.contains(version):
        (lo_major, lo_minor), (end_major, _) = _RANGE.since, _RANGE.until or (99, 0)
        raise CalibrationError(
            f"unsupported TensorRT version {shown} for a calibration cache: expected {lo_major}.{lo_minor} to "
            f"{end_major - 1}.x (TensorRT {end_major} reads no cache: use model.qdq.onnx; older than "
            f"{lo_major}.{lo_minor} is not supported)"
        )


def scale_to_hex(scale: float) -> str:
    """float32 big-endian bits as 8 lowercase hex digits."""
    return struct.pack(">f", float(scale)).hex()


def hex_to_scale(text: str) -> float:
    return float(struct.unpack(">f", bytes.fromhex(text))[0])


def calibration_cache_text(scales: Mapping[str, float], trt_version: str = DEFAULT_TENSORRT) -> str:
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


def cache_tensors(model: Any) -> list[str]:
    """Every tensor a TensorRT cache of ``model`` lists: float graph inputs, then every node output, in graph order.

    Constants (initializers, Constant nodes) are weights, not activations, and have no entry.
    """
    constants = {i.name for i in model.graph.initializer}
    constants |= {o for n in model.graph.node if n.op_type == "Constant" for o in n.output}
    names = [v.name for v in model.graph.input if v.name not in constants and v.type.tensor_type.elem_type == 1]
    for node in model.graph.node:
        if node.op_type != "Constant":
            names += [o for o in node.output if o and o not in constants]
    return list(dict.fromkeys(names))


def cache_scales(model: Any, scales: Mapping[str, float], quantized: Iterable[str]) -> dict[str, float]:
    """The scale of every tensor of :func:`cache_tensors`, consistent with the Q/DQ model, in graph order.

    Args:
        model: the FP32 ONNX model.
        scales: calibrated scales (at least every tensor :func:`~edgeres.calibrate.stats.observed_tensors` lists).
        quantized: the tensors the Q/DQ model quantizes.

    Rules, in order (so the implicit-INT8 engine computes what the Q/DQ model states):

    1. a quantized tensor keeps its Q/DQ scale;
    2. scales cross the scale-preserving ops of :data:`SCALE_PRESERVING_OPS` as NVIDIA's
       qdq-translator does: forward to an output without a Q/DQ scale, then backward to an input
       read by nothing else (the stem ReLU before MaxPool takes the MaxPool output's scale);
    3. every other tensor keeps its own calibrated scale, except a tensor read only by ReLUs, which
       takes the ReLU output's scale: ReLU commutes with a symmetric scale (the non-negative part
       is unchanged, the negative part becomes 0 either way), so its input needs no own range.

    Raises:
        CalibrationError: a tensor has no scale by any rule (statistics for another model?).
    """
    tensors = cache_tensors(model)
    known: dict[str, float] = {n: float(scales[n]) for n in quantized}
    consumers: dict[str, list[Any]] = {}
    for node in model.graph.node:
        for i in node.input:
            consumers.setdefault(i, []).append(node)
    preserving = [n for n in model.graph.node if n.op_type in SCALE_PRESERVING_OPS and n.input and n.output]
    for node in preserving:  # forward, graph order
        if node.input[0] in known and node.output[0] not in known:
            known[node.output[0]] = known[node.input[0]]
    for node in reversed(preserving):  # backward, reverse graph order
        src = node.input[0]
        if node.output[0] in known and src not in known and len(consumers.get(src, [])) == 1 and src in tensors:
            known[src] = known[node.output[0]]
    result: dict[str, float] = {}
    by_output = {o: n for n in model.graph.node for o in n.output}
    for name in reversed(tensors):  # ReLU outputs come after their inputs: resolve them first
        if name in known:
            result[name] = known[name]
            continue
        users = consumers.get(name, [])
        if users and all(u.op_type == "Relu" for u in users) and users[0].output[0] in result:
            result[name] = result[users[0].output[0]]
        elif name in scales:
            result[name] = float(scales[name])
        else:
            made_by = by_output.get(name)
            raise CalibrationError(
                f"no scale for tensor {name!r} ({made_by.op_type if made_by else 'graph input'}); "
                "the calibration statistics do not cover this model"
            )
    return {name: result[name] for name in tensors}


def write_calibration_cache(path: str | os.PathLike[str], scales: Mapping[str, float], trt_version: str = DEFAULT_TENSORRT) -> Path:
    """Write a TensorRT calibration cache atomically; returns the path."""
    return write_text_atomic(path, calibration_cache_text(scales, trt_version))


def parse_calibration_cache(
    text: str, source: str = "cache", warn: Callable[[str], None] | None = None
) -> tuple[str, str, dict[str, float]]:
    """(TensorRT version, calibrator name, scales) from cache text.

    Entries TensorRT writes for its own unnamed layers (``(Unnamed Layer* N) [Shuffle]_output``) and
    values written as ``0`` are skipped; ``warn`` (default: :func:`warnings.warn`) gets one line per kind.

    Raises:
        CalibrationError: malformed header or line, unsupported version, bad scale.
    """
    if not isinstance(text, str):
        raise CalibrationError(f"{source}: expected cache text, received {type(text).__name__}")
    if text.count("\n") > MAX_LINES:
        raise CalibrationError(f"{source} has more than {MAX_LINES} lines; expected one per tensor of a model")
    lines = [ln.rstrip("\r") for ln in text.split("\n")]
    while lines and not lines[-1].strip():
        lines.pop()
    if not lines:
        raise CalibrationError(f"{source} is empty; expected a header like TRT-100300-EntropyCalibration2")
    match = _HEADER.fullmatch(lines[0].strip())
    if not match or match.group(2) not in CALIBRATOR_NAMES:
        raise CalibrationError(
            f"{source} line 1 is {lines[0][:60]!r}; expected TRT-<version>-<calibrator> with a calibrator among "
            f"{', '.join(CALIBRATOR_NAMES)} (not a TensorRT calibration cache?)"
        )
    code = int(match.group(1))
    version = version_from_calibration_cache_code(code)
    _check_supported(version, f"{version} (code {code})")
    scales: dict[str, float] = {}
    unnamed: list[str] = []
    zeros: list[str] = []
    for number, line in enumerate(lines[1:], start=2):
        m = _LINE.fullmatch(line)
        if not m or has_control_characters(m.group(1)):
            raise CalibrationError(f"{source} line {number} is {line[:80]!r}; expected '<tensor name>: <8 hex digits>'")
        name, value = m.group(1), hex_to_scale(m.group(2).rjust(8, "0"))
        if _UNNAMED.match(name):
            unnamed.append(name)
            continue
        if value == 0:
            zeros.append(name)
            continue
        if not (np.isfinite(value) and value > 0):
            raise CalibrationError(f"{source} line {number}: scale of {name!r} is {value}; expected finite and positive")
        if name in scales:
            raise CalibrationError(f"{source} line {number}: tensor {name!r} appears twice")
        scales[name] = value
    warn = warn or (lambda message: warnings.warn(message, stacklevel=3))
    if unnamed:
        warn(f"warning: {source}: skipped {len(unnamed)} entries of TensorRT's unnamed layers (e.g. {unnamed[0]!r}); "
             "they name no ONNX tensor")
    if zeros:
        warn(f"warning: {source}: skipped {len(zeros)} tensors with scale 0 (e.g. {zeros[0]!r}); "
             "TensorRT writes 0 for tensors it does not quantize")
    if not scales:
        raise CalibrationError(f"{source} has a header but no tensor scales")
    return str(version), match.group(2), scales


def read_calibration_cache_file(path: str | os.PathLike[str],
                                warn: Callable[[str], None] | None = None) -> tuple[str, str, dict[str, float]]:
    """(TensorRT version, calibrator name, scales) of a cache file, read bounded.

    The file must be a regular file (a FIFO is refused before it is opened) of at most
    :data:`edgeres._readers.MAX_CACHE_BYTES`, in UTF-8 text.
    """
    data = read_regular_file(path, MAX_CACHE_BYTES, "calibration cache", CalibrationError)
    try:
        text = text_from_bytes(data, f"calibration cache {path}", CalibrationError)
    except CalibrationError as exc:
        raise CalibrationError(f"{path} is not a text calibration cache (binary file?): {exc}") from None
    return parse_calibration_cache(text, str(path), warn)


def read_calibration_cache(path: str | os.PathLike[str], warn: Callable[[str], None] | None = None) -> dict[str, float]:
    """Scales (tensor name -> scale) of a TensorRT calibration cache file (see :func:`parse_calibration_cache`)."""
    return read_calibration_cache_file(path, warn)[2]


def qdq_model_from_cache(
    model: Any,
    cache: str | os.PathLike[str] | Mapping[str, float],
    *,
    placement: str = "tensorrt",
    warn: Callable[[str], None] | None = None,
    **options: Any,
) -> Any:
    """A Q/DQ ModelProto from an FP32 ModelProto and an existing cache (TensorRT 8/10 -> 11 migration).

    ``options`` go to :func:`~edgeres.calibrate.qdq.qdq_model` (``weight_form``, ``quantize_classifier``);
    ``warn`` gets the warnings about skipped cache entries (see :func:`parse_calibration_cache`).

    Raises:
        CalibrationError: the cache is malformed, or names tensors that are not
            in this model, or lacks a tensor the Q/DQ model needs.
    """
    from edgeres.calibrate.qdq import qdq_model, quantized_activations

    scales = dict(cache) if isinstance(cache, Mapping) else read_calibration_cache(cache, warn)
    tensors = {i.name for i in model.graph.input} | {o for n in model.graph.node for o in n.output}
    foreign = [n for n in scales if n not in tensors]
    needed = quantized_activations(model, quantize_classifier=options.get("quantize_classifier", False))
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
    return qdq_model(model, scales, placement=placement, **options)


def qdq_file_from_cache(
    model_onnx: str | os.PathLike[str],
    cache: str | os.PathLike[str],
    output: str | os.PathLike[str],
    *,
    warn: Callable[[str], None] | None = None,
    **options: Any,
) -> Path:
    """Write ``output`` (a Q/DQ ONNX) from an FP32 ONNX file and a TensorRT calibration cache file.

    ``options`` and ``warn`` as for :func:`qdq_model_from_cache`.
    """
    import onnx

    from edgeres._io import write_bytes_atomic

    output = Path(output)
    path = Path(model_onnx)
    if check_regular_file(path, "ONNX model", CalibrationError).st_size == 0:
        raise CalibrationError(f"ONNX model {path} is empty (0 bytes); expected a serialized FP32 ONNX model")
    try:
        model = onnx.load(str(path))
        onnx.checker.check_model(model)
    except Exception as exc:  # protobuf and the checker raise several types for corrupt files
        detail = str(exc).strip().splitlines()[0][:160] if str(exc).strip() else ""
        raise CalibrationError(f"{path} is not a valid ONNX model ({type(exc).__name__}"
                               + (f": {detail}" if detail else "") + ")") from None
    if not model.graph.node:
        raise CalibrationError(f"ONNX model {path} has no nodes; expected the FP32 model the cache was made for")
    data = qdq_model_from_cache(model, cache, warn=warn, **options).SerializeToString()
    if not output.parent.exists() and output.parent.parent.is_dir():
        output.parent.mkdir()  # the output folder appears only once there is something to put in it
    return write_bytes_atomic(output, data)
