"""FP16 and Q/DQ-FP16 ONNX rewrites (what TensorRT 11 compiles), checked with onnxruntime."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper

from edgeres.errors import ExportError
from edgeres.export import export_onnx, realistic_inputs
from edgeres.fold import fold_batchnorm
from edgeres.models import create_model
from edgeres.precision import fp16_model_from_fp32, qdq_fp16_model_from_qdq, write_fp16_onnx
from tests.conftest import randomize_batchnorm


@pytest.fixture(scope="module")
def fp32_onnx(tmp_path_factory: pytest.TempPathFactory) -> Path:
    model = fold_batchnorm(randomize_batchnorm(create_model("resnet20", in_channels=1)), torch.randn(2, 1, 28, 28))
    path = tmp_path_factory.mktemp("p") / "model.onnx"
    export_onnx(model, path, (1, 1, 28, 28))
    return path


def _run(model: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    session = ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    return session.run(["logits"], {"input": x})[0]


def _insert_qdq(model: onnx.ModelProto, act_scale: float = 0.05) -> onnx.ModelProto:
    """Q/DQ on each Conv's input (per tensor) and weight (per channel), as a Q/DQ export has."""
    g = model.graph
    inits = {i.name: i for i in g.initializer}
    nodes = []
    for node in g.node:
        if node.op_type == "Conv":
            x, w = node.input[0], node.input[1]
            wa = numpy_helper.to_array(inits[w])
            g.initializer.extend([
                numpy_helper.from_array(np.array(act_scale, np.float32), f"{node.name}/xs"),
                numpy_helper.from_array(np.array(0, np.int8), f"{node.name}/xz"),
                numpy_helper.from_array((np.abs(wa).reshape(len(wa), -1).max(1) / 127).astype(np.float32), f"{node.name}/ws"),
                numpy_helper.from_array(np.zeros(len(wa), np.int8), f"{node.name}/wz"),
            ])
            xs, xz, ws, wz = (f"{node.name}/{s}" for s in ("xs", "xz", "ws", "wz"))
            nodes += [
                helper.make_node("QuantizeLinear", [x, xs, xz], [f"{node.name}/xq"]),
                helper.make_node("DequantizeLinear", [f"{node.name}/xq", xs, xz], [f"{node.name}/xdq"]),
                helper.make_node("QuantizeLinear", [w, ws, wz], [f"{node.name}/wq"], axis=0),
                helper.make_node("DequantizeLinear", [f"{node.name}/wq", ws, wz], [f"{node.name}/wdq"], axis=0),
            ]
            node.input[0], node.input[1] = f"{node.name}/xdq", f"{node.name}/wdq"
        nodes.append(node)
    del g.node[:]
    g.node.extend(nodes)
    onnx.checker.check_model(model)
    return model


def test_fp16_model_keeps_fp32_io_and_agrees(fp32_onnx: Path) -> None:
    ref = onnx.load(fp32_onnx)
    half = fp16_model_from_fp32(ref)
    assert half.graph.input[0].type.tensor_type.elem_type == TensorProto.FLOAT, "input stays FP32"
    assert half.graph.output[0].type.tensor_type.elem_type == TensorProto.FLOAT, "output stays FP32"
    float_inits = [i.name for i in half.graph.initializer if i.data_type == TensorProto.FLOAT]
    assert not float_inits, f"every weight is FP16: {float_inits[:3]}"
    conv_w = next(i for i in half.graph.initializer if i.name == "layer1.0.conv1.weight")
    assert conv_w.data_type == TensorProto.FLOAT16, "names kept, weights FP16"
    x = realistic_inputs((16, 1, 28, 28))
    a, b = _run(ref, x), _run(half, x)
    assert b.dtype == np.float32, "FP32 output"
    scale = float(np.abs(a).max())
    assert float(np.abs(a - b).max()) <= 1e-2 * scale, f"FP16 within FP16 tolerance: {np.abs(a - b).max()} vs {scale}"
    assert (a.argmax(1) == b.argmax(1)).mean() == 1.0, "top-1 unchanged"


def test_qdq_fp16_model_agrees_with_fp32_qdq(fp32_onnx: Path) -> None:
    qdq = _insert_qdq(onnx.load(fp32_onnx))
    half = qdq_fp16_model_from_qdq(qdq)
    assert max(o.version for o in half.opset_import if o.domain in ("", "ai.onnx")) >= 19, "FP16 Q/DQ needs opset 19"
    q_scales = {n.input[1] for n in half.graph.node if n.op_type == "QuantizeLinear"}
    types = {i.name: i.data_type for i in half.graph.initializer}
    assert all(types[s] == TensorProto.FLOAT16 for s in q_scales), "scales FP16"
    x = realistic_inputs((16, 1, 28, 28))
    a, b = _run(qdq, x), _run(half, x)
    scale = float(np.abs(a).max())
    # FP16 inputs to Q can round to the neighbouring INT8 step: a few steps' worth of error, not more
    assert float(np.abs(a - b).max()) <= 5e-2 * scale, f"Q/DQ FP16 vs Q/DQ FP32: {np.abs(a - b).max()} vs {scale}"
    assert (a.argmax(1) == b.argmax(1)).mean() >= 0.9, "top-1 mostly unchanged"


def test_refusals(fp32_onnx: Path, tmp_path: Path) -> None:
    with pytest.raises(ExportError, match="Q/DQ"):
        qdq_fp16_model_from_qdq(onnx.load(fp32_onnx))
    model = onnx.load(fp32_onnx)
    model.graph.node[0].op_type = "NonMaxSuppression"
    with pytest.raises(ExportError, match="NonMaxSuppression"):
        fp16_model_from_fp32(model)
    out = write_fp16_onnx(fp32_onnx, tmp_path / "model.fp16.onnx")
    assert out.exists() and out.stat().st_size < fp32_onnx.stat().st_size * 0.6, "FP16 file about half the size"
    again = write_fp16_onnx(fp32_onnx, tmp_path / "again.fp16.onnx")
    assert out.read_bytes() == again.read_bytes(), "conversion is deterministic"


def test_fp16_scales_never_underflow_and_weights_use_them(tmp_path: Path) -> None:
    """A weight channel of zeros, one of tiny values: every FP16 scale stays positive (10/11 parser rule)."""
    from edgeres.calibrate.qdq import dequantized_weights, qdq_model
    from edgeres.calibrate.stats import observed_tensors
    from edgeres.precision import FP16_SMALLEST_SUBNORMAL

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.ReLU(), torch.nn.Flatten(), torch.nn.Linear(4 * 26 * 26, 3))
    with torch.no_grad():
        net[0].weight[0].zero_()  # all-zero channel
        net[0].weight[1] *= 1e-7  # channel absmax ~1e-8: its FP32 scale ~1e-10 is 0 in FP16
    path = tmp_path / "tiny.onnx"
    export_onnx(net.eval(), path, (1, 1, 28, 28))
    model = onnx.load(str(path))
    scales = {n: 0.02 for n in observed_tensors(model)}
    scales["input"] = 1e-9  # an activation scale below FP16's smallest subnormal
    for form in ("int8", "fp32"):
        qdq = qdq_model(model, scales, weight_form=form, quantize_classifier=True)
        raw = {i.name: numpy_helper.to_array(i) for i in qdq.graph.initializer}
        assert (raw["0.weight_scale"].astype(np.float16) == 0).any(), "the test needs a scale that a plain cast makes 0"
        fp16 = qdq_fp16_model_from_qdq(qdq)
        scale_inputs = {n.input[1] for n in fp16.graph.node if n.op_type in ("QuantizeLinear", "DequantizeLinear")}
        for init in fp16.graph.initializer:
            if init.name in scale_inputs:
                values = numpy_helper.to_array(init)
                assert values.dtype == np.float16 and (values > 0).all(), f"{form} {init.name}: FP16 scales must all be positive"
                assert values.min() >= np.float16(FP16_SMALLEST_SUBNORMAL), f"{form} {init.name}: clamped at the smallest subnormal"
        if form == "int8":
            w32, w16 = dequantized_weights(qdq), dequantized_weights(fp16)
            name = "0.weight"
            original = numpy_helper.to_array(next(i for i in model.graph.initializer if i.name == name)).astype(np.float64)
            err32 = np.abs(w16[name].astype(np.float64) - original)
            assert np.all(w16[name][0] == 0), "the all-zero channel stays zero"
            assert err32[1].max() <= FP16_SMALLEST_SUBNORMAL / 2 + 1e-12, (
                f"tiny channel re-quantized with the FP16 scale: error {err32[1].max():.3g} must be within half a step"
            )
            normal = [k for k in w32 if k != name]
            for k in normal:
                assert np.allclose(w16[k].astype(np.float32), w32[k], rtol=1e-3, atol=1e-6), f"{k}: normal-range weights unchanged"
        out = _run_any(fp16, np.random.default_rng(0).random((2, 1, 28, 28), dtype=np.float32))
        assert np.isfinite(out).all(), f"{form}: the FP16 Q/DQ model must run"


def _run_any(model: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    session = ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: x})[0]
