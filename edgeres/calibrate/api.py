"""``calibrate``: FP32 ONNX + calibration data -> Q/DQ ONNX, TensorRT cache and report.

One streaming statistics pass feeds both outputs: the Q/DQ model (explicit
quantization and onnxruntime; ``model.qdq.onnx`` with INT8 weights for TensorRT
10+, ``model.qdq.trt8.onnx`` with FP32 weights and Q/DQ for 8.5/8.6, see
``edgeres.calibrate.qdq.WEIGHT_FORM_RULES``) and the calibration cache, which
lists every tensor (implicit INT8 and the DLA on TensorRT 8.5 to 10.x). Outputs are assembled in
memory and written atomically at the end: a failure leaves none of them.
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

from edgeres._io import write_bytes_atomic, write_text_atomic
from edgeres.calibrate.budget import Budget, rank_by_sensitivity, search_exclusions
from edgeres.calibrate.cache import cache_scales, calibration_cache_text, trt_version_code
from edgeres.calibrate.calibrators import CALIBRATORS, DEFAULT_METHOD, DEFAULT_PERCENTILE, compute_amax, scale_from_amax
from edgeres.calibrate.qdq import qdq_model, qdq_summary, quantizable_layers, quantized_activations, weighted_nodes
from edgeres.calibrate.qdq import unquantized_layers, weight_form_rule
from edgeres.calibrate.report import LayerErrorAccumulator, format_table, json_safe, layer_macs
from edgeres.calibrate.stats import check_input_shape, collect_statistics, observed_tensors, session_with_outputs
from edgeres.errors import CalibrationError, DataError, OutputPathError

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


def _layer_sqnr(model: Any, qdq: Any, dataset: Any, batch_size: int, limit: int) -> dict[str, float]:
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


def calibrate(
    model_onnx: str | os.PathLike[str],
    dataset: Any,
    out_dir: str | os.PathLike[str],
    *,
    method: str = DEFAULT_METHOD,
    percentile: float = DEFAULT_PERCENTILE,
    trt_version: str = "10.3.0",
    eval_dataset: Any = None,
    max_accuracy_drop: float | None = None,
    min_agreement: float | None = None,
    batch_size: int = 32,
    progress: bool = True,
    qdq_forms: Sequence[str] = DEFAULT_QDQ_FORMS,
    quantize_classifier: bool = False,
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
        qdq_forms: weight forms of the Q/DQ model to write: ``"int8"`` (``model.qdq.onnx``, always
            written) and ``"fp32"`` (``model.qdq.trt8.onnx``, for TensorRT 8.5/8.6).
        quantize_classifier: quantize the final Gemm too (left unquantized by default, as ModelOpt does).

    Raises:
        CalibrationError, DataError, OutputPathError: bad arguments or data;
            nothing is written then.
    """
    timing: dict[str, float] = {}
    start = time.perf_counter()
    budget = check_options(method, percentile, trt_version, max_accuracy_drop, min_agreement, eval_dataset is not None, batch_size)
    if max_accuracy_drop is not None and getattr(eval_dataset, "labels", None) is None:
        raise DataError(
            "--max-accuracy-drop needs labelled evaluation data, but the evaluation set has no labels "
            "(use an ImageFolder layout or an .npz with labels, or --min-agreement instead)"
        )
    forms = [weight_form_rule(f).form for f in ("int8", *qdq_forms)]  # validates; int8 is model.qdq.onnx
    out_dir = _check_out_dir(Path(out_dir))
    model = _load_onnx(Path(model_onnx))
    if not weighted_nodes(model):
        raise CalibrationError(f"{model_onnx} has no Conv/Gemm layer with constant weights to quantize")

    with _progress_bar(len(dataset), progress, "calibration statistics") as advance:
        hists = collect_statistics(model, dataset, batch_size=batch_size, progress=advance)
    timing["statistics_s"] = time.perf_counter() - start
    t = time.perf_counter()
    amax = {n: compute_amax(h, method, percentile=percentile) for n, h in hists.items()}
    scales = {n: scale_from_amax(a) for n, a in amax.items()}
    timing["thresholds_s"] = time.perf_counter() - t

    t = time.perf_counter()
    evaluated_on = "evaluation data" if eval_dataset is not None else "calibration data"
    evaluator = _Evaluator(model, eval_dataset if eval_dataset is not None else dataset, batch_size)
    qdq = qdq_model(model, scales, quantize_classifier=quantize_classifier)
    metrics = evaluator.metrics(qdq)
    excluded: list[str] = []
    budget_report = None
    if budget.active and budget.met(metrics):
        kind, limit_text = budget.describe()
        budget_report = {"kind": kind, "limit": limit_text, "met": True, "excluded_layers": [], "sensitivity_db": [], "trail": []}
    elif budget.active:
        layers = quantizable_layers(model, quantize_classifier=quantize_classifier)
        limit = min(RANK_SAMPLES, len(evaluator.reference))
        ranking = rank_by_sensitivity(
            layers, lambda ex: evaluator.logits(qdq_model(model, scales, exclude=ex, quantize_classifier=quantize_classifier), limit), evaluator.reference[:limit]
        )
        excluded, metrics, met, trail = search_exclusions(
            [name for name, _ in ranking], lambda ex: evaluator.metrics(qdq_model(model, scales, exclude=ex, quantize_classifier=quantize_classifier)), budget, metrics
        )
        if excluded:
            qdq = qdq_model(model, scales, exclude=excluded, quantize_classifier=quantize_classifier)
        kind, limit_text = budget.describe()
        budget_report = {
            "kind": kind,
            "limit": limit_text,
            "met": met,
            "excluded_layers": excluded,
            "sensitivity_db": [{"layer": n, "sqnr_gain_db": g} for n, g in ranking],
            "trail": trail,
        }
    timing["evaluation_s"] = time.perf_counter() - t

    macs = layer_macs(model)
    layer_sqnr = _layer_sqnr(model, qdq, evaluator.dataset, batch_size, limit=min(RANK_SAMPLES, len(evaluator.reference)))
    in_qdq = set(quantized_activations(model, excluded, quantize_classifier=quantize_classifier))
    unquantized = set(unquantized_layers(model, excluded, quantize_classifier=quantize_classifier))
    tensors = [
        {
            "name": n,
            "method": method,
            "amax": amax[n],
            "absmax": hists[n].absmax,
            "scale": scales[n],
            "saturated_pct": 100 * hists[n].saturated_fraction(amax[n]),
            "in_qdq_model": n in in_qdq,
        }
        for n in observed_tensors(model)
    ]
    layers_report = [
        {
            "name": node.name,
            "op": node.op_type,
            "macs": macs.get(node.name, 0),
            "sqnr_db": layer_sqnr[node.name],
            "precision": "fp16/fp32" if node.name in unquantized else "int8",
        }
        for node in weighted_nodes(model)
    ]
    total_macs = sum(macs.values())
    left_macs = sum(macs.get(n, 0) for n in excluded)
    if budget_report is not None:
        budget_report["excluded"] = [{"layer": n, "macs": macs.get(n, 0)} for n in excluded]
        budget_report["macs_left_at_higher_precision"] = left_macs
        budget_report["macs_left_pct"] = 100 * left_macs / total_macs if total_macs else 0.0
    cache_text = calibration_cache_text(cache_scales(model, scales, quantized_activations(
        model, excluded, quantize_classifier=quantize_classifier)), trt_version)
    qdq_bytes = qdq.SerializeToString()
    form_bytes = {
        form: qdq_model(model, scales, exclude=excluded, weight_form=form, quantize_classifier=quantize_classifier).SerializeToString()
        for form in dict.fromkeys(forms) if form != "int8"
    }
    ort_bytes = qdq_model(model, scales, exclude=excluded, placement="onnxruntime",
                          quantize_classifier=quantize_classifier).SerializeToString()
    report = {
        "edgeres_calibration": 1,
        "method": method,
        "percentile": percentile if method == "percentile" else None,
        "trt_version": trt_version,
        "trt_version_code": trt_version_code(trt_version),
        "calibration": {
            "samples": len(dataset),
            "fingerprint": dataset.fingerprint() if hasattr(dataset, "fingerprint") else None,
            "histogram_bins": int(next(iter(hists.values())).bins),
        },
        "evaluated_on": evaluated_on,
        "model": metrics,
        "qdq": {**qdq_summary(qdq), "placement": "tensorrt", "onnxruntime_variant": ORT_QDQ_NAME,
                "weight_forms": {f: weight_form_rule(f).file_name for f in dict.fromkeys(forms)},
                "classifier_quantized": quantize_classifier},
        "excluded_layers": excluded,
        "budget": budget_report,
        "total_macs": total_macs,
        "tensors": tensors,
        "layers": layers_report,
    }
    report = json_safe(report)
    timing["total_s"] = time.perf_counter() - start
    report_text = json.dumps({**report, "timing": timing}, indent=2, sort_keys=False) + "\n"

    out_dir.mkdir(exist_ok=True)
    qdq_path = write_bytes_atomic(out_dir / QDQ_NAME, qdq_bytes)
    qdq_paths = {"int8": qdq_path}
    qdq_paths.update({f: write_bytes_atomic(out_dir / weight_form_rule(f).file_name, b) for f, b in form_bytes.items()})
    ort_path = write_bytes_atomic(out_dir / ORT_QDQ_NAME, ort_bytes)
    cache_path = write_text_atomic(out_dir / CACHE_NAME, cache_text)
    report_path = write_text_atomic(out_dir / REPORT_NAME, report_text)
    return CalibrationResult(qdq_path, cache_path, report_path, {**report, "timing": timing}, excluded, scales, ort_path, qdq_paths)


def calibrate_model(
    arch: str | None,
    weights: str | os.PathLike[str] | None,
    calib_source: str | None,
    out_dir: str | os.PathLike[str],
    *,
    calib_size: int | None = None,
    eval_source: str | None = None,
    seed: int = 0,
    **kwargs: Any,
) -> CalibrationResult:
    """Build ``arch`` (+ ``weights``), fold BN, export ``out_dir/model.onnx`` and :func:`calibrate` it.

    With ``arch`` and ``weights`` None, the shipped reference model is used
    (``reference:calib`` / ``reference:test`` as default data).
    """
    import shutil
    import tempfile

    import torch

    from edgeres.data import load_dataset
    from edgeres.export import export_onnx
    from edgeres.fold import fold_batchnorm

    out_dir = _check_out_dir(Path(out_dir))
    check_options(
        kwargs.get("method", DEFAULT_METHOD), kwargs.get("percentile", DEFAULT_PERCENTILE), kwargs.get("trt_version", "10.3.0"),
        kwargs.get("max_accuracy_drop"), kwargs.get("min_agreement"),
        eval_source is not None or (arch is None and weights is None and calib_source in (None, "reference:calib")),
        kwargs.get("batch_size", 32),
    )
    if arch is None and weights is None:
        from edgeres import reference

        model = reference.reference_model()
        recipe = reference.reference_recipe()
        calib_source = calib_source or "reference:calib"
        eval_source = eval_source or (None if calib_source != "reference:calib" else "reference:test")
    else:
        if arch is None:
            raise CalibrationError("--weights needs --arch (the architecture the weights belong to)")
        from edgeres.models import recipe_for
        from edgeres.weights import model_from_weights

        model = model_from_weights(arch, weights)
        first_conv = next(m for m in model.modules() if isinstance(m, torch.nn.Conv2d))
        classes = next(m for m in reversed(list(model.modules())) if isinstance(m, torch.nn.Linear)).out_features
        recipe = recipe_for(arch, num_classes=classes, in_channels=first_conv.in_channels)
    if calib_source is None:
        raise DataError("--calib-data is required with --arch (an image folder, .npy or .npz)")
    dataset = load_dataset(calib_source, recipe, size=calib_size, seed=seed)
    eval_dataset = load_dataset(eval_source, recipe) if eval_source else None
    shape = (1, *recipe.input_shape)
    example = torch.from_numpy(next(iter(dataset.batches(8)))[0])
    folded = fold_batchnorm(model.eval(), example)
    # model.onnx joins the other outputs only once calibration succeeded: no partial output folder
    staging = Path(tempfile.mkdtemp(prefix=".edgeres-calib-", dir=out_dir.parent if str(out_dir.parent) else "."))
    try:
        model_path = staging / "model.onnx"
        export_onnx(folded, model_path, shape, dynamic_batch=True, check_inputs=example.numpy())
        result = calibrate(model_path, dataset, out_dir, eval_dataset=eval_dataset, **kwargs)
        os.replace(model_path, out_dir / "model.onnx")
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return result
