"""Streaming activation statistics: one pass, bounded memory, independent of batching.

Each observed tensor keeps one :class:`~edgeres.calibrate.calibrators.Histogram`
of ``|x|`` over a power-of-two range. When a batch exceeds the range, the
range doubles as often as needed and pairs of bins merge exactly, so the
final counts equal a histogram taken over all samples at once with the final
range: bit-identical for any batch size or sample order. Memory is one
inference call's activations (at most :data:`MAX_ACTIVATION_BYTES`), one
:data:`SCRATCH_ELEMENTS` index buffer per histogram worker and ``bins`` int64
counts per tensor.

Activations come from onnxruntime, with the observed tensors added as extra
graph outputs, so tensor names are exactly the ONNX names that TensorRT's
calibration cache and the Q/DQ model use. onnxruntime and the histogram
workers take turns on the cores; the binning is numpy's cheapest exact route
(a power-of-two multiply straight into a reused intp buffer, then
``np.bincount``, about 2.4 ns per value on the 2-core CI machine), and it skips
the absolute value on tensors that cannot be negative.
"""

from __future__ import annotations

import math
import os
from typing import Any, Callable, Iterable, Sequence

import numpy as np

from edgeres.calibrate.calibrators import DEFAULT_BINS, Histogram
from edgeres.errors import CalibrationError, DataError

WEIGHTED_OPS = ("Conv", "Gemm", "MatMul", "ConvTranspose")
MAX_ACTIVATION_BYTES = 512 * 1024 * 1024  # observed activations held at once (one inference call)
HISTOGRAM_WORKERS = 4  # threads binning one call's activations (at most the machine's cores)


SCRATCH_ELEMENTS = 1 << 22  # bin indices computed at once (32 MiB of intp), reused for every tensor


class _Scratch:
    """One reusable intp buffer for bin indices: no fresh allocation (and page faults) per tensor."""

    def __init__(self) -> None:
        self.buffer = np.empty(0, dtype=np.intp)

    def take(self, size: int) -> np.ndarray:
        if self.buffer.size < size:
            self.buffer = np.empty(size, dtype=np.intp)
        return self.buffer[:size]


def _range_from_max(hist: Histogram, batch_max: float, *, name: str, values: np.ndarray) -> None:
    """Grow ``hist``'s absmax and power-of-two range to cover ``batch_max`` (the max of ``|values|``)."""
    if not math.isfinite(batch_max):
        bad = int(np.count_nonzero(~np.isfinite(values)))
        raise CalibrationError(
            f"tensor {name!r} holds {bad} NaN/Inf value(s) during calibration; "
            "check the input data (NaN/Inf pixels?) or the weights (overflow?)"
        )
    hist.absmax = max(hist.absmax, batch_max)
    if batch_max > 0:
        exponent = math.frexp(batch_max)[1]  # batch_max < 2**exponent
        if hist.exponent is None:
            hist.exponent = exponent
        elif exponent > hist.exponent:
            _widen(hist, exponent)


def _count_bins(hist: Histogram, magnitudes: np.ndarray, scratch: _Scratch) -> None:
    """Add ``magnitudes`` (``|x|``, all below ``2**hist.exponent``; any layout) to ``hist.counts``.

    Each value's bin is ``floor(|x| * bins / 2**exponent)``: the multiply by a power of two is exact
    in float32 and numpy writes it straight into a reused intp buffer (``casting="unsafe"``
    truncates, which is floor for these non-negative values), block by block of samples, so no
    float copy and no fresh index array is made.
    """
    size = magnitudes.size
    if size == 0:
        return
    if hist.exponent is None:  # only zeros so far: they belong in bin 0 at any range
        hist.counts[0] += size
        return
    factor = np.float32(math.ldexp(1.0, -hist.exponent) * hist.bins)
    rows = magnitudes.reshape(len(magnitudes), -1) if magnitudes.ndim > 1 else magnitudes.reshape(1, -1)
    per_row = rows.shape[1]
    group = max(1, SCRATCH_ELEMENTS // max(1, per_row))
    for first in range(0, len(rows), group):
        block = rows[first:first + group]
        index = scratch.take(block.size).reshape(block.shape)
        np.multiply(block, factor, out=index, casting="unsafe")
        hist.counts += np.bincount(index.reshape(-1), minlength=hist.bins)


def update_histogram(hist: Histogram, values: np.ndarray, *, name: str = "tensor", consume: bool = False,
                     nonnegative: bool = False, scratch: _Scratch | None = None) -> None:
    """Add ``|values|`` to ``hist`` in place (see module docstring for exactness).

    Args:
        hist: the histogram to update.
        values: activations of any shape.
        name: tensor name for error messages.
        consume: allow overwriting ``values`` (a float32 array the caller no
            longer needs) instead of copying it; saves one pass and one allocation.
        nonnegative: ``values`` cannot be negative (a ReLU's output: ONNX ``Relu`` is
            ``max(0, x)``), so ``|values|`` is ``values`` and no absolute value is taken.
        scratch: index buffer to reuse (a statistics pass keeps one per worker).

    Raises:
        CalibrationError: ``values`` holds NaN or Inf (the message names the tensor).
    """
    magnitudes = _magnitudes(np.asarray(values), consume=consume, nonnegative=nonnegative)
    if magnitudes.size == 0:
        return
    _range_from_max(hist, float(magnitudes.max()), name=name, values=magnitudes)
    _count_bins(hist, magnitudes, scratch or _Scratch())


def _magnitudes(values: np.ndarray, *, consume: bool, nonnegative: bool) -> np.ndarray:
    """``|values|`` as float32: ``values`` itself when non-negative, in place when it may be consumed."""
    if values.dtype != np.float32:
        values = values.astype(np.float32)
        consume = True
    if nonnegative:
        return values
    if consume and values.flags.writeable and values.flags.c_contiguous:
        return np.abs(values, out=values)
    return np.abs(values)


def update_halves(halves: tuple[Histogram, Histogram], values: np.ndarray, first: int, *, name: str,
                  consume: bool = False, nonnegative: bool = False, scratch: _Scratch | None = None) -> None:
    """Add sample ``i`` of ``values`` (global index ``first + i``) to ``halves[(first + i) % 2]``.

    The halves are strided views of the samples (no copy); each keeps its own range, as if it
    had been histogrammed alone.
    """
    magnitudes = _magnitudes(np.asarray(values), consume=consume, nonnegative=nonnegative)
    if magnitudes.size == 0:
        return
    even = first % 2
    for hist, part in ((halves[0], magnitudes[even::2]), (halves[1], magnitudes[1 - even::2])):
        if part.size == 0:
            continue
        _range_from_max(hist, float(part.max()), name=name, values=part)
        _count_bins(hist, part, scratch or _Scratch())


def _aliased(arrays: Sequence[np.ndarray]) -> set[int]:
    """Indices of arrays whose memory may overlap another's (never overwritten in place)."""
    spans = sorted(
        (a.__array_interface__["data"][0], a.__array_interface__["data"][0] + a.nbytes, i) for i, a in enumerate(arrays)
    )
    shared: set[int] = set()
    end, owner = -1, -1
    for start, stop, i in spans:
        if start < end:
            shared.update((i, owner))
        if stop > end:
            end, owner = stop, i
    return shared


def _widen(hist: Histogram, exponent: int) -> None:
    shift = exponent - hist.exponent
    bins = hist.bins
    merged = np.zeros_like(hist.counts)
    if shift >= int(math.log2(bins)):
        merged[0] = hist.counts.sum()
    else:
        group = 1 << shift
        merged[: bins // group] = hist.counts.reshape(bins // group, group).sum(axis=1)
    hist.counts = merged
    hist.exponent = exponent


def nonnegative_tensors(model: Any) -> set[str]:
    """Tensors that cannot hold negative values by ONNX semantics: ``Relu`` outputs, and the outputs of
    max/average pooling, ``Flatten``/``Reshape``/``Identity`` of such tensors. Their histograms skip the
    absolute value (one pass over the largest activations of a ResNet)."""
    passthrough = {"MaxPool", "AveragePool", "GlobalAveragePool", "GlobalMaxPool", "Flatten", "Reshape", "Identity"}
    out: set[str] = set()
    for node in model.graph.node:
        if node.op_type == "Relu" or (node.op_type in passthrough and node.input and node.input[0] in out):
            out.update(o for o in node.output[:1] if o)
    return out


def histograms_from_arrays(batches: Iterable[dict[str, np.ndarray]], names: Sequence[str], bins: int = DEFAULT_BINS) -> dict[str, Histogram]:
    """Fold batches of ``{tensor name: activations}`` into one histogram per name."""
    hists = {n: Histogram.empty(bins) for n in names}
    for batch in batches:
        for n in names:
            update_histogram(hists[n], batch[n], name=n)
    return hists


def observed_tensors(model: Any) -> list[str]:
    """Activation tensors to calibrate, in graph order.

    Every float activation (graph input, node outputs) except those consumed
    only by a ReLU: the calibration cache gives them the ReLU output's scale
    (ReLU commutes with a symmetric scale; :func:`edgeres.calibrate.cache.cache_scales`),
    so a range of their own would never be used. This covers every input of a
    Conv/Gemm/GlobalAveragePool and both inputs of every residual Add (the Q/DQ
    model), and with that rule every tensor of the cache. Leaving the fused
    tensors out also keeps onnxruntime's own Conv+ReLU fusion during
    collection and cuts the activations copied out by about 40%.
    """
    graph = model.graph
    constants = {i.name for i in graph.initializer}
    constants |= {o for n in graph.node if n.op_type == "Constant" for o in n.output}
    graph_outputs = {o.name for o in graph.output}
    consumers: dict[str, list[str]] = {}
    for node in graph.node:
        for i in node.input:
            consumers.setdefault(i, []).append(node.op_type)
    names: list[str] = []
    seen: set[str] = set()
    for value in graph.input:
        if value.name not in constants and value.type.tensor_type.elem_type == 1:
            names.append(value.name)
            seen.add(value.name)
    for node in graph.node:
        if node.op_type == "Constant":
            continue
        for out in node.output:
            if not out or out in seen or out in constants:
                continue
            users = consumers.get(out, [])
            if users and all(u == "Relu" for u in users) and out not in graph_outputs:
                continue
            names.append(out)
            seen.add(out)
    return names


def session_with_outputs(model: Any, names: Sequence[str], *, threads: int = 0) -> Any:
    """An onnxruntime CPU session that also returns the tensors ``names``."""
    import onnx
    import onnxruntime as ort

    proto = onnx.ModelProto()
    proto.CopyFrom(model)
    existing = {o.name for o in proto.graph.output}
    for name in names:
        if name not in existing:
            proto.graph.output.append(onnx.helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None))
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    # The histogram worker folds call k while onnxruntime runs call k+1; a spinning pool would
    # burn the core that worker needs (measured: 12-14% faster calibration without spinning).
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    if threads:
        opts.intra_op_num_threads = threads
    return ort.InferenceSession(proto.SerializeToString(), opts, providers=["CPUExecutionProvider"])


def check_input_shape(model: Any, sample_shape: Sequence[int]) -> None:
    """Raise DataError when samples of (C, H, W) ``sample_shape`` do not fit the model's input."""
    dims = model.graph.input[0].type.tensor_type.shape.dim
    expected = [d.dim_value if d.dim_value else None for d in dims][1:]
    received = list(sample_shape)
    if len(expected) != len(received) or any(e is not None and e != r for e, r in zip(expected, received)):
        shown = ["?" if e is None else e for e in expected]
        raise DataError(
            f"calibration data has samples of shape {tuple(received)} but the model "
            f"{model.graph.input[0].name!r} expects {tuple(shown)} (channels, height, width); "
            "wrong recipe (input size / grayscale vs RGB) for this model?"
        )


def collect_statistics(
    model: Any,
    dataset: Any,
    names: Sequence[str] | None = None,
    *,
    batch_size: int = 32,
    bins: int = DEFAULT_BINS,
    progress: Callable[[int], None] | None = None,
    max_activation_bytes: int = MAX_ACTIVATION_BYTES,
    halves: tuple[dict[str, Histogram], dict[str, Histogram]] | None = None,
    threads: int = 0,
) -> dict[str, Histogram]:
    """One streaming pass of ``dataset`` through ``model`` (an ONNX ModelProto).

    Args:
        model: the FP32 ONNX model.
        dataset: anything with ``batches(batch_size)`` yielding (NCHW float32, labels).
        names: tensors to observe (default :func:`observed_tensors`).
        batch_size: samples read per batch; results do not depend on it. Inference
            calls take fewer when one batch's observed activations would exceed
            ``max_activation_bytes``.
        bins: histogram bins per tensor.
        progress: called with the number of samples of each finished batch.
        halves: two empty dicts to fill with the histograms of the even- and the odd-numbered
            samples (for :func:`stability_rows`); the returned histograms are then their exact
            merge (:func:`merge_histograms`), so each value is still binned once.
        threads: onnxruntime intra-op threads (0: its default).

    Raises:
        DataError: samples that do not fit the model's input, or NaN/Inf in them.
        CalibrationError: NaN/Inf in an activation (named), or an empty dataset.
    """
    from concurrent.futures import ThreadPoolExecutor

    names = list(names) if names is not None else observed_tensors(model)
    input_name = model.graph.input[0].name
    session = session_with_outputs(model, names, threads=threads)
    hists = {n: Histogram.empty(bins) for n in names}
    if halves is not None:
        for half in halves:
            half.clear()
            half.update({n: Histogram.empty(bins) for n in names})

    nonnegative = nonnegative_tensors(model)
    workers = max(1, min(HISTOGRAM_WORKERS, os.cpu_count() or 1))
    scratches = [_Scratch() for _ in range(workers)]  # one per worker: each tensor is binned by one worker only
    groups: list[list[int]] = []

    def absorb(outputs: list[np.ndarray], first: int, group: list[int], scratch: _Scratch, shared: set[int]) -> None:
        for index in group:
            name, value = names[index], outputs[index]
            kind = {"name": name, "consume": index not in shared, "nonnegative": name in nonnegative, "scratch": scratch}
            if halves is not None:  # sample i goes to half i % 2 (global index: independent of batching)
                update_halves((halves[0][name], halves[1][name]), value, first, **kind)
            else:
                update_histogram(hists[name], value, **kind)

    seen = 0
    chunk = 1  # samples per inference call: 1 until the activation size per sample is known
    # onnxruntime and the histogram workers take turns, each with every core: measured on 2 cores
    # (ResNet-18, 256 images), 6.2 s against 7.1 s for one worker binning call k while onnxruntime
    # runs call k+1, whose threads then fight for the same cores. Each tensor's updates stay in call order.
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for images, _ in dataset.batches(batch_size):
            if seen == 0:
                check_input_shape(model, images.shape[1:])
            if not np.isfinite(images).all():
                raise DataError(
                    f"calibration samples {seen}..{seen + len(images) - 1} hold NaN/Inf values; "
                    "fix or drop those samples"
                )
            start = 0
            while start < len(images):
                part = images[start:start + chunk]
                outputs = session.run(names, {input_name: part})
                if seen == 0 and start == 0:
                    # bounded memory: one call's activations under the cap
                    per_sample_bytes = max(1, sum(o.nbytes for o in outputs) // len(part))
                    chunk = int(max(1, min(batch_size, max_activation_bytes // per_sample_bytes)))
                    groups = _balanced_groups([o.size for o in outputs], workers)
                shared = _aliased(outputs)
                for done in [pool.submit(absorb, outputs, seen + start, g, scratches[k], shared) for k, g in enumerate(groups)]:
                    done.result()  # re-raises a NaN/Inf error from a worker
                del outputs
                start += len(part)
            seen += len(images)
            if progress is not None:
                progress(len(images))
    if seen == 0:
        raise CalibrationError("calibration dataset is empty; expected at least one sample")
    if halves is not None:
        return {n: merge_histograms(halves[0][n], halves[1][n]) for n in names}
    return hists


def _balanced_groups(sizes: Sequence[int], count: int) -> list[list[int]]:
    """Indices ``0..len(sizes)-1`` split into ``count`` groups of about equal total size (largest first)."""
    groups: list[list[int]] = [[] for _ in range(count)]
    load = [0] * count
    for index in sorted(range(len(sizes)), key=lambda i: (-sizes[i], i)):
        k = load.index(min(load))
        groups[k].append(index)
        load[k] += sizes[index]
    return [sorted(g) for g in groups if g]


def merge_histograms(a: Histogram, b: Histogram) -> Histogram:
    """The exact histogram of the values of ``a`` and ``b`` together (power-of-two ranges merge exactly)."""
    if a.bins != b.bins:
        raise CalibrationError(f"cannot merge histograms of {a.bins} and {b.bins} bins")
    out = Histogram.empty(a.bins)
    out.absmax = max(a.absmax, b.absmax)
    exponents = [h.exponent for h in (a, b) if h.exponent is not None]
    if not exponents:
        out.counts = a.counts + b.counts  # zeros only: bin 0
        return out
    out.exponent = max(exponents)
    for h in (a, b):
        part = Histogram(h.counts.copy(), h.exponent, h.absmax)
        if part.exponent is None:
            out.counts += part.counts  # zeros belong in bin 0 at any range
            continue
        if part.exponent < out.exponent:
            _widen(part, out.exponent)
        out.counts += part.counts
    return out
