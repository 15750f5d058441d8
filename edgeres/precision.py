"""ONNX precision rewrites for strongly typed TensorRT (11.x): precision comes from the ONNX.

TensorRT 11 removed ``BuilderFlag.FP16``/``INT8`` and implicit calibration, so
an FP16 engine needs an FP16 ONNX, and an INT8 engine a Q/DQ ONNX whose
unquantized parts are FP16. Both keep FP32 graph inputs and outputs (a Cast
at each end) so callers feed and read float32 as before.

:func:`fp16_model_from_fp32` and :func:`qdq_fp16_model_from_qdq` are pure
(ModelProto in, new ModelProto out); :func:`write_fp16_onnx` is the file edge.
Scope: the ops of image classifiers (conv, pooling, elementwise, Gemm,
shape ops, Q/DQ); a graph with any other op is refused rather than guessed at.
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
    opset is raised to 19 when the graph holds Q/DQ nodes.

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
    for i, init in enumerate(graph.initializer):
        if init.data_type == TensorProto.FLOAT:
            graph.initializer[i].CopyFrom(numpy_helper.from_array(_to_fp16(numpy_helper.to_array(init)), init.name))
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
    return array.astype(np.float16)


def write_fp16_onnx(src: str | os.PathLike[str], dst: str | os.PathLike[str], *, qdq: bool = False) -> Path:
    """Read an FP32 (or Q/DQ) ONNX file and write its FP16 form to ``dst`` atomically."""
    onnx = _onnx()
    from edgeres._io import write_bytes_atomic

    model = onnx.load(os.fspath(src))
    converted = qdq_fp16_model_from_qdq(model) if qdq else fp16_model_from_fp32(model)
    return write_bytes_atomic(dst, converted.SerializeToString(deterministic=True))
