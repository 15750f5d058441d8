"""``calibrate``: FP32 ONNX + calibration data -> Q/DQ ONNX, TensorRT cache and report.

One streaming statistics pass feeds both outputs: the Q/DQ model (explicit
quantization and onnxruntime; ``model.qdq.onnx`` with INT8 weights for TensorRT
10+, ``model.qdq.trt8.onnx`` with FP32 weights and Q/DQ for 8.5/8.6, see
``edgeres.calibrate.qdq.WEIGHT_FORM_RULES``) and the calibration cache, which
lists every tensor (implicit INT8 and the DLA on TensorRT 8.5 to 10.x). Outputs are assembled in
memory and written atomically at the end: a failure leaves none of them.

:func:`calibrate` runs these steps, each a function named for what it makes from what:

1. :func:`options_from_arguments`, :func:`quantizable_onnx`: checks, before any work;
2. :func:`statistics_from_dataset`: one streaming pass, a histogram per activation (and one per half
   of the samples, merged exactly into the whole), keeping the first evaluation samples decoded;
3. :func:`thresholds_from_statistics`: the calibrator's amax and the INT8 scales;
   :func:`stability_from_statistics`: how far the ranges move on either half of the set;
4. :func:`joint_evaluation_from_qdq`: one onnxruntime session over the evaluation samples gives FP32 and
   INT8 logits and every layer's accumulated and isolated SQNR (:mod:`edgeres.calibrate.sensitivity`);
   evaluation runs on the first :data:`EVAL_SAMPLES` calibration samples unless evaluation data or
   ``eval_size`` is given (the report's ``evaluation`` says which);
5. :func:`budget_search_from_evaluation`: layers left unquantized until the accuracy budget holds;
6. :func:`saturation_check_from_data` (``check_dataset``), :func:`calibration_warnings`,
   :func:`report_from_steps`: deployment-data check, warnings and the report;
7. :func:`artifacts_from_evaluation`, :func:`write_outputs`: serialized outputs, then the only writes.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import numpy as np

from edgeres._interrupt import checkpoint
from edgeres._io import atomic_files
from edgeres._progress import PhaseProgress, as_progress
from edgeres.calibrate.budget import Budget, BudgetOutcome, budget_report, rank_by_sensitivity, search_exclusions
from edgeres.calibrate.cache import cache_scales, calibration_cache_text, trt_version_code
from edgeres.calibrate.calibrators import (
    CALIBRATORS,
    DEFAULT_METHOD,
    DEFAULT_PERCENTILE,
    Histogram,
    compute_amax_many,
    scale_from_amax,
)
from edgeres.calibrate.qdq import qdq_model, qdq_summary, quantizable_layers, quantized_activations, weighted_nodes
from edgeres.calibrate.qdq import DLA_QDQ_NAME, unquantized_layers, weight_form_rule
from edgeres.calibrate.report import format_table, json_safe, layer_macs, layer_rows, tensor_rows
from edgeres.calibrate.sensitivity import LayerSums, evaluation_graph, worst_isolated
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
# Evaluation on the calibration data (no --eval-data) uses its first EVAL_SAMPLES samples (kept from the
# statistics pass, so never decoded twice); explicit evaluation data is used whole. ``eval_size`` overrides.
EVAL_SAMPLES = 16
# NVIDIA's TensorRT INT8 calibration guidance: about 500 images suffice for ImageNet classification networks
# (TensorRT Developer Guide, "Working with INT8" / INT8 calibration; restated with that attribution in
# MathWorks GPU Coder's coder.TensorRTConfig docs, uk.mathworks.com/help/gpucoder/ref/numberofcalibrationbatches.html).
# Not re-verified against a specific Developer Guide revision here.
RECOMMENDED_CALIBRATION_SAMPLES = 500
STABLE_REL_CHANGE = 0.05  # ranges that move less than 5% when the set is halved: more images would not help
CHECK_DATA_FACTOR = 2.0  # --check-data saturation this many times the calibration set's (and 0.1 points above) warns


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

    def __init__(self, model: Any, dataset: Any, batch_size: int, reference: np.ndarray | None = None) -> None:
        from edgeres.evaluate import run_onnx

        self.dataset = dataset
        self.batch_size = batch_size
        self.labels = dataset.labels
        if reference is None:
            check_input_shape(model, next(iter(dataset.batches(1)))[0].shape[1:])
            reference = run_onnx(model, dataset, batch_size=batch_size)
        self.reference = reference
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


class _Retained:
    """A dataset whose first ``keep`` samples are kept (copied) as they stream past, for evaluation."""

    def __init__(self, dataset: Any, keep: int) -> None:
        self.dataset, self.keep = dataset, keep
        self.labels = getattr(dataset, "labels", None)
        self.images: list[np.ndarray] = []

    def __len__(self) -> int:
        return len(self.dataset)

    def batches(self, batch_size: int) -> Iterator[tuple[np.ndarray, Any]]:
        self.images, held = [], 0
        for images, labels in self.dataset.batches(batch_size):
            if held < self.keep:
                self.images.append(np.array(images[: self.keep - held], dtype=np.float32))
                held += len(self.images[-1])
            yield images, labels

    def fingerprint(self) -> str | None:
        return self.dataset.fingerprint() if hasattr(self.dataset, "fingerprint") else None


class _Subset:
    """The first ``limit`` samples of ``dataset``, from already decoded ``images`` where given."""

    def __init__(self, dataset: Any, limit: int, images: Sequence[np.ndarray] = ()) -> None:
        self.dataset, self.limit = dataset, min(limit, len(dataset))
        labels = getattr(dataset, "labels", None)
        self.labels = None if labels is None else np.asarray(labels)[: self.limit]
        self.cached = np.concatenate(images)[: self.limit] if images and sum(map(len, images)) >= self.limit else None

    def __len__(self) -> int:
        return self.limit

    def batches(self, batch_size: int) -> Iterator[tuple[np.ndarray, Any]]:
        if self.cached is not None:
            for start in range(0, self.limit, batch_size):
                stop = min(start + batch_size, self.limit)
                yield self.cached[start:stop], None if self.labels is None else self.labels[start:stop]
            return
        seen = 0
        for images, labels in self.dataset.batches(batch_size):
            if seen >= self.limit:
                break
            take = min(len(images), self.limit - seen)
            yield images[:take], None if labels is None else labels[:take]
            seen += take


@dataclasses.dataclass(frozen=True)
class JointEvaluation:
    """One run of :func:`edgeres.calibrate.sensitivity.evaluation_graph`: both models' logits and per-layer SQNR."""

    reference: np.ndarray
    int8_logits: np.ndarray
    layer_sqnr: dict[str, float | None]
    isolated_sqnr: dict[str, float | None]


def joint_evaluation_from_qdq(model: Any, qdq: Any, scales: dict[str, float], data: Any, batch_size: int,
                              advance: Callable[[int], None] | None = None, *, isolated: bool = True,
                              threads: int = 0) -> JointEvaluation:
    """FP32 and INT8 logits, accumulated and isolated per-layer SQNR, from one onnxruntime session over ``data``."""
    from edgeres.evaluate import onnx_session

    joint, outputs, layers = evaluation_graph(model, qdq, scales, isolated=isolated)
    session = onnx_session(joint, threads=threads)
    input_name = model.graph.input[0].name
    sums = LayerSums(outputs)
    ref, out = [], []
    for images, _ in data.batches(batch_size):
        values = dict(zip(outputs, session.run(outputs, {input_name: images})))
        ref.append(values[outputs[0]])
        out.append(values[outputs[1]])
        sums.add(values)
        if advance is not None:
            advance(len(images))
    if not ref:
        raise DataError("evaluation dataset is empty")
    reference = np.concatenate(ref).astype(np.float32)
    if not np.isfinite(reference).all():
        raise CalibrationError("FP32 model produces NaN/Inf logits on the evaluation data")
    return JointEvaluation(
        reference, np.concatenate(out).astype(np.float32),
        {n: sums.sqnr_db(n, "accumulated") for n in layers},
        {n: sums.sqnr_db(n, "isolated") for n in layers},
    )


def stability_from_statistics(statistics: "Statistics", thresholds: "Thresholds", method: str, percentile: float,
                              tensors: Sequence[str]) -> dict[str, Any] | None:
    """How far each range (amax) of ``tensors`` moves when calibrated on either half of the samples alone.

    The halves are the even- and odd-numbered samples, histogrammed during the one statistics pass
    (their exact merge is the whole set's histogram). ``rel_change`` is
    ``max(|amax_half - amax|) / amax`` over both halves.
    """
    if statistics.halves is None or statistics.samples < 2:
        return None
    names = [n for n in tensors if thresholds.amax.get(n)]
    flat = compute_amax_many([h[n] for n in names for h in statistics.halves], method, percentile=percentile)
    rows = []
    for k, name in enumerate(names):
        whole, halves = thresholds.amax[name], flat[2 * k:2 * k + 2]
        rows.append((name, max(abs(a - whole) for a in halves) / whole, halves))
    if not rows:
        return None
    changes = sorted(r[1] for r in rows)
    worst = sorted(rows, key=lambda r: (-r[1], r[0]))[:5]
    stable = changes[-1] < STABLE_REL_CHANGE
    return {
        "halves": "even- and odd-numbered calibration samples",
        "samples_per_half": [statistics.samples - statistics.samples // 2, statistics.samples // 2],
        "tensors": len(rows),
        "max_rel_change": changes[-1],
        "median_rel_change": changes[len(changes) // 2],
        "stable_below": STABLE_REL_CHANGE,
        "stable": stable,
        "worst": [{"tensor": n, "rel_change": c, "amax_halves": h} for n, c, h in worst],
        "verdict": (
            f"ranges move at most {100 * changes[-1]:.1f}% when the calibration set is halved: "
            + ("more images would hardly change the result" if stable else
               f"more images would likely change the result (most on {worst[0][0]})")
        ),
    }


def saturation_check_from_data(model: Any, check_dataset: Any, statistics: "Statistics", thresholds: "Thresholds",
                               tensors: Sequence[str], batch_size: int,
                               advance: Callable[[int], None] | None = None) -> dict[str, Any]:
    """Share of activations of ``check_dataset`` (deployment images) clipped by the calibrated ranges, per tensor.

    Compared with the calibration set's own share; a tensor is flagged when the deployment share is
    at least :data:`CHECK_DATA_FACTOR` times the calibration share and 0.1 points above it.
    """
    check_input_shape(model, next(iter(check_dataset.batches(1)))[0].shape[1:])
    hists = collect_statistics(model, check_dataset, list(tensors), batch_size=batch_size, progress=advance)
    rows, flagged = [], []
    for name in tensors:
        amax = thresholds.amax[name]
        calib = 100 * statistics.histograms[name].saturated_fraction(amax)
        check = 100 * hists[name].saturated_fraction(amax)
        high = check >= CHECK_DATA_FACTOR * calib and check - calib >= 0.1
        rows.append({"tensor": name, "calibration_saturated_pct": calib, "check_saturated_pct": check,
                     "check_absmax": hists[name].absmax, "amax": amax, "well_above": high})
        if high:
            flagged.append(name)
    return {"source": getattr(check_dataset, "source", None), "samples": len(check_dataset),
            "factor": CHECK_DATA_FACTOR, "flagged": flagged, "tensors": rows}


def calibration_warnings(statistics: "Statistics", evaluated_on: str, stability: dict[str, Any] | None,
                         check: dict[str, Any] | None) -> list[str]:
    """The library's warnings about the data: small set, evaluation fallback, unstable ranges, camera drift."""
    out = []
    if statistics.samples < RECOMMENDED_CALIBRATION_SAMPLES:
        out.append(f"calibration set of {statistics.samples} samples is smaller than the recommended "
                   f"{RECOMMENDED_CALIBRATION_SAMPLES} (TensorRT Developer Guide, INT8 calibration)")
    if evaluated_on == "calibration data":
        out.append("no --eval-data: accuracy figures are on the calibration data itself (optimistic; "
                   "give held-out images with --eval-data)")
    if stability is not None and not stability["stable"]:
        out.append(stability["verdict"])
    if check is not None and check["flagged"]:
        names = ", ".join(check["flagged"][:3]) + (" ..." if len(check["flagged"]) > 3 else "")
        out.append(f"--check-data: {len(check['flagged'])} tensor(s) saturate well above the calibration set "
                   f"({names}); calibrate on images from the deployment camera")
    return out


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
    eval_size: int | None = None  # evaluation samples; None: EVAL_SAMPLES of the calibration data, or all eval data


@dataclasses.dataclass(frozen=True)
class Statistics:
    """Activation histograms of the calibration data, and which data it was."""

    histograms: dict[str, Histogram]
    samples: int
    fingerprint: str | None
    halves: tuple[dict[str, Histogram], dict[str, Histogram]] | None = None  # even/odd samples (stability)


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
    eval_size: int | str | None = None,
) -> CalibrationOptions:
    """Checked options (see :func:`check_options`); a drop budget also needs labelled evaluation data."""
    budget = check_options(method, percentile, trt_version, max_accuracy_drop, min_agreement, eval_dataset is not None, batch_size)
    if max_accuracy_drop is not None and getattr(eval_dataset, "labels", None) is None:
        raise DataError(
            "--max-accuracy-drop needs labelled evaluation data, but the evaluation set has no labels "
            "(use an ImageFolder layout or an .npz with labels, or --min-agreement instead)"
        )
    forms = tuple(dict.fromkeys(weight_form_rule(f).form for f in ("int8", *qdq_forms)))  # validates each form
    if eval_size == "all":
        size: int | None = 0
    elif eval_size is None:
        size = None
    elif isinstance(eval_size, bool) or not isinstance(eval_size, int) or eval_size < 1:
        raise CalibrationError(f"eval_size must be a positive number of samples or 'all', received {eval_size!r}")
    else:
        size = int(eval_size)
    return CalibrationOptions(method, percentile, trt_version, budget, int(batch_size), bool(quantize_classifier), forms, size)


def evaluation_limit(options: CalibrationOptions, eval_dataset: Any, dataset: Any) -> tuple[int, str]:
    """How many evaluation samples, and the report's words for them (see :data:`EVAL_SAMPLES`)."""
    data = eval_dataset if eval_dataset is not None else dataset
    if options.eval_size == 0:
        return len(data), "all"
    if options.eval_size is None:
        if eval_dataset is not None:
            return len(data), "all (explicit evaluation data)"
        limit = min(EVAL_SAMPLES, len(data))
        return limit, f"first {limit} of {len(data)} (default bound; eval_size='all' / --eval-size all for every sample)"
    limit = min(options.eval_size, len(data))
    return limit, f"first {limit} of {len(data)} (eval_size)"


def quantizable_onnx(path: Path) -> Any:
    """The FP32 ModelProto at ``path``; CalibrationError unless it has a Conv/Gemm with constant weights."""
    model = _load_onnx(path)
    if not weighted_nodes(model):
        raise CalibrationError(f"{path} has no Conv/Gemm layer with constant weights to quantize")
    return model


def statistics_from_dataset(model: Any, dataset: Any, batch_size: int, progress: "bool | PhaseProgress",
                            halves: bool = False) -> Statistics:
    """Stream ``dataset`` through ``model`` once and histogram every observed activation.

    ``halves``: also keep the histograms of the even- and odd-numbered samples (same pass, each
    value binned once; the whole is their exact merge) for :func:`stability_from_statistics`.
    """
    split: tuple[dict[str, Histogram], dict[str, Histogram]] | None = ({}, {}) if halves else None
    with as_progress(progress) as shown, shown.phase("statistics", len(dataset)) as advance:
        histograms = collect_statistics(model, dataset, batch_size=batch_size, progress=advance, halves=split)
    checkpoint("calibrate:statistics")
    fingerprint = dataset.fingerprint() if hasattr(dataset, "fingerprint") else None
    return Statistics(histograms, len(dataset), fingerprint, split)


def thresholds_from_statistics(statistics: Statistics, method: str, percentile: float) -> Thresholds:
    """Run the calibrator on every histogram: amax, then the symmetric INT8 scale."""
    names = list(statistics.histograms)
    amax = dict(zip(names, compute_amax_many([statistics.histograms[n] for n in names], method, percentile=percentile)))
    return Thresholds(amax, {n: scale_from_amax(a) for n, a in amax.items()})


def budget_search_from_evaluation(
    model: Any, thresholds: Thresholds, evaluator: _Evaluator, budget: Budget, first: Int8Evaluation,
    quantize_classifier: bool = False, advance: Callable[[int], None] | None = None,
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
        if advance is not None:
            advance(1)  # one candidate model evaluated
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
    *,
    isolated_sqnr: dict[str, float | None] | None = None,
    evaluation: dict[str, Any] | None = None,
    stability: dict[str, Any] | None = None,
    check: dict[str, Any] | None = None,
    warnings: Sequence[str] = (),
) -> dict[str, Any]:
    """The ``calib_report.json`` content (strict JSON: inf/nan as strings), without ``timing``.

    ``isolated_sqnr`` (per layer, only that layer quantized), ``evaluation`` (which samples),
    ``stability`` (halved set), ``check`` (``--check-data``) and ``warnings`` add their sections.
    """
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
            isolated_db=isolated_sqnr,
        ),
    }
    if isolated_sqnr is not None:
        worst = worst_isolated({n: v for n, v in isolated_sqnr.items() if n not in excluded})
        report["sensitivity"] = {
            "isolated_sqnr_db": "SQNR of a layer's output with only that layer quantized (FP32 inputs)",
            "sqnr_db": "SQNR of a layer's output in the INT8 model (errors of every earlier layer included)",
            "worst_isolated": [{"layer": n, "isolated_sqnr_db": v, "macs": macs.get(n, 0)} for n, v in worst],
            "fix": ("--max-accuracy-drop / --min-agreement leave the most sensitive layers in FP16; excluding the "
                    f"worst {len(worst)} would keep {sum(macs.get(n, 0) for n, _ in worst):,} MACs "
                    f"({100 * sum(macs.get(n, 0) for n, _ in worst) / max(1, sum(macs.values())):.1f}% of the model) "
                    "out of INT8") if worst else None,
        }
    if evaluation is not None:
        report["evaluation"] = evaluation
    if stability is not None:
        report["stability"] = stability
    if check is not None:
        report["check_data"] = check
    report["warnings"] = list(warnings)
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
    eval_size: int | str | None = None,
    check_dataset: Any = None,
    warnings: Sequence[str] = (),
    phase_times: dict[str, float] | None = None,
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
        progress: True: progress of every phase on stderr (a rich display on a terminal, else one line
            per phase); False: none; or a :class:`edgeres._progress.PhaseProgress` to share with the caller.
        timing: record the steps' wall times under the report's ``timing`` key;
            False leaves the key out, so the same inputs give byte-identical outputs.
        qdq_forms: weight forms of the Q/DQ model to write: ``"int8"`` (``model.qdq.onnx``, always
            written) and ``"fp32"`` (``model.qdq.trt8.onnx``, for TensorRT 8.5/8.6).
        quantize_classifier: quantize the final Gemm too (left unquantized by default, as ModelOpt does).
        eval_size: evaluation samples: None (the first :data:`EVAL_SAMPLES` of the calibration data
            when there is no ``eval_dataset``, else all of it), a number, or ``"all"``.
        check_dataset: images from the deployment camera: their saturation under the calibrated
            ranges is reported per tensor (``check_data``) and warned about when well above the
            calibration set's own.
        warnings: warnings found before calibration (the front end's), recorded in the report.
        phase_times: wall times of earlier phases (the front end's), put first in ``timing``.
        dla: also write ``model.qdq.dla.onnx``, ModelOpt's DLA placement (``--target_dla``) with the
            cache's scales, which TensorRT 11.x builds INT8 on DLA from (not verified on a DLA).

    Raises:
        CalibrationError, DataError, OutputPathError: bad arguments or data;
            nothing is written then.
    """
    clock = _Stopwatch()
    options = options_from_arguments(method, percentile, trt_version, max_accuracy_drop, min_agreement, eval_dataset, batch_size,
                                     quantize_classifier, qdq_forms, eval_size)
    out_dir = _check_out_dir(Path(out_dir))
    model = quantizable_onnx(Path(model_onnx))
    shown = as_progress(progress)
    with shown:
        limit, how = evaluation_limit(options, eval_dataset, dataset)
        source = _Retained(dataset, limit if eval_dataset is None else 0)
        statistics = statistics_from_dataset(model, source, options.batch_size, shown, halves=True)
        clock.lap("statistics_s")
        thresholds = thresholds_from_statistics(statistics, options.method, options.percentile)
        quantized = quantized_activations(model, (), quantize_classifier=options.quantize_classifier)
        stability = stability_from_statistics(statistics, thresholds, options.method, options.percentile, quantized)
        clock.lap("thresholds_s")

        evaluated_on = "evaluation data" if eval_dataset is not None else "calibration data"
        if eval_dataset is not None:
            check_input_shape(model, next(iter(eval_dataset.batches(1)))[0].shape[1:])
            data: Any = _Subset(eval_dataset, limit)
        else:
            data = _Subset(dataset, limit, source.images)
        first_qdq = qdq_model(model, thresholds.scales, quantize_classifier=options.quantize_classifier)
        with shown.phase("evaluation + per-layer", len(data)) as advance:
            joint = joint_evaluation_from_qdq(model, first_qdq, thresholds.scales, data, options.batch_size, advance)
        evaluator = _Evaluator(model, data, options.batch_size, reference=joint.reference)
        from edgeres.evaluate import compare_logits

        first = Int8Evaluation(first_qdq, compare_logits(joint.reference, joint.int8_logits, data.labels))
        clock.lap("evaluation_s")
        with shown.phase("budget search", None, unit="models") as advance:
            int8, outcome = budget_search_from_evaluation(model, thresholds, evaluator, options.budget, first,
                                                          options.quantize_classifier, advance)
            layer_sqnr = joint.layer_sqnr
            if int8.excluded:  # accumulated figures of the final model (isolated ones do not change)
                layer_sqnr = joint_evaluation_from_qdq(model, int8.qdq, thresholds.scales, data, options.batch_size,
                                                       isolated=False).layer_sqnr
        clock.lap("budget_s")
        check = None
        if check_dataset is not None:
            with shown.phase("check data", len(check_dataset)) as advance:
                check = saturation_check_from_data(model, check_dataset, statistics, thresholds, quantized,
                                                   options.batch_size, advance)
            clock.lap("check_data_s")
        evaluation = {"samples": len(data), "of": len(eval_dataset if eval_dataset is not None else dataset),
                      "which": how, "data": evaluated_on}
        all_warnings = [*warnings, *calibration_warnings(statistics, evaluated_on, stability, check)]
        report = report_from_steps(model, options, statistics, thresholds, evaluated_on, int8, outcome, layer_sqnr,
                                   isolated_sqnr=joint.isolated_sqnr, evaluation=evaluation, stability=stability,
                                   check=check, warnings=all_warnings)
        with shown.phase("serialize", None, unit="files"):
            artifacts = artifacts_from_evaluation(model, thresholds, int8, options, dla=dla)
        clock.lap("serialize_s")
        times = {**(phase_times or {}), **clock.total()} if timing else None
        qdq_paths, ort_path, cache_path, report_path = write_outputs(out_dir, artifacts, report_text(report, times))
    full_report = report if times is None else {**report, "timing": times}
    return CalibrationResult(qdq_paths["int8"], cache_path, report_path, full_report, list(int8.excluded), thresholds.scales,
                             ort_path, qdq_paths, out_dir / DLA_QDQ_NAME if dla else None)
