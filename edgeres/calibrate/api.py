"""``calibrate``: FP32 ONNX + calibration data -> Q/DQ ONNX, TensorRT cache and report.

One streaming statistics pass feeds both outputs: the Q/DQ model (explicit
quantization and onnxruntime; ``model.qdq.onnx`` with INT8 weights for TensorRT
10+, ``model.qdq.trt8.onnx`` with FP32 weights and Q/DQ for 8.5/8.6, see
``edgeres.calibrate.qdq.WEIGHT_FORM_RULES``) and the calibration cache, which
lists every tensor (implicit INT8 and the DLA on TensorRT 8.5 to 10.x). Outputs are assembled in
memory and written atomically at the end: a failure leaves none of them.

:func:`calibrate` runs these steps, each a function named for what it makes from what:

1. :func:`options_from_arguments`, :func:`quantizable_onnx`: checks, before any work;
2. :func:`statistics_from_dataset`: one streaming pass, a histogram per activation;
3. :func:`thresholds_from_statistics`: the calibrator's amax and the INT8 scales;
4. :func:`fp32_reference_from_data`, :func:`int8_evaluation_from_thresholds`: INT8 vs FP32 logits;
5. :func:`budget_search_from_evaluation`: layers left unquantized until the accuracy budget holds;
6. :func:`layer_sqnr_from_qdq`, :func:`report_from_steps`: per-layer errors and the report;
7. :func:`artifacts_from_evaluation`, :func:`write_outputs`: serialized outputs, then the only writes.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import time
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import numpy as np

from edgeres._interrupt import checkpoint
from edgeres._io import atomic_files
from edgeres.calibrate.budget import Budget, BudgetOutcome, budget_report, rank_by_sensitivity, search_exclusions
from edgeres.calibrate.cache import cache_scales, calibration_cache_text, trt_version_code
from edgeres.calibrate.calibrators import (
    CALIBRATORS,
    DEFAULT_METHOD,
    DEFAULT_PERCENTILE,
    Histogram,
    compute_amax,
    scale_from_amax,
)
from edgeres.calibrate.qdq import qdq_model, qdq_summary, quantizable_layers, quantized_activations, weighted_nodes
from edgeres.calibrate.qdq import DLA_QDQ_NAME, unquantized_layers, weight_form_rule
from edgeres.calibrate.report import LayerErrorAccumulator, format_table, json_safe, layer_macs, layer_rows, tensor_rows
from edgeres.calibrate.stats import check_input_shape, collect_statistics, observed_tensors, session_with_outputs
from edgeres.errors import CalibrationError, DataError, OutputPathError
from edgeres.tensorrt_version import DEFAULT_TENSORRT

QDQ_NAME = weight_form_rule("int8").file_name  # model.qdq.onnx: INT8 weights, TensorRT 10+
QDQ_TRT8_NAME = weight_form_rule("fp32").file_name  # model.qdq.trt8.onnx: FP32 weights + Q/DQ, TensorRT 8.5/8.6
DEFAULT_QDQ_FORMS = ("int8", "fp32")  # weight forms calibrate() writes (see edgeres.calibrate.qdq.WEIGHT_FORM_RULES)
ORT_QDQ_NAME = "model.qdq.ort.onnx"  # same scales, onnxruntime placement: INT8 kernels on the CPU
CACHE_NAME = "calib.cache"
REPORT_NAME = "calib_report.json"
RANK_SAMPLES = 256  # evaluation samples used to rank layer sensitivity for the budget


@dataclasses.dataclass
class CalibrationResult:
    """What :func:`calibrate` wrote and found."""

    qdq_path: Path
    cache_path: Path
    report_path: Path
    report: dict[str, Any]
    excluded_layers: list[str]
    scales: dict[str, float]
    ort_qdq_path: Path | None = None
    qdq_paths: dict[str, Path] = dataclasses.field(default_factory=dict)  # weight form -> Q/DQ file
    dla_qdq_path: Path | None = None  # model.qdq.dla.onnx (placement "dla", TensorRT 11.x DLA), when asked

    @property
    def table(self) -> str:
        """The printed summary table."""
        return format_table(self.report)


@contextlib.contextmanager
def _progress_bar(total: int, enabled: bool, label: str) -> Iterator[Callable[[int], None] | None]:
    if not enabled:
        yield None
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    with Progress(
        TextColumn(label), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
        console=Console(stderr=True), transient=True,
    ) as bar:
        task = bar.add_task(label, total=total)
        yield lambda n: bar.advance(task, n)


def _check_out_dir(out_dir: Path) -> Path:
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise OutputPathError(f"output {out_dir} exists and is not a folder")
    if not out_dir.exists():
        parent = out_dir.parent if str(out_dir.parent) else Path(".")
        if not parent.is_dir():
            raise OutputPathError(f"cannot create {out_dir}: folder {parent} does not exist")
    if out_dir.exists() and not os.access(out_dir, os.W_OK | os.X_OK):
        raise OutputPathError(f"cannot write into {out_dir}: it is read-only")
    return out_dir


def _load_onnx(path: Path) -> Any:
    import onnx

    path = Path(path)
    if not path.is_file():
        raise CalibrationError(f"ONNX model {path} does not exist")
    try:
        return onnx.load(str(path))
    except Exception as exc:  # protobuf raises several types for corrupt files
        raise CalibrationError(f"{path} is not a readable ONNX model ({type(exc).__name__})") from exc


class _Evaluator:
    """FP32 reference logits held once; INT8 variants evaluated against them."""

    def __init__(self, model: Any, dataset: Any, batch_size: int) -> None:
        from edgeres.evaluate import run_onnx

        self.dataset = dataset
        self.batch_size = batch_size
        self.labels = dataset.labels
        check_input_shape(model, next(iter(dataset.batches(1)))[0].shape[1:])
        self.reference = run_onnx(model, dataset, batch_size=batch_size)
        if not np.isfinite(self.reference).all():
            raise CalibrationError("FP32 model produces NaN/Inf logits on the evaluation data")
        if self.labels is not None:  # before any accuracy (or budget) is computed on them
            from edgeres.evaluate import check_labels

            where = getattr(dataset, "source", None) or "evaluation data"
            self.labels = check_labels(self.labels, int(self.reference.reshape(len(self.reference), -1).shape[1]), str(where))

    def logits(self, proto: Any, limit: int | None = None) -> np.ndarray:
        from edgeres.evaluate import onnx_session

        session = onnx_session(proto)
        name = session.get_inputs()[0].name
        out, seen = [], 0
        for images, _ in self.dataset.batches(self.batch_size):
            if limit is not None and seen >= limit:
                break
            if limit is not None:
                images = images[: limit - seen]
            out.append(session.run(None, {name: images})[0])
            seen += len(images)
        return np.concatenate(out).astype(np.float32)

    def metrics(self, proto: Any) -> dict[str, Any]:
        from edgeres.evaluate import compare_logits

        return compare_logits(self.reference, self.logits(proto), self.labels)


def layer_sqnr_from_qdq(model: Any, qdq: Any, dataset: Any, batch_size: int, limit: int) -> dict[str, float]:
    """SQNR (dB) of every Conv/Gemm output of the INT8 model against FP32 (first ``limit`` samples)."""
    names = [n.output[0] for n in weighted_nodes(model)]
    fp32 = session_with_outputs(model, names)
    int8 = session_with_outputs(qdq, names)
    acc = LayerErrorAccumulator(names)
    input_name = model.graph.input[0].name
    seen = 0
    for images, _ in dataset.batches(batch_size):
        if seen >= limit:
            break
        images = images[: limit - seen]
        acc.add(fp32.run(names, {input_name: images}), int8.run(names, {input_name: images}))
        seen += len(images)
    by_tensor = acc.sqnr_db()
    return {n.name: by_tensor[n.output[0]] for n in weighted_nodes(model)}


def check_options(
    method: str,
    percentile: float,
    trt_version: str,
    max_accuracy_drop: float | None,
    min_agreement: float | None,
    has_eval: bool,
    batch_size: int,
) -> Budget:
    """Validate calibration options before any work; returns the budget."""
    if method not in CALIBRATORS:
        raise CalibrationError(f"unknown calibration method {method!r}; expected one of {', '.join(CALIBRATORS)}")
    if method == "percentile" and not 0 < percentile <= 100:
        raise CalibrationError(f"percentile must be in (0, 100], received {percentile}")
    trt_version_code(trt_version)
    budget = Budget(max_accuracy_drop, min_agreement)
    if budget.active and not has_eval:
        raise CalibrationError("an accuracy budget needs evaluation data (--eval-data); received none")
    if int(batch_size) < 1:
        raise CalibrationError(f"batch size must be at least 1, received {batch_size}")
    return budget


# ---------------------------------------------------------------- calibrate(), step by step
#
# options -> statistics -> thresholds -> evaluation -> budget search -> artifacts -> report -> writing.
# Every step before writing is free of side effects on disk, so a failure leaves no output.


@dataclasses.dataclass(frozen=True)
class CalibrationOptions:
    """The checked knobs of one calibration."""

    method: str
    percentile: float
    trt_version: str
    budget: Budget
    batch_size: int
    quantize_classifier: bool = False
    forms: tuple[str, ...] = ("int8",)  # weight forms to write; "int8" (model.qdq.onnx) always first


@dataclasses.dataclass(frozen=True)
class Statistics:
    """Activation histograms of the calibration data, and which data it was."""

    histograms: dict[str, Histogram]
    samples: int
    fingerprint: str | None


@dataclasses.dataclass(frozen=True)
class Thresholds:
    """Per-tensor clipping threshold (amax) from the calibrator, and its INT8 scale."""

    amax: dict[str, float]
    scales: dict[str, float]


@dataclasses.dataclass(frozen=True)
class Int8Evaluation:
    """A TensorRT-placement Q/DQ model, the layers it leaves unquantized, and its figures against FP32."""

    qdq: Any
    metrics: dict[str, Any]
    excluded: tuple[str, ...] = ()


@dataclasses.dataclass(frozen=True)
class Artifacts:
    """The serialized outputs: Q/DQ ONNX (TensorRT and onnxruntime placement) and the TensorRT cache."""

    qdq_bytes: bytes
    ort_qdq_bytes: bytes
    cache_text: str
    form_bytes: dict[str, bytes] = dataclasses.field(default_factory=dict)  # other weight forms -> Q/DQ ONNX
    dla_qdq_bytes: bytes | None = None  # placement "dla" (edgeres.calibrate.qdq.DLA_QDQ_NAME), when asked


class _Stopwatch:
    """Wall time of each step since the previous one, and ``total_s`` since the start."""

    def __init__(self) -> None:
        self.start = self.last = time.perf_counter()
        self.laps: dict[str, float] = {}

    def lap(self, name: str) -> None:
        now = time.perf_counter()
        self.laps[name] = now - self.last
        self.last = now

    def total(self) -> dict[str, float]:
        return {**self.laps, "total_s": time.perf_counter() - self.start}


def options_from_arguments(
    method: str,
    percentile: float,
    trt_version: str,
    max_accuracy_drop: float | None,
    min_agreement: float | None,
    eval_dataset: Any,
    batch_size: int,
    quantize_classifier: bool = False,
    qdq_forms: Sequence[str] = DEFAULT_QDQ_FORMS,
) -> CalibrationOptions:
    """Checked options (see :func:`check_options`); a drop budget also needs labelled evaluation data."""
    budget = check_options(method, percentile, trt_version, max_accuracy_drop, min_agreement, eval_dataset is not None, batch_size)
    if max_accuracy_drop is not None and getattr(eval_dataset, "labels", None) is None:
        raise DataError(
            "--max-accuracy-drop needs labelled evaluation data, but the evaluation set has no labels "
            "(use an ImageFolder layout or an .npz with labels, or --min-agreement instead)"
        )
    forms = tuple(dict.fromkeys(weight_form_rule(f).form for f in ("int8", *qdq_forms)))  # validates each form
    return CalibrationOptions(method, percentile, trt_version, budget, int(batch_size), bool(quantize_classifier), forms)


def quantizable_onnx(path: Path) -> Any:
    """The FP32 ModelProto at ``path``; CalibrationError unless it has a Conv/Gemm with constant weights."""
    model = _load_onnx(path)
    if not weighted_nodes(model):
        raise CalibrationError(f"{path} has no Conv/Gemm layer with constant weights to quantize")
    return model


def statistics_from_dataset(model: Any, dataset: Any, batch_size: int, progress: bool) -> Statistics:
    """Stream ``dataset`` through ``model`` once and histogram every observed activation."""
    with _progress_bar(len(dataset), progress, "calibration statistics") as advance:
        histograms = collect_statistics(model, dataset, batch_size=batch_size, progress=advance)
    checkpoint("calibrate:statistics")
    fingerprint = dataset.fingerprint() if hasattr(dataset, "fingerprint") else None
    return Statistics(histograms, len(dataset), fingerprint)


def thresholds_from_statistics(statistics: Statistics, method: str, percentile: float) -> Thresholds:
    """Run the calibrator on every histogram: amax, then the symmetric INT8 scale."""
    amax = {n: compute_amax(h, method, percentile=percentile) for n, h in statistics.histograms.items()}
    return Thresholds(amax, {n: scale_from_amax(a) for n, a in amax.items()})


def fp32_reference_from_data(model: Any, dataset: Any, eval_dataset: Any, batch_size: int) -> tuple[_Evaluator, str]:
    """FP32 logits on the evaluation data (the calibration data when None), and which data that is."""
    if eval_dataset is not None:
        return _Evaluator(model, eval_dataset, batch_size), "evaluation data"
    return _Evaluator(model, dataset, batch_size), "calibration data"


def int8_evaluation_from_thresholds(model: Any, thresholds: Thresholds, evaluator: _Evaluator,
                                    quantize_classifier: bool = False) -> Int8Evaluation:
    """Quantize every quantizable layer (the classifier only when asked) and compare the INT8 logits with FP32."""
    qdq = qdq_model(model, thresholds.scales, quantize_classifier=quantize_classifier)
    return Int8Evaluation(qdq, evaluator.metrics(qdq))


def budget_search_from_evaluation(
    model: Any, thresholds: Thresholds, evaluator: _Evaluator, budget: Budget, first: Int8Evaluation,
    quantize_classifier: bool = False,
) -> tuple[Int8Evaluation, BudgetOutcome | None]:
    """Leave the most sensitive layers unquantized until ``budget`` holds (see :mod:`edgeres.calibrate.budget`).

    Returns the final INT8 model (``first`` when there is no budget or it holds
    already) and the search's outcome (None without a budget).
    """
    if not budget.active:
        return first, None
    if budget.met(first.metrics):
        return first, BudgetOutcome(excluded=(), met=True)
    def quantized(exclude: Any) -> Any:
        return qdq_model(model, thresholds.scales, exclude=exclude, quantize_classifier=quantize_classifier)

    limit = min(RANK_SAMPLES, len(evaluator.reference))
    ranking = rank_by_sensitivity(
        quantizable_layers(model, quantize_classifier=quantize_classifier),
        lambda ex: evaluator.logits(quantized(ex), limit),
        evaluator.reference[:limit],
    )
    excluded, metrics, met, trail = search_exclusions(
        [name for name, _ in ranking], lambda ex: evaluator.metrics(quantized(ex)), budget, first.metrics
    )
    qdq = quantized(excluded) if excluded else first.qdq
    return Int8Evaluation(qdq, metrics, tuple(excluded)), BudgetOutcome(tuple(excluded), met, tuple(ranking), tuple(trail))


def artifacts_from_evaluation(model: Any, thresholds: Thresholds, int8: Int8Evaluation, options: CalibrationOptions,
                              dla: bool = False) -> Artifacts:
    """Serialize the final Q/DQ model (each weight form), its onnxruntime-placement twin and the TensorRT cache.

    The cache lists every tensor of the model, with scales consistent with the Q/DQ model
    (:func:`edgeres.calibrate.cache.cache_scales`). ``dla``: also the DLA-placement model (the
    cache's scales on every tensor, same excluded layers; ``qdq_model(placement="dla")``).
    """
    excluded, classifier = list(int8.excluded), options.quantize_classifier
    ort = qdq_model(model, thresholds.scales, exclude=excluded, placement="onnxruntime", quantize_classifier=classifier)
    forms = {
        form: qdq_model(model, thresholds.scales, exclude=excluded, weight_form=form,
                        quantize_classifier=classifier).SerializeToString()
        for form in options.forms if form != "int8"
    }
    quantized = quantized_activations(model, excluded, quantize_classifier=classifier)
    every = cache_scales(model, thresholds.scales, quantized)
    cache = calibration_cache_text(every, options.trt_version)
    dla_bytes = qdq_model(model, every, exclude=excluded, placement="dla").SerializeToString() if dla else None
    return Artifacts(int8.qdq.SerializeToString(), ort.SerializeToString(), cache, forms, dla_bytes)


def report_from_steps(
    model: Any,
    options: CalibrationOptions,
    statistics: Statistics,
    thresholds: Thresholds,
    evaluated_on: str,
    int8: Int8Evaluation,
    outcome: BudgetOutcome | None,
    layer_sqnr: dict[str, float],
) -> dict[str, Any]:
    """The ``calib_report.json`` content (strict JSON: inf/nan as strings), without ``timing``."""
    macs = layer_macs(model)
    excluded = list(int8.excluded)
    classifier = options.quantize_classifier
    report = {
        "edgeres_calibration": 1,
        "method": options.method,
        "percentile": options.percentile if options.method == "percentile" else None,
        "trt_version": options.trt_version,
        "trt_version_code": trt_version_code(options.trt_version),
        "calibration": {
            "samples": statistics.samples,
            "fingerprint": statistics.fingerprint,
            "histogram_bins": int(next(iter(statistics.histograms.values())).bins),
        },
        "evaluated_on": evaluated_on,
        "model": int8.metrics,
        "qdq": {**qdq_summary(int8.qdq), "placement": "tensorrt", "onnxruntime_variant": ORT_QDQ_NAME,
                "weight_forms": {f: weight_form_rule(f).file_name for f in options.forms},
                "classifier_quantized": classifier},
        "excluded_layers": excluded,
        "budget": budget_report(options.budget, outcome, macs),
        "total_macs": sum(macs.values()),
        "tensors": tensor_rows(
            observed_tensors(model), options.method, thresholds.amax, thresholds.scales, statistics.histograms,
            quantized=set(quantized_activations(model, excluded, quantize_classifier=classifier)),
        ),
        "layers": layer_rows(
            [(n.name, n.op_type) for n in weighted_nodes(model)], macs, layer_sqnr,
            excluded=set(unquantized_layers(model, excluded, quantize_classifier=classifier)),
        ),
    }
    return json_safe(report)


def report_text(report: dict[str, Any], timing: dict[str, float] | None) -> str:
    """``calib_report.json`` as written: indented JSON, ``timing`` last when given."""
    return json.dumps(report if timing is None else {**report, "timing": timing}, indent=2, sort_keys=False) + "\n"


def write_outputs(out_dir: Path, artifacts: Artifacts, text: str) -> tuple[dict[str, Path], Path, Path, Path]:
    """Write (Q/DQ ONNX per weight form, onnxruntime Q/DQ ONNX, cache, report) together; returns their paths.

    The files are staged, then renamed into ``out_dir`` in one step (a new
    ``out_dir`` appears whole), so an error, a full disk or a signal leaves
    none of them (:func:`edgeres._io.atomic_files`).
    """
    checkpoint("calibrate:write")
    names = {"int8": QDQ_NAME, **{f: weight_form_rule(f).file_name for f in artifacts.form_bytes}}
    with atomic_files(out_dir) as staging:
        (staging / QDQ_NAME).write_bytes(artifacts.qdq_bytes)
        for form, data in artifacts.form_bytes.items():
            (staging / names[form]).write_bytes(data)
        (staging / ORT_QDQ_NAME).write_bytes(artifacts.ort_qdq_bytes)
        if artifacts.dla_qdq_bytes is not None:
            (staging / DLA_QDQ_NAME).write_bytes(artifacts.dla_qdq_bytes)
        (staging / CACHE_NAME).write_text(artifacts.cache_text, encoding="utf-8")
        (staging / REPORT_NAME).write_text(text, encoding="utf-8")
    return {f: out_dir / n for f, n in names.items()}, out_dir / ORT_QDQ_NAME, out_dir / CACHE_NAME, out_dir / REPORT_NAME


def calibrate(
    model_onnx: str | os.PathLike[str],
    dataset: Any,
    out_dir: str | os.PathLike[str],
    *,
    method: str = DEFAULT_METHOD,
    percentile: float = DEFAULT_PERCENTILE,
    trt_version: str = DEFAULT_TENSORRT,
    eval_dataset: Any = None,
    max_accuracy_drop: float | None = None,
    min_agreement: float | None = None,
    batch_size: int = 32,
    progress: bool = True,
    timing: bool = True,
    qdq_forms: Sequence[str] = DEFAULT_QDQ_FORMS,
    quantize_classifier: bool = False,
    dla: bool = False,
) -> CalibrationResult:
    """Calibrate a folded FP32 ONNX model for INT8 and write the Q/DQ model, cache and report.

    Args:
        model_onnx: folded FP32 ONNX (input NCHW, first output the logits).
        dataset: calibration samples (an :class:`edgeres.data.Dataset` or anything
            with ``batches(batch_size)``, ``labels`` and ``__len__``).
        out_dir: folder for ``model.qdq.onnx`` (TensorRT placement), ``model.qdq.trt8.onnx`` (same, FP32
            weights with Q/DQ for TensorRT 8.5/8.6), ``calib.cache`` (every tensor of the model),
            ``calib_report.json`` and ``model.qdq.ort.onnx`` (same scales, placed so
            onnxruntime's CPU provider runs INT8 kernels); created if its parent
            exists; ``model.onnx`` is never written here.
        method: activation calibrator: ``entropy``, ``max``, ``percentile`` or ``mse``.
        percentile: for ``method="percentile"``.
        trt_version: TensorRT version written in the cache header (8.5 to 10.x).
        eval_dataset: data for the accuracy figures and the budget; the
            calibration data is used (agreement and SQNR only) when None.
        max_accuracy_drop: budget in top-1 points (needs labelled ``eval_dataset``).
        min_agreement: budget in percent of FP32/INT8 top-1 agreement (needs ``eval_dataset``).
        batch_size: samples per inference call; results do not depend on it.
        progress: show a progress bar on stderr while collecting statistics.
        timing: record the steps' wall times under the report's ``timing`` key;
            False leaves the key out, so the same inputs give byte-identical outputs.
        qdq_forms: weight forms of the Q/DQ model to write: ``"int8"`` (``model.qdq.onnx``, always
            written) and ``"fp32"`` (``model.qdq.trt8.onnx``, for TensorRT 8.5/8.6).
        quantize_classifier: quantize the final Gemm too (left unquantized by default, as ModelOpt does).
        dla: also write ``model.qdq.dla.onnx``, ModelOpt's DLA placement (``--target_dla``) with the
            cache's scales, which TensorRT 11.x builds INT8 on DLA from (not verified on a DLA).

    Raises:
        CalibrationError, DataError, OutputPathError: bad arguments or data;
            nothing is written then.
    """
    clock = _Stopwatch()
    options = options_from_arguments(method, percentile, trt_version, max_accuracy_drop, min_agreement, eval_dataset, batch_size,
                                     quantize_classifier, qdq_forms)
    out_dir = _check_out_dir(Path(out_dir))
    model = quantizable_onnx(Path(model_onnx))

    statistics = statistics_from_dataset(model, dataset, options.batch_size, progress)
    clock.lap("statistics_s")
    thresholds = thresholds_from_statistics(statistics, options.method, options.percentile)
    clock.lap("thresholds_s")
    evaluator, evaluated_on = fp32_reference_from_data(model, dataset, eval_dataset, options.batch_size)
    first = int8_evaluation_from_thresholds(model, thresholds, evaluator, options.quantize_classifier)
    int8, outcome = budget_search_from_evaluation(model, thresholds, evaluator, options.budget, first, options.quantize_classifier)
    clock.lap("evaluation_s")

    layer_sqnr = layer_sqnr_from_qdq(
        model, int8.qdq, evaluator.dataset, options.batch_size, limit=min(RANK_SAMPLES, len(evaluator.reference))
    )
    report = report_from_steps(model, options, statistics, thresholds, evaluated_on, int8, outcome, layer_sqnr)
    artifacts = artifacts_from_evaluation(model, thresholds, int8, options, dla=dla)
    times = clock.total() if timing else None
    qdq_paths, ort_path, cache_path, report_path = write_outputs(out_dir, artifacts, report_text(report, times))
    full_report = report if times is None else {**report, "timing": times}
    return CalibrationResult(qdq_paths["int8"], cache_path, report_path, full_report, list(int8.excluded), thresholds.scales,
                             ort_path, qdq_paths, out_dir / DLA_QDQ_NAME if dla else None)

