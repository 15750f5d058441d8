"""Streaming activation statistics: one pass, bounded memory, independent of batching.

Each observed tensor keeps one :class:`~edgeres.calibrate.calibrators.Histogram`
of ``|x|`` over a power-of-two range. When a batch exceeds the range, the
range doubles as often as needed and pairs of bins merge exactly, so the
final counts equal a histogram taken over all samples at once with the final
range: bit-identical for any batch size or sample order. Memory is one batch
of activations plus ``bins`` int64 counts per tensor.

Activations come from onnxruntime, with the observed tensors added as extra
graph outputs, so tensor names are exactly the ONNX names that TensorRT's
calibration cache and the Q/DQ model use.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Iterable, Sequence

import numpy as np

from edgeres.calibrate.calibrators import DEFAULT_BINS, Histogram
from edgeres.errors import CalibrationError, DataError

WEIGHTED_OPS = ("Conv", "Gemm", "MatMul", "ConvTranspose")
MAX_ACTIVATION_BYTES = 512 * 1024 * 1024  # observed activations held at once (one inference call)


def update_histogram(hist: Histogram, values: np.ndarray, *, name: str = "tensor", consume: bool = False) -> None:
    """Add ``|values|`` to ``hist`` in place (see module docstring for exactness).

    Args:
        hist: the histogram to update.
        values: activations of any shape.
        name: tensor name for error messages.
        consume: allow overwriting ``values`` (a float32 array the caller no
            longer needs) instead of copying it; saves one pass and one allocation.

    Raises:
        CalibrationError: ``values`` holds NaN or Inf (the message names the tensor).
    """
    values = np.asarray(values)
    if consume and values.dtype == np.float32 and values.flags.writeable and values.flags.c_contiguous:
        flat = values.reshape(-1)
        np.abs(flat, out=flat)
    else:
        flat = np.abs(values.astype(np.float32, copy=False).reshape(-1))
    if flat.size == 0:
        return
    batch_max = float(flat.max())
    if not math.isfinite(batch_max):
        bad = int(np.count_nonzero(~np.isfinite(flat)))
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
    if hist.exponent is None:  # only zeros so far: they belong in bin 0 at any range
        hist.counts[0] += flat.size
        return
    factor = np.float32(math.ldexp(1.0, -hist.exponent) * hist.bins)  # a power of two: the product is exact
    np.multiply(flat, factor, out=flat)
    hist.counts += np.bincount(flat.astype(np.intp), minlength=hist.bins)


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

    def absorb(outputs: list[np.ndarray], first: int) -> None:
        if halves is not None:  # sample i goes to half i % 2 (global index: independent of batching)
            for name, value in zip(names, outputs):
                even = first % 2
                for half, part in ((halves[0], value[even::2]), (halves[1], value[1 - even::2])):
                    part = np.array(part, dtype=np.float32, order="C")  # one copy, then abs in place
                    update_histogram(half[name], part, name=name, consume=True)
            return
        shared = _aliased(outputs)
        for index, (name, value) in enumerate(zip(names, outputs)):
            update_histogram(hists[name], value, name=name, consume=index not in shared)

    seen = 0
    chunk = 1  # samples per inference call: 1 until the activation size per sample is known
    # one worker folds call k's activations into the histograms while onnxruntime runs call k+1;
    # a single worker applies the updates in call order, and the counts do not depend on it anyway
    with ThreadPoolExecutor(max_workers=1) as worker:
        pending = None
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
                    # bounded memory: at most two calls' activations (one being folded) under the cap
                    per_sample_bytes = max(1, sum(o.nbytes for o in outputs) // len(part))
                    chunk = int(max(1, min(batch_size, max_activation_bytes // (2 * per_sample_bytes))))
                if pending is not None:
                    pending.result()  # re-raises a NaN/Inf error from the worker
                pending = worker.submit(absorb, outputs, seen + start)
                del outputs
                start += len(part)
            seen += len(images)
            if progress is not None:
                progress(len(images))
        if pending is not None:
            pending.result()
    if seen == 0:
        raise CalibrationError("calibration dataset is empty; expected at least one sample")
    if halves is not None:
        return {n: merge_histograms(halves[0][n], halves[1][n]) for n in names}
    return hists


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
