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


def _fit(name: str, width: int) -> str:
    """``name`` cut from the left to ``width`` characters (the end of an ONNX name says most)."""
    return name if len(name) <= width else "…" + name[-(width - 1):]


def _db(value: Any) -> str:
    return f"{value:.2f}" if isinstance(value, (int, float)) else str(value if value is not None else "-")


# edgeres.calibrate.cache writes the header TRT-<code>-EntropyCalibration2 for every method: the
# algorithm of the calibrator trtexec --calib reads caches with (IInt8EntropyCalibrator2); the
# scales are the method's. Printed so a "max" or "mse" user is not misled by the name.
CACHE_HEADER_NOTE = ("note: calib.cache's header names EntropyCalibration2 (the calibrator trtexec --calib reads "
                     "caches with); its ranges come from the {method} calibrator")


def format_table(report: Mapping[str, Any], max_rows: int = 200, width: int = 100) -> str:
    """The printed summary, fitted to ``width`` columns (names cut from the left, columns dropped below 60).

    Tensors (method, amax, scale, saturation in percent of values), layers (MACs, accumulated and
    isolated SQNR in dB, precision), the worst layers alone, model figures (top-1 in percent,
    drops in points), stability and the budget: every number with its label.
    """
    width = max(int(width), 40)
    wide = width >= 60
    fixed = (11 + 12 + 10) if wide else (11 + 6)
    name_w = max(16, width - fixed)
    lines = ["tensors in the Q/DQ model (amax: clipping range; scale = amax/127; sat %: share of values clipped)"]
    lines.append(f"{'tensor':<{name_w}} {'amax':>10}" + (f" {'scale':>11} {'sat %':>9}" if wide else " sat %"))
    for t in report["tensors"][:max_rows]:
        if not t["in_qdq_model"]:
            continue
        row = f"{_fit(t['name'], name_w):<{name_w}} {t['amax']:>10.4g}"
        row += f" {t['scale']:>11.4e} {t['saturated_pct']:>9.4f}" if wide else f" {t['saturated_pct']:.3f}"
        lines.append(row)
    lines.append("")
    has_iso = any("isolated_sqnr_db" in layer for layer in report["layers"])
    lines.append("layers (SQNR dB of the layer output: 'in model' with every layer quantized, 'alone' with only this one)")
    fixed = (13 + 10 + (10 if has_iso else 0) + 11) if wide else (10 + (10 if has_iso else 0))
    name_w = max(16, width - fixed)
    head = f"{'layer':<{name_w}}" + (f" {'MACs':>12}" if wide else "") + f" {'in model':>9}"
    head += f" {'alone':>9}" if has_iso else ""
    lines.append(head + ("  precision" if wide else ""))
    for layer in report["layers"][:max_rows]:
        row = f"{_fit(layer['name'], name_w):<{name_w}}" + (f" {layer['macs']:>12,}" if wide else "")
        row += f" {_db(layer['sqnr_db']):>9}"
        row += f" {_db(layer.get('isolated_sqnr_db')):>9}" if has_iso else ""
        lines.append(row + (f"  {layer['precision']}" if wide else ""))
    sens = report.get("sensitivity") or {}
    if sens.get("worst_isolated"):
        lines.append("")
        lines.append("worst layers alone (lowest isolated SQNR; the layer at fault, not its depth):")
        for k, row in enumerate(sens["worst_isolated"], 1):
            lines.append(f"  {k}. {_fit(row['layer'], max(16, width - 40))}  isolated SQNR {_db(row['isolated_sqnr_db'])} dB, "
                         f"{row['macs']:,} MACs")
        if sens.get("fix"):
            lines.append(f"  fix: {sens['fix']}")
    m = report.get("model") or {}
    if m:
        lines.append("")
        ev = report.get("evaluation") or {}
        which = f", {ev['which']}" if ev.get("which") else ""
        lines.append(f"model on {m['samples']} samples of the {report['evaluated_on']}{which}:")
        lines.append(f"  top-1 agreement INT8 vs FP32: {100 * m['top1_agreement']:.2f}%")
        if m.get("accuracy") is not None:
            drop = 100 * (m["accuracy_ref"] - m["accuracy"])
            lines.append(f"  top-1 accuracy: FP32 {100 * m['accuracy_ref']:.2f}%, INT8 {100 * m['accuracy']:.2f}% "
                         f"(drop {drop:.2f} points)")
        lines.append(f"  logits SQNR: {_db(m['sqnr_db'])} dB; logits cosine similarity: {m['cosine']:.6f}")
    stab = report.get("stability")
    if stab:
        lines.append(f"stability: {stab['verdict']}")
    if report.get("method") and report["method"] != "entropy":
        lines.append(CACHE_HEADER_NOTE.format(method=report["method"]))
    budget = report.get("budget")
    if budget:
        state = "met" if budget["met"] else "NOT met"
        limit = budget["limit"]
        unit = " (top-1 drop in points)" if "drop" in budget["kind"] else " (agreement in percent)"
        lines.append(f"budget {budget['kind']} {limit}{unit}: {state}; {len(budget['excluded_layers'])} layer(s) "
                     "left at higher precision")
    import textwrap

    fitted = []
    for line in lines:  # prose lines wrap; table rows already fit
        fitted.extend(textwrap.wrap(line, width, subsequent_indent="    ", break_on_hyphens=False) if len(line) > width else [line])
    return "\n".join(fitted)


format_summary = format_table
