"""Q/DQ (explicit quantization) ONNX from a folded FP32 model and activation scales.

Placement follows TensorRT's documented recommendations for explicit quantization:

* every Conv/Gemm activation input gets QuantizeLinear -> DequantizeLinear with
  its calibrated per-tensor scale (zero point 0, INT8);
* every Conv/Gemm weight is stored as INT8 with per-output-channel scales and a
  DequantizeLinear on axis 0 (Gemm with ``transB=1``; axis 1 otherwise);
* the residual input of each Add that follows a Conv is quantized (the input
  that is not the Conv's own output), so TensorRT can fuse the Add into the
  Conv and keep its output in INT8;
* outputs of weighted layers are not quantized and biases stay FP32, so Conv,
  bias, residual Add and ReLU fuse into one INT8 kernel.

``placement="onnxruntime"`` additionally quantizes Conv and Add outputs, the
pattern onnxruntime's CPU provider needs to select its INT8 kernels
(QLinearConv, QLinearAdd). Where such an output feeds a ReLU whose output is
quantized, it reuses that scale: ReLU commutes with zero-point-0 quantization,
so this adds no rounding. Outputs feeding an Add get their own scale (one
extra rounding TensorRT does not do), so this variant is for CPU deployment
and latency; accuracy is measured on the TensorRT placement.
"""

from __future__ import annotations

from typing import Any, Iterable, Mapping

import numpy as np

from edgeres.calibrate.calibrators import quantize_weight, weight_scales
from edgeres.errors import CalibrationError

QUANTIZED_OPS = ("Conv", "Gemm")
PLACEMENTS = ("tensorrt", "onnxruntime")


def weighted_nodes(model: Any) -> list[Any]:
    """Conv/Gemm nodes whose weight is an initializer, in graph order."""
    inits = {i.name for i in model.graph.initializer}
    return [n for n in model.graph.node if n.op_type in QUANTIZED_OPS and len(n.input) > 1 and n.input[1] in inits]


def _producers(model: Any) -> dict[str, Any]:
    return {o: n for n in model.graph.node for o in n.output}


def _consumers(model: Any) -> dict[str, list[Any]]:
    users: dict[str, list[Any]] = {}
    for n in model.graph.node:
        for i in n.input:
            users.setdefault(i, []).append(n)
    return users


def residual_add_inputs(model: Any) -> list[str]:
    """For each Add of two activations, the input(s) TensorRT wants quantized.

    The input that is not a Conv output is the residual; when both are Conv
    outputs (a projection shortcut) the second one, torchvision's ``identity``,
    is quantized and the first keeps the fusion.
    """
    producers = _producers(model)
    consumers = _consumers(model)
    inits = {i.name for i in model.graph.initializer}
    chosen: list[str] = []
    for node in model.graph.node:
        if node.op_type != "Add" or len(node.input) != 2 or any(i in inits for i in node.input):
            continue
        from_conv = [
            producers.get(i) is not None and producers[i].op_type == "Conv" and len(consumers.get(i, [])) == 1
            for i in node.input
        ]
        if from_conv == [True, False]:
            chosen.append(node.input[1])
        elif from_conv == [False, True]:
            chosen.append(node.input[0])
        elif from_conv == [True, True]:
            chosen.append(node.input[1])
        else:
            chosen.extend(node.input)
    return chosen


def quantized_activations(model: Any, exclude: Iterable[str] = ()) -> list[str]:
    """Tensors that get Q/DQ in the TensorRT placement, in graph order."""
    excluded = set(exclude)
    names: list[str] = []
    for node in weighted_nodes(model):
        if node.name not in excluded and node.input[0] not in names:
            names.append(node.input[0])
    for name in residual_add_inputs(model):
        if name not in names:
            names.append(name)
    return names


def _output_scales(model: Any, quantized: list[str], scales: Mapping[str, float], excluded: set[str]) -> dict[str, float]:
    """Extra output Q/DQ of the onnxruntime placement: tensor -> scale."""
    consumers = _consumers(model)
    graph_outputs = {o.name for o in model.graph.output}
    extra: dict[str, float] = {}
    for node in model.graph.node:
        if node.op_type not in ("Conv", "Add") or node.name in excluded:
            continue
        out = node.output[0]
        if out in quantized or out in graph_outputs or out not in scales:
            continue
        users = consumers.get(out, [])
        if len(users) == 1 and users[0].op_type == "Relu" and users[0].output[0] in quantized:
            extra[out] = scales[users[0].output[0]]
        elif node.op_type == "Conv":
            extra[out] = scales[out]
    return extra


def qdq_model(
    model: Any,
    scales: Mapping[str, float],
    *,
    exclude: Iterable[str] = (),
    placement: str = "tensorrt",
) -> Any:
    """A new ModelProto with Q/DQ nodes inserted (``model`` is not modified).

    Args:
        model: folded FP32 ONNX model.
        scales: activation tensor name -> INT8 scale (amax / 127).
        exclude: names of Conv/Gemm nodes left unquantized (run at higher precision).
        placement: ``"tensorrt"`` (the default, see module docstring) or ``"onnxruntime"``.

    Raises:
        CalibrationError: a tensor that needs a scale has none, or a non-positive scale.
    """
    import onnx
    from onnx import helper, numpy_helper

    if placement not in PLACEMENTS:
        raise CalibrationError(f"placement must be one of {PLACEMENTS}, received {placement!r}")
    excluded = set(exclude)
    known = {n.name for n in weighted_nodes(model)}
    unknown = sorted(excluded - known)
    if unknown:
        raise CalibrationError(f"cannot exclude {unknown}: not Conv/Gemm nodes of this model (known: {sorted(known)[:5]} ...)")
    quantized = quantized_activations(model, excluded)
    act_scales: dict[str, float] = {}
    for name in quantized:
        if name not in scales:
            raise CalibrationError(f"no calibration scale for tensor {name!r}; the statistics or cache do not cover this model")
        act_scales[name] = float(scales[name])
    if placement == "onnxruntime":
        act_scales.update(_output_scales(model, quantized, scales, excluded))
    bad = {n: s for n, s in act_scales.items() if not (np.isfinite(s) and s > 0)}
    if bad:
        raise CalibrationError(f"scales must be finite and positive, received {dict(list(bad.items())[:3])}")

    out = onnx.ModelProto()
    out.CopyFrom(model)
    graph = out.graph
    inits = {i.name: i for i in graph.initializer}
    new_inits: list[Any] = []
    zero = "qdq_zero_point_int8"
    new_inits.append(numpy_helper.from_array(np.array(0, dtype=np.int8), zero))

    scale_names: dict[str, str] = {}
    pair_count: dict[str, int] = {}

    def qdq_pair(tensor: str) -> list[Any]:
        # a dedicated Q/DQ pair per consumer: onnxruntime fuses Q/DQ into its INT8 kernels (and
        # converts them to the u8 its x86 kernels need) only when each has a single consumer;
        # TensorRT treats duplicate pairs with one scale as one quantization.
        if tensor not in scale_names:
            scale_names[tensor] = f"{tensor}_scale"
            new_inits.append(numpy_helper.from_array(np.array(act_scales[tensor], dtype=np.float32), scale_names[tensor]))
        k = pair_count[tensor] = pair_count.get(tensor, -1) + 1
        suffix = "" if k == 0 else f"_{k}"
        scale = scale_names[tensor]
        return [
            helper.make_node("QuantizeLinear", [tensor, scale, zero], [f"{tensor}_quantized{suffix}"], name=f"{tensor}_QuantizeLinear{suffix}"),
            helper.make_node("DequantizeLinear", [f"{tensor}_quantized{suffix}", scale, zero], [f"{tensor}_dequantized{suffix}"], name=f"{tensor}_DequantizeLinear{suffix}"),
        ]

    nodes: list[Any] = []
    input_qdq = set(quantized)
    output_qdq = set(act_scales) - input_qdq
    residual = set(residual_add_inputs(model))
    for node in list(graph.node):
        new = helper.make_node(node.op_type, list(node.input), list(node.output), name=node.name, domain=node.domain)
        new.attribute.extend(node.attribute)
        quantize_here = node.op_type in QUANTIZED_OPS and node.name in known and node.name not in excluded
        for k, tensor in enumerate(node.input):
            use_dq = tensor in act_scales and (
                (quantize_here and k == 0)
                or (node.op_type == "Add" and tensor in residual)
                or tensor in output_qdq
            )
            if use_dq:
                pair = qdq_pair(tensor)
                nodes.extend(pair)
                new.input[k] = pair[1].output[0]
        if quantize_here:
            w_name = node.input[1]
            weight = numpy_helper.to_array(inits[w_name]).astype(np.float32)
            axis = 0
            if node.op_type == "Gemm":
                trans_b = next((a.i for a in node.attribute if a.name == "transB"), 0)
                if not trans_b:
                    weight, axis = weight.T, 1
            w_scales = weight_scales(weight)
            q = quantize_weight(weight, w_scales)
            if axis == 1:
                q = np.ascontiguousarray(q.T)
            new_inits += [
                numpy_helper.from_array(q, f"{w_name}_quantized"),
                numpy_helper.from_array(w_scales, f"{w_name}_scale"),
                numpy_helper.from_array(np.zeros(w_scales.shape, dtype=np.int8), f"{w_name}_zero_point"),
            ]
            nodes.append(helper.make_node(
                "DequantizeLinear", [f"{w_name}_quantized", f"{w_name}_scale", f"{w_name}_zero_point"],
                [f"{w_name}_dequantized"], name=f"{w_name}_DequantizeLinear", axis=axis,
            ))
            new.input[1] = f"{w_name}_dequantized"
        nodes.append(new)
    del graph.node[:]
    graph.node.extend(nodes)
    used = {i for n in graph.node for i in n.input}
    keep = [i for i in graph.initializer if i.name in used]
    del graph.initializer[:]
    graph.initializer.extend(keep + [i for i in new_inits if i.name in used])
    del graph.value_info[:]
    if not any(o.domain in ("", "ai.onnx") and o.version >= 13 for o in out.opset_import):
        raise CalibrationError("per-channel DequantizeLinear needs opset 13 or newer; re-export the model with opset >= 13")
    onnx.checker.check_model(out)
    return out


def qdq_summary(model: Any) -> dict[str, int]:
    """Counts of Q, DQ and quantized Conv/Gemm nodes, for reports and tests."""
    ops = [n.op_type for n in model.graph.node]
    dq_out = {n.output[0] for n in model.graph.node if n.op_type == "DequantizeLinear"}
    qlayers = sum(1 for n in model.graph.node if n.op_type in QUANTIZED_OPS and n.input[0] in dq_out and n.input[1] in dq_out)
    return {"quantize": ops.count("QuantizeLinear"), "dequantize": ops.count("DequantizeLinear"), "quantized_layers": qlayers}
