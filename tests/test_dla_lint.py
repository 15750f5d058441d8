"""edgeres.dla_lint: which nodes fall back from the DLA to the GPU, and why (checked against the table's limits)."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

from edgeres.dla_lint import DLA_LAYERS, dla_fallback_from_model
from edgeres.errors import BuildError


def _conv_model(kernel: int, stride: int, pool_window: int) -> object:
    """input (N,3,32,32) -> Conv(kernel, stride) -> Relu -> MaxPool(window) -> GlobalAveragePool -> Flatten -> Gemm."""
    w = numpy_helper.from_array(np.zeros((8, 3, kernel, kernel), np.float32), "w")
    fc = numpy_helper.from_array(np.zeros((10, 8), np.float32), "fc")
    pad = kernel // 2
    nodes = [
        helper.make_node("Conv", ["input", "w"], ["c"], name="conv", kernel_shape=[kernel, kernel],
                         strides=[stride, stride], pads=[pad] * 4),
        helper.make_node("Relu", ["c"], ["r"], name="relu"),
        helper.make_node("MaxPool", ["r"], ["p"], name="pool", kernel_shape=[pool_window, pool_window],
                         strides=[1, 1]),
        helper.make_node("GlobalAveragePool", ["p"], ["g"], name="gap"),
        helper.make_node("Flatten", ["g"], ["f"], name="flatten", axis=1),
        helper.make_node("Gemm", ["f", "fc"], ["logits"], name="fc", transB=1),
    ]
    graph = helper.make_graph(
        nodes, "m", [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 3, 32, 32])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 10])], [w, fc])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_layers_within_the_table_stay_on_dla() -> None:
    found = {f.layer: f for f in dla_fallback_from_model(_conv_model(3, 1, 3), "10.3.0", batch=2)}
    assert "conv" not in found and "relu" not in found and "pool" not in found, f"within limits: {sorted(found)}"
    assert found["gap"].op == "GlobalAveragePool" and "Reduce" in found["gap"].reason, f"GAP is a Reduce: {found['gap']}"
    assert "onnx-tensorrt" in found["gap"].source, f"cites the importer: {found['gap'].source}"
    assert {"flatten", "fc"} <= set(found), f"Shuffle and MatrixMultiply reported: {sorted(found)}"
    assert all(f.certainty in ("documented", "unconfirmed") for f in found.values()), "certainty stated"


@pytest.mark.parametrize("kernel, stride, window, layer, needle", [
    (33, 1, 3, "conv", "kernel [33, 33] outside [1,32]"),
    (3, 9, 3, "conv", "stride [9, 9] outside [1,8]"),
    (3, 1, 9, "pool", "window [9, 9] outside [1,8]"),
])
def test_limits_of_the_table_are_checked(kernel: int, stride: int, window: int, layer: str, needle: str) -> None:
    found = {f.layer: f for f in dla_fallback_from_model(_conv_model(kernel, stride, window), "8.6.2")}
    assert layer in found and needle in found[layer].reason, f"{layer}: {needle} in {found.get(layer)}"
    assert found[layer].line().startswith(f"{layer} ("), f"one printable line: {found[layer].line()}"


def test_version_without_dla_is_refused() -> None:
    with pytest.raises(BuildError, match="^rule dla-available: TensorRT 11.1.0"):
        dla_fallback_from_model(_conv_model(3, 1, 3), "11.1.0")


def test_every_table_entry_names_its_source() -> None:
    for op, entry in DLA_LAYERS.items():
        assert entry.source and entry.trt_layer, f"{op}: layer and source"
        assert entry.check is not None or entry.why_not, f"{op}: a layer off the DLA says why"
