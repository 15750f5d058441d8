"""Q/DQ placement (TensorRT rules), both weight forms, classifier, shared pairs, and onnxruntime execution."""

from __future__ import annotations

from collections import Counter

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from edgeres.calibrate.calibrators import compute_amax, scale_from_amax
from edgeres.calibrate.qdq import (
    WEIGHT_FORM_RULES,
    classifier_nodes,
    dequantized_weights,
    qdq_model,
    quantized_activations,
    residual_add_inputs,
    weight_form_for,
)
from edgeres.calibrate.stats import collect_statistics
from edgeres.errors import CalibrationError
from edgeres.evaluate import onnx_session, run_onnx, sqnr_db
from tests.calib_fixtures import export_resnet18, export_tiny_resnet, tiny_dataset


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
    qdq = qdq_model(model, scales, quantize_classifier=True)
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
    assert ops["QLinearConv"] >= 12 and ops["FusedConv"] == 0, f"onnxruntime should run INT8 convolutions, optimized graph has {dict(ops)}"


def test_exclusion_and_errors(calibrated) -> None:
    model, scales = calibrated
    first_conv = next(n for n in model.graph.node if n.op_type == "Conv")
    qdq = qdq_model(model, scales, exclude=[first_conv.name])
    conv = next(n for n in qdq.graph.node if n.name == first_conv.name)
    assert list(conv.input) == list(first_conv.input), "an excluded layer must keep its FP32 input and weight"
    assert first_conv.input[0] not in quantized_activations(model, [first_conv.name]), "excluded input still quantized"
    from edgeres.calibrate.qdq import residual_adds

    add, inputs = next(iter(residual_adds(model).items()))
    no_add = qdq_model(model, scales, exclude=[add])
    node = next(n for n in no_add.graph.node if n.name == add)
    assert inputs[0] in node.input, f"an excluded residual Add must read its FP32 input {inputs[0]}"
    with pytest.raises(CalibrationError, match="cannot exclude"):
        qdq_model(model, scales, exclude=["/not/a/layer"])
    missing = {k: v for k, v in scales.items() if k != residual_add_inputs(model)[0]}
    with pytest.raises(CalibrationError, match="no calibration scale"):
        qdq_model(model, missing)
    assert onnx_session(qdq) is not None, "Q/DQ model with an excluded layer must load"


def _quantize_nodes(qdq):
    return Counter(n.input[0] for n in qdq.graph.node if n.op_type == "QuantizeLinear")


@pytest.fixture(scope="module")
def resnet18(tmp_path_factory):
    return onnx.load(str(export_resnet18(tmp_path_factory.mktemp("r18") / "r18.onnx")))


def _fake_scales(model):
    from edgeres.calibrate.stats import observed_tensors

    return {n: 0.001 * (i + 1) for i, n in enumerate(observed_tensors(model))}


def test_classifier_left_unquantized_by_default(calibrated) -> None:
    model, scales = calibrated
    head = classifier_nodes(model)
    assert len(head) == 1, f"the tiny ResNet has one classifier Gemm, found {head}"
    for kwargs, expect_int8 in (({}, False), ({"quantize_classifier": True}, True)):
        qdq = qdq_model(model, scales, **kwargs)
        gemm = next(n for n in qdq.graph.node if n.name == head[0])
        producers = _producers(qdq)
        int8 = all(i in producers and producers[i].op_type == "DequantizeLinear" for i in gemm.input[:2])
        assert int8 == expect_int8, f"{kwargs}: classifier input/weight Q/DQ is {int8}, expected {expect_int8}"
        fc_input = next(n for n in model.graph.node if n.name == head[0]).input[0]
        assert (fc_input in quantized_activations(model, **kwargs)) == expect_int8, f"{kwargs}: activation list disagrees"


def test_one_pair_per_tensor_and_pooling_input(resnet18) -> None:
    scales = _fake_scales(resnet18)
    qdq = qdq_model(resnet18, scales)
    per_tensor = _quantize_nodes(qdq)
    acts = {t: c for t, c in per_tensor.items() if not t.endswith("weight")}
    assert acts and set(acts.values()) == {1}, f"each activation must have exactly one QuantizeLinear: {acts}"
    users = Counter(i for n in qdq.graph.node for i in n.input)
    shared = [t for t in acts if users[f"{t}_dequantized"] > 1]
    assert len(shared) >= 3, f"block inputs feed conv1 and the Add (or the downsample) from one DQ; shared: {shared}"
    gap = next(n for n in qdq.graph.node if n.op_type == "GlobalAveragePool")
    assert _producers(qdq)[gap.input[0]].op_type == "DequantizeLinear", "GlobalAveragePool must read a quantized input"
    # TensorRT placement on ResNet-18: input, maxpool, 16 block-internal/-boundary ReLUs... exactly these tensors
    expected = {t for t in quantized_activations(resnet18)}
    assert set(acts) == expected, f"Q/DQ tensors differ from quantized_activations: {set(acts) ^ expected}"
    assert len(expected) == 21, f"ResNet-18 has 21 quantized activations (20 conv inputs incl. 3 downsample outputs, GAP), got {len(expected)}"
    ort = qdq_model(resnet18, scales, placement="onnxruntime")
    assert max(_quantize_nodes(ort).values()) > 1, "the onnxruntime placement keeps a dedicated pair per consumer"


def test_weight_forms_structure_and_identical_weights(resnet18) -> None:
    scales = _fake_scales(resnet18)
    int8 = qdq_model(resnet18, scales, weight_form="int8", quantize_classifier=True)
    fp32 = qdq_model(resnet18, scales, weight_form="fp32", quantize_classifier=True)
    for form, qdq in (("int8", int8), ("fp32", fp32)):
        producers = _producers(qdq)
        inits = {i.name: i for i in qdq.graph.initializer}
        for node in qdq.graph.node:
            if node.op_type not in ("Conv", "Gemm"):
                continue
            dq = producers[node.input[1]]
            assert dq.op_type == "DequantizeLinear", f"{form} {node.name}: weight must pass a DequantizeLinear"
            src = dq.input[0]
            if form == "int8":
                assert src in inits and inits[src].data_type == onnx.TensorProto.INT8, f"int8 {node.name}: DQ must read INT8 weights"
            else:
                q = producers[src]
                assert q.op_type == "QuantizeLinear" and inits[q.input[0]].data_type == onnx.TensorProto.FLOAT, (
                    f"fp32 {node.name}: weights must be FP32 -> QuantizeLinear -> DequantizeLinear"
                )
                axes = {a.name: a.i for a in q.attribute}, {a.name: a.i for a in dq.attribute}
                assert axes[0] == axes[1] and "axis" in axes[0], f"fp32 {node.name}: Q and DQ need the same axis {axes}"
    a, b = dequantized_weights(int8), dequantized_weights(fp32)
    assert set(a) == set(b) and len(a) == 21, f"both forms quantize the same 21 weights: {sorted(set(a) ^ set(b))}"
    for name in a:
        assert np.array_equal(a[name], b[name]), f"{name}: the two weight forms dequantize to different values"
    assert _quantize_nodes(fp32).keys() - _quantize_nodes(int8).keys() == set(a), "fp32 form adds only the weight Q nodes"


def test_weight_form_rules() -> None:
    for version, name in (("8.5.2", "model.qdq.trt8.onnx"), ("8.6.2", "model.qdq.trt8.onnx"),
                          ("10.3.0", "model.qdq.onnx"), ("11.4.1", "model.qdq.onnx")):
        assert weight_form_for(version).file_name == name, f"TensorRT {version} must be served by {name}"
    with pytest.raises(CalibrationError, match="8.5 or newer"):
        weight_form_for("8.4.1")
    assert all(rule.source and rule.graph for rule in WEIGHT_FORM_RULES), "every weight-form rule names its source"
    with pytest.raises(CalibrationError, match="weight form"):
        qdq_model(onnx.ModelProto(), {}, weight_form="int4")


# ---- placement "dla": ModelOpt's --target_dla (TensorRT 11.x INT8 on DLA) -------------------------

def test_dla_placement_quantizes_every_tensor_modelopt_does(resnet18) -> None:
    """ModelOpt 0.47 --target_dla on ResNet-18 (benchmarks/results/modelopt_dla_placement.txt): every activation input
    of every node through Q/DQ (graph input, both Add inputs, pooling in/out, Flatten out, classifier), ReLU inputs not."""
    dla = qdq_model(resnet18, _fake_scales(resnet18), placement="dla")
    producers = _producers(dla)
    per_tensor = _quantize_nodes(dla)
    acts = {t: c for t, c in per_tensor.items() if not t.endswith("weight")}
    assert set(acts.values()) == {1}, f"one QuantizeLinear per tensor, shared by its consumers: {acts}"
    graph_input = resnet18.graph.input[0].name
    assert graph_input in acts, "the graph input is quantized (the DLA region starts at the input)"

    def reads_dq(node, k):
        p = producers.get(node.input[k])
        return p is not None and p.op_type == "DequantizeLinear"

    ops = Counter()
    for node in dla.graph.node:
        if node.op_type in ("QuantizeLinear", "DequantizeLinear"):
            continue
        ops[node.op_type] += 1
        if node.op_type == "Relu":
            assert not reads_dq(node, 0) and node.input[0] not in acts, f"{node.name}: a ReLU input stays unquantized"
        elif node.op_type == "Add":
            assert reads_dq(node, 0) and reads_dq(node, 1), f"{node.name}: both Add inputs are quantized on DLA"
        elif node.op_type in ("Conv", "Gemm"):
            assert reads_dq(node, 0) and reads_dq(node, 1), f"{node.name}: activation and weight quantized (classifier too)"
        else:  # MaxPool, GlobalAveragePool, Flatten: input quantized, so pooling outputs are quantized by their users
            assert reads_dq(node, 0), f"{node.name} ({node.op_type}): its input is quantized on DLA"
    assert ops["Add"] == 8 and ops["Gemm"] == 1, f"ResNet-18 graph: {ops}"
    outputs = {o.name for o in dla.graph.output}
    assert not outputs & set(acts), "the logits (graph output) are not quantized"
    trt = set(quantized_activations(resnet18))
    assert trt < set(acts), f"DLA quantizes a superset of the TensorRT placement's tensors: {trt - set(acts)}"


def test_dla_placement_weights_scales_and_onnxruntime(calibrated) -> None:
    """Same weights as the other forms; the cache's scales; runs on onnxruntime close to the TensorRT placement."""
    from edgeres.calibrate.cache import cache_scales

    model, scales = calibrated
    every = cache_scales(model, scales, quantized_activations(model))
    dla = qdq_model(model, every, placement="dla")
    trt = qdq_model(model, scales, quantize_classifier=True)
    a, b = dequantized_weights(dla), dequantized_weights(trt)
    assert set(a) == set(b) and a, f"the same weights are quantized: {sorted(set(a) ^ set(b))}"
    for name in a:
        assert np.array_equal(a[name], b[name]), f"{name}: DLA and TensorRT placements dequantize differently"
    inits = {i.name: numpy_helper.to_array(i) for i in dla.graph.initializer}
    for node in dla.graph.node:
        if node.op_type == "QuantizeLinear" and node.input[0] in every:
            assert float(inits[node.input[1]]) == np.float32(every[node.input[0]]), f"{node.input[0]}: cache scale"
    data = tiny_dataset(16, seed=9)
    ref, out_trt, out_dla = run_onnx(model, data), run_onnx(trt, data), run_onnx(dla, data)
    s_trt, s_dla, s_pair = sqnr_db(ref, out_trt), sqnr_db(ref, out_dla), sqnr_db(out_trt, out_dla)
    # the DLA placement adds roundings (Add inputs, pooling outputs, Flatten): a little below the TensorRT placement
    assert s_dla > 20 and s_dla > s_trt - 6, f"logits SQNR vs FP32: DLA {s_dla:.1f} dB, TensorRT placement {s_trt:.1f} dB"
    assert s_pair > 20, f"DLA vs TensorRT-placement logits SQNR {s_pair:.1f} dB"
    pool_out = next(n.output[0] for n in model.graph.node if n.op_type == "GlobalAveragePool")
    with pytest.raises(CalibrationError, match="no calibration scale for tensor"):
        qdq_model(model, {k: v for k, v in every.items() if k != pool_out}, placement="dla")  # never a guessed scale
