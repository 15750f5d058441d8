"""One evaluation graph: FP32, the INT8 model and every layer quantized alone, run as one session.

:func:`evaluation_graph` joins three things into one ONNX model with one input:

* the FP32 model as it is (reference logits and every Conv/Gemm output);
* the INT8 Q/DQ model, every tensor renamed ``int8/<name>`` (INT8 logits, and each layer's
  output after the errors of every layer before it: the *accumulated* SQNR);
* one *twin* per Conv/Gemm: the same layer with Q/DQ on its FP32 input (the calibrated scale) and
  per-channel INT8 weights, fed by the FP32 graph, so its error is that layer's own (the
  *isolated* SQNR, which does not fall with depth and so names the layer at fault).

Instead of whole activations, the graph returns per sample ``sum(ref**2)``, ``sum((ref-int8)**2)``
and ``sum((ref-twin)**2)`` per layer (``ReduceSumSquare`` in the graph), so one run over the
evaluation samples gives the logits of both models and every per-layer figure, with a few floats
per sample and layer copied out. Per-sample sums are added with ``math.fsum`` in
:class:`LayerSums`, so the figures do not depend on the batching.
"""

from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

import numpy as np

from edgeres.calibrate.qdq import weight_qdq, weighted_nodes

INT8_PREFIX = "int8/"
TWIN_PREFIX = "twin/"
ISOLATED_DECIMALS = 2  # isolated SQNR is reported to 0.01 dB (see LayerSums.sqnr_db)


def _reduce_sum_square(inp: str, out: str, opset: int) -> list[Any]:
    """Per-sample sum of squares of ``inp`` (any rank >= 2) into ``out`` (shape [N])."""
    from onnx import helper

    flat = f"{out}/flat"
    nodes = [helper.make_node("Flatten", [inp], [flat], axis=1, name=f"{out}/Flatten")]
    if opset >= 18:  # axes became an input in opset 18 (ONNX Operators.md, ReduceSumSquare-18)
        nodes.append(helper.make_node("ReduceSumSquare", [flat, "sens/axes1"], [out], keepdims=0, name=f"{out}/RSS"))
    else:
        nodes.append(helper.make_node("ReduceSumSquare", [flat], [out], axes=[1], keepdims=0, name=f"{out}/RSS"))
    return nodes


def _diff_sum_square(a: str, b: str, out: str, opset: int) -> list[Any]:
    from onnx import helper

    return [helper.make_node("Sub", [a, b], [f"{out}/diff"], name=f"{out}/Sub"),
            *_reduce_sum_square(f"{out}/diff", out, opset)]


def evaluation_graph(model: Any, qdq: Any, scales: Mapping[str, float], *, isolated: bool = True) -> tuple[Any, list[str], list[str]]:
    """(joint ModelProto, output names, layer names) for :func:`run_evaluation` (see module docstring).

    Outputs, in order: FP32 logits, INT8 logits, then per layer ``signal``, ``accumulated`` noise
    and (``isolated``) the twin's noise. A layer whose input has no calibrated scale gets no twin
    (its isolated figure is then None).
    """
    import onnx
    from onnx import helper, numpy_helper

    opset = next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))
    input_name = model.graph.input[0].name
    logits = model.graph.output[0].name
    joint = onnx.ModelProto()
    joint.CopyFrom(model)
    graph = joint.graph
    del graph.value_info[:]
    keep = {input_name}

    def renamed(name: str) -> str:
        return name if (not name or name in keep) else INT8_PREFIX + name

    for init in qdq.graph.initializer:
        copy = onnx.TensorProto()
        copy.CopyFrom(init)
        copy.name = renamed(init.name)
        graph.initializer.append(copy)
    for node in qdq.graph.node:
        new = onnx.NodeProto()
        new.CopyFrom(node)
        new.name = INT8_PREFIX + node.name
        new.input[:] = [renamed(i) for i in node.input]
        new.output[:] = [renamed(o) for o in node.output]
        graph.node.append(new)
    if opset >= 18:
        graph.initializer.append(numpy_helper.from_array(np.array([1], dtype=np.int64), "sens/axes1"))

    inits = {i.name: i for i in model.graph.initializer}
    zero = TWIN_PREFIX + "zero_point"
    graph.initializer.append(numpy_helper.from_array(np.array(0, dtype=np.int8), zero))
    layers = [n for n in weighted_nodes(model)]
    del graph.output[:]
    outputs = [logits, renamed(logits)]
    for name in outputs:
        graph.output.append(helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None))
    int8_names = {o for n in qdq.graph.node for o in n.output}
    for node in layers:
        out = node.output[0]
        extra = [f"sens/{node.name}/signal"]
        graph.node.extend(_reduce_sum_square(out, extra[0], opset))
        if out in int8_names:
            extra.append(f"sens/{node.name}/accumulated")
            graph.node.extend(_diff_sum_square(out, renamed(out), extra[-1], opset))
        x = node.input[0]
        if isolated and x in scales and node.input[1] in inits:
            w_name = TWIN_PREFIX + node.input[1]
            weight = numpy_helper.to_array(inits[node.input[1]]).astype(np.float32)
            w_inits, w_nodes, dq_w = weight_qdq(node, weight, w_name, "int8")
            s_name = f"{TWIN_PREFIX}{node.name}/x_scale"
            graph.initializer.extend(w_inits + [numpy_helper.from_array(np.array(scales[x], dtype=np.float32), s_name)])
            xq, xdq = f"{TWIN_PREFIX}{node.name}/x_q", f"{TWIN_PREFIX}{node.name}/x_dq"
            twin_out = f"{TWIN_PREFIX}{node.name}/out"
            twin = helper.make_node(node.op_type, [xdq, dq_w, *node.input[2:]], [twin_out], name=f"{TWIN_PREFIX}{node.name}")
            twin.attribute.extend(node.attribute)
            graph.node.extend([
                helper.make_node("QuantizeLinear", [x, s_name, zero], [xq], name=f"{xq}/Q"),
                helper.make_node("DequantizeLinear", [xq, s_name, zero], [xdq], name=f"{xdq}/DQ"),
                *w_nodes, twin,
            ])
            extra.append(f"sens/{node.name}/isolated")
            graph.node.extend(_diff_sum_square(out, twin_out, extra[-1], opset))
        for name in extra:
            graph.output.append(helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None))
            outputs.append(name)
    return joint, outputs, [n.name for n in layers]


class LayerSums:
    """Per-sample sums from :func:`evaluation_graph`'s outputs, added exactly (``math.fsum``)."""

    def __init__(self, outputs: Sequence[str]) -> None:
        self.names = [o for o in outputs if o.startswith("sens/")]
        self.values: dict[str, list[float]] = {n: [] for n in self.names}

    def add(self, named: Mapping[str, np.ndarray]) -> None:
        for n in self.names:
            self.values[n].extend(np.asarray(named[n], dtype=np.float64).tolist())

    def sqnr_db(self, layer: str, kind: str) -> float | None:
        """SQNR (dB) of ``layer``'s output, ``kind`` ``accumulated`` or ``isolated``; None if not computed."""
        noise_name = f"sens/{layer}/{kind}"
        if noise_name not in self.values:
            return None
        n, s = math.fsum(self.values[noise_name]), math.fsum(self.values[f"sens/{layer}/signal"])
        value = float("inf") if n == 0 else (10 * math.log10(s / n) if s > 0 else float("-inf"))
        # isolated twins may run as onnxruntime's fused INT8 kernels, whose float rescale can differ in the
        # last bits with the batch size: 0.01 dB keeps the report independent of the batching
        return round(value, ISOLATED_DECIMALS) if kind == "isolated" and math.isfinite(value) else value


def worst_isolated(isolated: Mapping[str, float | None], count: int = 5) -> list[tuple[str, float]]:
    """The ``count`` layers with the lowest isolated SQNR, worst first (layers without a figure left out)."""
    rows = [(n, v) for n, v in isolated.items() if isinstance(v, float) and not math.isnan(v)]
    return sorted(rows, key=lambda r: (r[1], r[0]))[:count]
