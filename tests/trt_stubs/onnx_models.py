"""Tiny ONNX models (FP32, FP16, Q/DQ with FP16) built with onnx.helper for the adapter tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def write_model(path: Path, kind: str = "fp32", input_name: str = "input", batch: int | str = "N",
                chw: tuple[int, int, int] = (3, 8, 8)) -> Path:
    """Conv -> GlobalAveragePool -> Flatten; ``kind`` is ``fp32``, ``fp16`` or ``qdq`` (Q/DQ on the input, FP16 elsewhere)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    elem = TensorProto.FLOAT if kind == "fp32" else TensorProto.FLOAT16
    np_dtype = np.float32 if kind == "fp32" else np.float16
    c = chw[0]
    weight = numpy_helper.from_array(np.random.default_rng(0).standard_normal((4, c, 3, 3)).astype(np_dtype), "conv.weight")
    inits = [weight]
    nodes = []
    x = input_name
    if kind == "qdq":
        inits += [numpy_helper.from_array(np.array(0.05, np.float16), "scale"),
                  numpy_helper.from_array(np.array(0, np.int8), "zero")]
        nodes += [helper.make_node("QuantizeLinear", [x, "scale", "zero"], ["xq"], name="/input/QuantizeLinear"),
                  helper.make_node("DequantizeLinear", ["xq", "scale", "zero"], ["xdq"], name="/input/DequantizeLinear")]
        x = "xdq"
    nodes += [helper.make_node("Conv", [x, "conv.weight"], ["c"], name="/conv/Conv", pads=[1, 1, 1, 1]),
              helper.make_node("GlobalAveragePool", ["c"], ["p"], name="/pool/GlobalAveragePool"),
              helper.make_node("Flatten", ["p"], ["logits"], name="/flatten/Flatten")]
    graph = helper.make_graph(nodes, "tiny", [helper.make_tensor_value_info(input_name, elem, [batch, *chw])],
                              [helper.make_tensor_value_info("logits", elem, [batch, 4])], initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path
