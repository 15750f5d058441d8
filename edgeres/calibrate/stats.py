"""Streaming activation statistics: one pass, bounded memory, independent of batching.

Each observed tensor keeps one :class:`~edgeres.calibrate.calibrators.Histogram`
of ``|x|`` over a power-of-two range. When a batch exceeds the range, the
range doubles as often as needed and pairs of bins merge exactly, so the
final counts equal a histogram taken over all samples at once with the final
range: bit-identical for any batch size or sample order. Memory is one
inference call's activations (at most :data:`MAX_ACTIVATION_BYTES`), one
index buffer per histogram worker (:mod:`edgeres.calibrate.binning`) and ``bins``
int64 counts per tensor.

Activations come from onnxruntime, with the observed tensors added as extra
graph outputs, so tensor names are exactly the ONNX names that TensorRT's
calibration cache and the Q/DQ model use. onnxruntime and the histogram
workers take turns on the cores: threads for small passes, processes binning a
shared block onnxruntime writes into for large ones (:mod:`edgeres.calibrate.workers`;
``np.bincount`` holds the GIL).
"""

from __future__ import annotations

import contextlib
import os
from typing import Any, Callable, Iterable, Sequence

import numpy as np

from edgeres.calibrate.binning import (  # noqa: F401  (update_histogram, merge_histograms: public here too)
    _Scratch,
    merge_histograms,
    update_halves,
    update_histogram,
)
from edgeres.calibrate.calibrators import DEFAULT_BINS, Histogram
from edgeres.calibrate.workers import ProcessBinning, Slot, WorkerStartError
from edgeres.errors import CalibrationError, DataError

WEIGHTED_OPS = ("Conv", "Gemm", "MatMul", "ConvTranspose")
MAX_ACTIVATION_BYTES = 512 * 1024 * 1024  # observed activations held at once (one inference call)
HISTOGRAM_WORKERS = 4  # threads (or processes) binning one call's activations (at most the machine's cores)
# Worker processes pay for their start (~0.3 s) from about this many values (ResNet-18 at 224: 3.6 M per image)
PROCESS_MIN_VALUES = 1 << 27


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
    process_min_values: int | None = PROCESS_MIN_VALUES,
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
        process_min_values: bin in worker processes (:mod:`edgeres.calibrate.workers`) when the pass
            holds at least this many activation values and more than one core is free; None: never.

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
    binning = None  # worker processes, once the pass is known to be large enough to pay for them
    # onnxruntime and the histogram workers take turns, each with every core: measured on 2 cores
    # (ResNet-18, 256 images), 6.2 s against 7.1 s for one worker binning call k while onnxruntime
    # runs call k+1, whose threads then fight for the same cores. Each tensor's updates stay in call order.
    # Large passes bin in worker processes (np.bincount holds the GIL): ResNet-50, 256 images, 2 cores:
    # 19.8 s against 21.2 s in threads (collect_statistics alone, same run).
    with contextlib.ExitStack() as stack:
        pool = stack.enter_context(ThreadPoolExecutor(max_workers=workers))
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
                if binning is not None:
                    _run_into(session, binning, input_name, part, names)
                    try:
                        binning.bin(len(part), seen + start)
                        start += len(part)
                        continue
                    except WorkerStartError:  # bin this call here from the block, and the rest in threads
                        outputs = [binning.views[n][:len(part)].copy() if n != input_name else np.array(part)
                                   for n in names]
                        binning.close()
                        binning = None
                else:
                    outputs = session.run(names, {input_name: part})
                if seen == 0 and start == 0:
                    # bounded memory: one call's activations under the cap
                    per_sample_bytes = max(1, sum(o.nbytes for o in outputs) // len(part))
                    chunk = int(max(1, min(batch_size, max_activation_bytes // per_sample_bytes)))
                    groups = _balanced_groups([o.size for o in outputs], workers)
                    values = sum(o.size for o in outputs) // len(part) * len(dataset)
                    if process_min_values is not None and len(groups) > 1 and values >= process_min_values:
                        slots, offset = [], 0
                        for name, out in zip(names, outputs):
                            slots.append(Slot(name, offset, tuple(out.shape[1:]), name in nonnegative))
                            offset += -(-chunk * out[0].nbytes // 64) * 64  # 64-byte aligned per tensor
                        try:
                            binning = stack.enter_context(ProcessBinning(slots, groups, chunk, bins, halves is not None))
                        except (OSError, ValueError):  # no shared memory or no subprocesses here: bin in threads
                            binning = None
                shared = _aliased(outputs)
                for done in [pool.submit(absorb, outputs, seen + start, g, scratches[k], shared) for k, g in enumerate(groups)]:
                    done.result()  # re-raises a NaN/Inf error from a worker
                del outputs
                start += len(part)
            seen += len(images)
            if progress is not None:
                progress(len(images))
        if binning is not None:  # the first call was binned here, the rest by the processes: merge exactly
            whole, split = binning.histograms()
            for name in names:
                hists[name] = merge_histograms(hists[name], whole[name])
                if halves is not None and split is not None:
                    for k in range(2):
                        halves[k][name] = merge_histograms(halves[k][name], split[k][name])
    if seen == 0:
        raise CalibrationError("calibration dataset is empty; expected at least one sample")
    if halves is not None:
        return {n: merge_histograms(halves[0][n], halves[1][n]) for n in names}
    return hists


def _run_into(session: Any, binning: "ProcessBinning", input_name: str, part: np.ndarray, names: Sequence[str]) -> None:
    """One inference call writing every observed tensor straight into ``binning``'s shared block (no copy).

    onnxruntime does not write a graph input it echoes as an output into a bound buffer
    (it hands back the input itself), so an observed input is copied into its slot by hand.
    """
    count = len(part)
    binding = session.io_binding()
    if input_name in binning.views:
        feed = binning.views[input_name][:count]
        np.copyto(feed, part)
    else:
        feed = np.ascontiguousarray(part, dtype=np.float32)
    binding.bind_cpu_input(input_name, feed)
    for name in names:
        if name == input_name:
            continue
        view = binning.views[name][:count]
        binding.bind_output(name, "cpu", 0, np.float32, list(view.shape), view.ctypes.data)
    session.run_with_iobinding(binding)


def _balanced_groups(sizes: Sequence[int], count: int) -> list[list[int]]:
    """Indices ``0..len(sizes)-1`` split into ``count`` groups of about equal total size (largest first)."""
    groups: list[list[int]] = [[] for _ in range(count)]
    load = [0] * count
    for index in sorted(range(len(sizes)), key=lambda i: (-sizes[i], i)):
        k = load.index(min(load))
        groups[k].append(index)
        load[k] += sizes[index]
    return [sorted(g) for g in groups if g]
