"""ONNX precision rewrites for strongly typed TensorRT (11.x): precision comes from the ONNX.

TensorRT 11 removed ``BuilderFlag.FP16``/``INT8`` and implicit calibration, so
an FP16 engine needs an FP16 ONNX, and an INT8 engine a Q/DQ ONNX whose
unquantized parts are FP16. Both keep FP32 graph inputs and outputs (a Cast
at each end) so callers feed and read float32 as before.

:func:`fp16_model_from_fp32` and :func:`qdq_fp16_model_from_qdq` are pure
(ModelProto in, new ModelProto out); :func:`write_fp16_onnx` is the file edge.
Scope: the ops of image classifiers (conv, pooling, elementwise, Gemm,
shape ops, Q/DQ); a graph with any other op is refused rather than guessed at.

Not verified here (no TensorRT): that TensorRT 11 builds these graphs; the
positive-scale rule is checked against the 10.1 parser source (see
:data:`FP16_SMALLEST_SUBNORMAL`) and with onnxruntime only.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from edgeres.errors import ExportError

# ops whose float inputs/outputs may all become FP16 (opset 17..21 semantics)
FP16_SAFE_OPS = frozenset({
    "Conv", "ConvTranspose", "Gemm", "MatMul", "Relu", "LeakyRelu", "Clip", "Sigmoid", "HardSigmoid",
    "HardSwish", "Add", "Sub", "Mul", "Div", "MaxPool", "AveragePool", "GlobalAveragePool",
    "GlobalMaxPool", "Flatten", "Reshape", "Squeeze", "Unsqueeze", "Transpose", "Concat", "Pad",
    "Identity", "Softmax", "Cast", "Shape", "Gather", "Slice", "ReduceMean",
    "QuantizeLinear", "DequantizeLinear",
})
# Q/DQ with FP16 scales/inputs needs opset 19 (float16 was added to QuantizeLinear/DequantizeLinear there)
QDQ_FP16_MIN_OPSET = 19
# Smallest FP16 subnormal (2**-24). A scale below it becomes 0 in FP16 and TensorRT's 10/11 ONNX parser
# asserts "Scale coefficients must all be positive" (onnx/onnx-tensorrt 10.1-GA onnxOpImporters.cpp,
# QuantDequantLinearHelper, the isFp16() branch). Clamped as ModelOpt 0.47 does: nonzero values below it
# become it (modelopt/onnx/autocast/precisionconverter.py _convert_initializer_data, smallest_subnormal;
# zero Q/DQ scales: modelopt/onnx/quantization/qdq_utils.py replace_zero_scale_with_smallest_nonzero,
# np.float16(6e-08)). Unlike ModelOpt, a negative non-scale value keeps its sign.
FP16_SMALLEST_SUBNORMAL = float(np.finfo(np.float16).smallest_subnormal)


def _onnx() -> Any:
    import onnx

    return onnx


def _default_opset(model: Any) -> int:
    return max((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), default=0)


def _check_ops(model: Any) -> None:
    bad = sorted({n.op_type for n in model.graph.node if n.domain not in ("", "ai.onnx") or n.op_type not in FP16_SAFE_OPS})
    if bad:
        raise ExportError(
            f"cannot rewrite this graph to FP16: op(s) {', '.join(bad)} are outside the supported set "
            f"({', '.join(sorted(FP16_SAFE_OPS))}); build FP16 with TensorRT 8.6/10.x flags instead"
        )


def fp16_model_from_fp32(model: Any, *, keep_io_types: bool = True) -> Any:
    """A copy of ``model`` computing in FP16: weights, constants and activations.

    Every FLOAT initializer and Constant becomes FLOAT16, internal Casts to FLOAT
    become Casts to FLOAT16, and (when ``keep_io_types``) a Cast after each FP32
    input and before each FP32 output keeps the graph's I/O in FP32 with the
    same names. Q/DQ scales become FP16 too, which needs opset >= 19; the
    opset is raised to 19 when the graph holds Q/DQ nodes. Scales are clamped
    to at least :data:`FP16_SMALLEST_SUBNORMAL`, other tiny constants likewise
    (as ModelOpt does), and pre-quantized INT8 weights are re-quantized with
    the FP16-rounded scale of their DequantizeLinear, so the FP16 graph states
    the weights nearest to the FP32 Q/DQ model's (unchanged whenever the scale
    is a normal FP16 number: then ``|q * (s32/s16 - 1)| <= 127 * 2**-11 < 1/2``).

    Raises:
        ExportError: the graph holds an op outside :data:`FP16_SAFE_OPS`.
    """
    onnx = _onnx()
    from onnx import TensorProto, helper, numpy_helper

    from edgeres.export import checked_onnx

    _check_ops(model)
    out = onnx.ModelProto()
    out.CopyFrom(model)
    graph = out.graph
    has_qdq = any(n.op_type in ("QuantizeLinear", "DequantizeLinear") for n in graph.node)
    if has_qdq and _default_opset(out) < QDQ_FP16_MIN_OPSET:
        for o in out.opset_import:
            if o.domain in ("", "ai.onnx"):
                o.version = QDQ_FP16_MIN_OPSET
    scale_names = {n.input[1] for n in graph.node if n.op_type in ("QuantizeLinear", "DequantizeLinear") and len(n.input) > 1}
    requantized = _int8_weights_for_fp16_scales(graph)
    for i, init in enumerate(graph.initializer):
        if init.name in requantized:
            graph.initializer[i].CopyFrom(numpy_helper.from_array(requantized[init.name], init.name))
        elif init.data_type == TensorProto.FLOAT:
            array = numpy_helper.to_array(init)
            fp16 = fp16_scales(array) if init.name in scale_names else _to_fp16(array)
            graph.initializer[i].CopyFrom(numpy_helper.from_array(fp16, init.name))
    for node in graph.node:
        for attr in node.attribute:
            if attr.type == onnx.AttributeProto.TENSOR and attr.t.data_type == TensorProto.FLOAT:
                attr.t.CopyFrom(numpy_helper.from_array(_to_fp16(numpy_helper.to_array(attr.t)), attr.t.name))
            if node.op_type == "Cast" and attr.name == "to" and attr.i == TensorProto.FLOAT:
                attr.i = TensorProto.FLOAT16
    new_nodes = []
    if keep_io_types:
        rename: dict[str, str] = {}
        for inp in graph.input:
            if inp.type.tensor_type.elem_type == TensorProto.FLOAT:
                cast_out = f"{inp.name}__fp16"
                rename[inp.name] = cast_out
                new_nodes.append(helper.make_node("Cast", [inp.name], [cast_out], to=TensorProto.FLOAT16, name=f"/{inp.name}/CastToFp16"))
        for node in graph.node:
            for k, name in enumerate(node.input):
                if name in rename:
                    node.input[k] = rename[name]
        new_nodes.extend(graph.node)
        for outp in graph.output:
            if outp.type.tensor_type.elem_type == TensorProto.FLOAT:
                internal = f"{outp.name}__fp16"
                for node in new_nodes:
                    for k, name in enumerate(node.output):
                        if name == outp.name:
                            node.output[k] = internal
                    for k, name in enumerate(node.input):
                        if name == outp.name:
                            node.input[k] = internal
                new_nodes.append(helper.make_node("Cast", [internal], [outp.name], to=TensorProto.FLOAT, name=f"/{outp.name}/CastToFp32"))
    else:
        new_nodes.extend(graph.node)
        for value in (*graph.input, *graph.output):
            if value.type.tensor_type.elem_type == TensorProto.FLOAT:
                value.type.tensor_type.elem_type = TensorProto.FLOAT16
    del graph.node[:]
    graph.node.extend(new_nodes)
    # element types of intermediates changed: recompute them instead of patching each one
    del graph.value_info[:]
    return checked_onnx(out, "FP16 rewrite produced an invalid ONNX graph")


def qdq_fp16_model_from_qdq(model: Any) -> Any:
    """The Q/DQ model with its unquantized parts (and scales) in FP16, FP32 I/O kept.

    This is what TensorRT 11 needs for INT8: quantized layers run INT8 from the
    Q/DQ pairs, everything else runs in the FP16 the ONNX now states.
    """
    if not any(n.op_type in ("QuantizeLinear", "DequantizeLinear") for n in model.graph.node):
        raise ExportError("expected a Q/DQ model (QuantizeLinear/DequantizeLinear nodes), received a graph without any")
    return fp16_model_from_fp32(model, keep_io_types=True)


def _to_fp16(array: np.ndarray) -> np.ndarray:
    finite_max = float(np.finfo(np.float16).max)
    if array.size and np.nanmax(np.abs(array)) > finite_max:
        raise ExportError(
            f"a constant holds {float(np.nanmax(np.abs(array))):.3g}, beyond FP16's range ({finite_max:.0f}); "
            "this model cannot be stated in FP16"
        )
    tiny = (array != 0) & (np.abs(array) < FP16_SMALLEST_SUBNORMAL)
    array = np.where(tiny, np.copysign(FP16_SMALLEST_SUBNORMAL, array), array)
    return array.astype(np.float16)


def fp16_scales(scales: np.ndarray) -> np.ndarray:
    """Q/DQ scales as FP16, never 0: clamped to [smallest subnormal, FP16 max] (see :data:`FP16_SMALLEST_SUBNORMAL`)."""
    clamped = np.clip(np.asarray(scales, dtype=np.float64), FP16_SMALLEST_SUBNORMAL, float(np.finfo(np.float16).max))
    return clamped.astype(np.float16)


def _int8_weights_for_fp16_scales(graph: Any) -> dict[str, np.ndarray]:
    """INT8 weight initializer -> its values re-quantized with the FP16 scale of the DequantizeLinear reading it.

    The FP32 Q/DQ model states the weight ``q * s32``; the FP16 model can only scale by ``s16 =
    fp16_scales(s32)``, so the INT8 values become ``clip(rint(q * s32 / s16), -127, 127)`` (TensorRT's
    documented INT8 weight range), per output channel along the DequantizeLinear's axis.
    """
    from onnx import TensorProto, numpy_helper

    inits = {i.name: i for i in graph.initializer}
    out: dict[str, np.ndarray] = {}
    for node in graph.node:
        if node.op_type != "DequantizeLinear" or len(node.input) < 2:
            continue
        q_init, s_init = inits.get(node.input[0]), inits.get(node.input[1])
        if q_init is None or s_init is None or q_init.data_type != TensorProto.INT8 or s_init.data_type != TensorProto.FLOAT:
            continue
        q = numpy_helper.to_array(q_init).astype(np.float64)
        s32 = numpy_helper.to_array(s_init).astype(np.float64)
        s16 = fp16_scales(s32).astype(np.float64)
        if s32.ndim:
            axis = next((a.i for a in node.attribute if a.name == "axis"), 1) % q.ndim
            shape = [1] * q.ndim
            shape[axis] = -1
            s32, s16 = s32.reshape(shape), s16.reshape(shape)
        out[q_init.name] = np.clip(np.rint(q * s32 / s16), -127, 127).astype(np.int8)
    return out


def write_fp16_onnx(src: str | os.PathLike[str], dst: str | os.PathLike[str], *, qdq: bool = False) -> Path:
    """Read an FP32 (or Q/DQ) ONNX file and write its FP16 form to ``dst`` atomically."""
    onnx = _onnx()
    from edgeres._io import write_bytes_atomic

    model = onnx.load(os.fspath(src))
    converted = qdq_fp16_model_from_qdq(model) if qdq else fp16_model_from_fp32(model)
    return write_bytes_atomic(dst, converted.SerializeToString(deterministic=True))
