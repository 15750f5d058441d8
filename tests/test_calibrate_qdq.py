"""Q/DQ placement (TensorRT rules), INT8 weights, and onnxruntime execution."""

from __future__ import annotations

from collections import Counter

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from edgeres.calibrate.calibrators import compute_amax, scale_from_amax
from edgeres.calibrate.qdq import qdq_model, quantized_activations, residual_add_inputs
from edgeres.calibrate.stats import collect_statistics
from edgeres.errors import CalibrationError
from edgeres.evaluate import onnx_session, run_onnx, sqnr_db
from tests.calib_fixtures import export_tiny_resnet, tiny_dataset


@pytest.fixture(scope="module")
def calibrated(tmp_path_factory):
    model = onnx.load(str(export_tiny_resnet(tmp_path_factory.mktemp("q") / "m.onnx")))
    hists = collect_statistics(model, tiny_dataset(32))
    scales = {n: scale_from_amax(compute_amax(h, "entropy")) for n, h in hists.items()}
    return model, scales


def _producers(model):
    return {o: n for n in model.graph.node for o in n.output}


def test_tensorrt_placement(calibrated) -> None:
    model, scales = calibrated
    qdq = qdq_model(model, scales)
    producers = _producers(qdq)
    inits = {i.name: i for i in qdq.graph.initializer}
    for node in qdq.graph.node:
        if node.op_type in ("Conv", "Gemm"):
            act, weight = producers[node.input[0]], producers[node.input[1]]
            assert act.op_type == "DequantizeLinear" and producers[act.input[0]].op_type == "QuantizeLinear", f"{node.name}: activation not Q/DQ"
            assert weight.op_type == "DequantizeLinear", f"{node.name}: weight has no DequantizeLinear"
            q_weight = numpy_helper.to_array(inits[weight.input[0]])
            w_scale = numpy_helper.to_array(inits[weight.input[1]])
            assert q_weight.dtype == np.int8 and w_scale.shape == (q_weight.shape[0],), f"{node.name}: weights not per-channel INT8"
            assert next(a.i for a in weight.attribute if a.name == "axis") == 0, f"{node.name}: weight DQ axis must be 0"
            assert node.input[2] in inits and inits[node.input[2]].data_type == onnx.TensorProto.FLOAT, f"{node.name}: bias must stay FP32"
        if node.op_type == "QuantizeLinear":
            src = producers.get(node.input[0])
            assert src is None or src.op_type not in ("Conv", "Gemm"), f"TensorRT placement must not quantize the output of {src.name}"
            zp = numpy_helper.to_array(inits[node.input[2]])
            assert zp.dtype == np.int8 and zp == 0, "activations must be symmetric INT8 (zero point 0)"
        if node.op_type == "Add":
            dq_inputs = [i for i in node.input if producers[i].op_type == "DequantizeLinear"]
            assert len(dq_inputs) == 1, f"{node.name}: exactly the residual input must be quantized, got {dq_inputs}"
            other = next(i for i in node.input if i not in dq_inputs)
            assert producers[other].op_type == "Conv", f"{node.name}: the unquantized input must be the conv output (fused add)"


def test_onnxruntime_runs_both_placements(calibrated, tmp_path) -> None:
    model, scales = calibrated
    data = tiny_dataset(16, seed=9)
    ref = run_onnx(model, data)
    for placement in ("tensorrt", "onnxruntime"):
        qdq = qdq_model(model, scales, placement=placement)
        out = run_onnx(qdq, data)
        assert sqnr_db(ref, out) > 20, f"{placement}: INT8 logits SQNR {sqnr_db(ref, out):.1f} dB is too low"
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.optimized_model_filepath = str(tmp_path / "opt.onnx")
    opts.log_severity_level = 3
    ort.InferenceSession(qdq_model(model, scales, placement="onnxruntime").SerializeToString(), opts, providers=["CPUExecutionProvider"])
    ops = Counter(n.op_type for n in onnx.load(str(tmp_path / "opt.onnx")).graph.node)
    assert ops["QLinearConv"] >= 8, f"onnxruntime should run INT8 convolutions, optimized graph has {dict(ops)}"


def test_exclusion_and_errors(calibrated) -> None:
    model, scales = calibrated
    first_conv = next(n for n in model.graph.node if n.op_type == "Conv")
    qdq = qdq_model(model, scales, exclude=[first_conv.name])
    conv = next(n for n in qdq.graph.node if n.name == first_conv.name)
    assert list(conv.input) == list(first_conv.input), "an excluded layer must keep its FP32 input and weight"
    assert first_conv.input[0] not in quantized_activations(model, [first_conv.name]), "excluded input still quantized"
    with pytest.raises(CalibrationError, match="cannot exclude"):
        qdq_model(model, scales, exclude=["/not/a/layer"])
    missing = {k: v for k, v in scales.items() if k != residual_add_inputs(model)[0]}
    with pytest.raises(CalibrationError, match="no calibration scale"):
        qdq_model(model, missing)
    assert onnx_session(qdq) is not None, "Q/DQ model with an excluded layer must load"
