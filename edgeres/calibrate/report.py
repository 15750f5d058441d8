"""Per-tensor and per-layer tables of a calibration, and MACs per layer from ONNX shapes.

The row builders are pure functions of plain data (names, numbers, sets), so
the report's layout lives here and :func:`edgeres.calibrate.calibrate` only
gathers the figures.
"""

from __future__ import annotations

import math
from typing import Any, Collection, Mapping, Sequence

import numpy as np

from edgeres.calibrate.calibrators import Histogram


def layer_macs(model: Any) -> dict[str, int]:
    """Multiply-accumulates per sample of every Conv/Gemm node, from inferred ONNX shapes."""
    import onnx

    inferred = onnx.shape_inference.infer_shapes(model)
    shapes: dict[str, list[int]] = {}
    for value in list(inferred.graph.value_info) + list(inferred.graph.output) + list(inferred.graph.input):
        shapes[value.name] = [d.dim_value for d in value.type.tensor_type.shape.dim]
    weights = {i.name: tuple(i.dims) for i in model.graph.initializer}
    macs: dict[str, int] = {}
    for node in model.graph.node:
        if node.op_type not in ("Conv", "Gemm") or len(node.input) < 2 or node.input[1] not in weights:
            continue
        w = weights[node.input[1]]
        out = shapes.get(node.output[0], [])
        if node.op_type == "Conv":
            spatial = int(np.prod(out[2:])) if len(out) > 2 and all(out[2:]) else 0
            macs[node.name] = int(w[0] * int(np.prod(w[1:])) * spatial)
        else:
            macs[node.name] = int(np.prod(w))
    return macs


class LayerErrorAccumulator:
    """Per-sample sum(ref**2) and sum((ref-out)**2) per tensor, for per-layer SQNR.

    Sums are kept per sample and added with ``math.fsum`` (exactly rounded), so
    the result does not depend on how samples were batched.
    """

    def __init__(self, names: Sequence[str]) -> None:
        self.names = list(names)
        self.signal: dict[str, list[float]] = {n: [] for n in self.names}
        self.noise: dict[str, list[float]] = {n: [] for n in self.names}

    def add(self, reference: Sequence[np.ndarray], result: Sequence[np.ndarray]) -> None:
        for name, ref, out in zip(self.names, reference, result):
            r = ref.astype(np.float64).reshape(ref.shape[0], -1)
            d = r - out.astype(np.float64).reshape(ref.shape[0], -1)
            self.signal[name].extend(np.sum(r * r, axis=1).tolist())
            self.noise[name].extend(np.sum(d * d, axis=1).tolist())

    def sqnr_db(self) -> dict[str, float]:
        result = {}
        for name in self.names:
            n, s = math.fsum(self.noise[name]), math.fsum(self.signal[name])
            result[name] = float("inf") if n == 0 else (10 * math.log10(s / n) if s > 0 else float("-inf"))
        return result


def tensor_rows(
    names: Sequence[str],
    method: str,
    amax: Mapping[str, float],
    scales: Mapping[str, float],
    histograms: Mapping[str, Histogram],
    *,
    quantized: Collection[str],
) -> list[dict[str, Any]]:
    """One row per observed activation: threshold, scale, saturation, and whether the Q/DQ model quantizes it."""
    return [
        {
            "name": n,
            "method": method,
            "amax": amax[n],
            "absmax": histograms[n].absmax,
            "scale": scales[n],
            "saturated_pct": 100 * histograms[n].saturated_fraction(amax[n]),
            "in_qdq_model": n in quantized,
        }
        for n in names
    ]


def layer_rows(
    layers: Sequence[tuple[str, str]],
    macs: Mapping[str, int],
    sqnr_db: Mapping[str, float],
    *,
    excluded: Collection[str],
    isolated_db: Mapping[str, float | None] | None = None,
) -> list[dict[str, Any]]:
    """One row per (name, op type) Conv/Gemm layer: MACs, output SQNR, and the precision it runs at.

    ``sqnr_db`` is accumulated (the INT8 model, errors of earlier layers included);
    ``isolated_sqnr_db`` (when given) has only that layer quantized, its inputs FP32.
    """
    rows = []
    for name, op in layers:
        row = {"name": name, "op": op, "macs": macs.get(name, 0), "sqnr_db": sqnr_db[name]}
        if isolated_db is not None:
            row["isolated_sqnr_db"] = isolated_db.get(name)
        row["precision"] = "fp16/fp32" if name in excluded else "int8"
        rows.append(row)
    return rows


def json_safe(value: Any) -> Any:
    """inf/nan become strings so the report is strict JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value


def format_table(report: Mapping[str, Any], max_rows: int = 200) -> str:
    """The printed summary: tensors (method, amax, scale, saturation), layers (SQNR) and model figures."""
    lines = [f"{'tensor':<58} {'method':<10} {'amax':>10} {'scale':>11} {'sat %':>8}"]
    for t in report["tensors"][:max_rows]:
        if not t["in_qdq_model"]:
            continue
        lines.append(f"{t['name'][-58:]:<58} {t['method']:<10} {t['amax']:>10.4g} {t['scale']:>11.4e} {t['saturated_pct']:>8.4f}")
    lines.append("")
    lines.append(f"{'layer':<58} {'MACs':>12} {'SQNR dB':>9}  precision")
    for layer in report["layers"][:max_rows]:
        sq = layer["sqnr_db"]
        sq_text = f"{sq:>9.2f}" if isinstance(sq, float) else f"{str(sq):>9}"
        lines.append(f"{layer['name'][-58:]:<58} {layer['macs']:>12,} {sq_text}  {layer['precision']}")
    m = report.get("model") or {}
    if m:
        lines.append("")
        acc = ""
        if m.get("accuracy") is not None:
            acc = f", top-1 FP32 {100 * m['accuracy_ref']:.2f}% -> INT8 {100 * m['accuracy']:.2f}%"
        lines.append(
            f"model ({m['samples']} samples, {report['evaluated_on']}): top-1 agreement {100 * m['top1_agreement']:.2f}%"
            f"{acc}, logits SQNR {m['sqnr_db']:.2f} dB, cosine {m['cosine']:.6f}"
        )
    budget = report.get("budget")
    if budget:
        state = "met" if budget["met"] else "NOT met"
        lines.append(f"budget {budget['kind']} {budget['limit']}: {state}; {len(budget['excluded_layers'])} layer(s) left at higher precision")
    return "\n".join(lines)
