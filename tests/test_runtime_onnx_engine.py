"""The full Engine API on the onnxruntime backend, with the bad inputs the issue lists."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest

from tests._runtime_helpers import NUM_CLASSES, reference_onnx, sample_batch
from edgeres import EdgeresError
from edgeres.errors import EngineError
from edgeres.runtime import (
    Engine,
    EngineClosedError,
    EngineInputError,
    PlanIntegrityError,
    model_path_in_bundle,
    open_engine,
)
from edgeres.runtime.onnx_engine import OnnxEngine


@pytest.fixture(scope="module")
def onnx_path():
    return reference_onnx()


@pytest.fixture()
def engine(onnx_path):
    with Engine(onnx_path) as e:
        yield e


def ort_reference(onnx_path, x):
    import onnxruntime as ort

    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    return session.run(None, {"input": x})[0]


def test_engine_dispatches_on_suffix_and_describes_io(engine):
    assert isinstance(engine, OnnxEngine) and isinstance(engine, Engine), f"expected OnnxEngine, got {type(engine)}"
    assert engine.backend == "onnxruntime", engine.backend
    assert engine.input_names == ("input",), engine.inputs
    assert engine.output_names == ("logits",), engine.outputs
    assert engine.inputs[0].shape == (-1, 1, 28, 28), engine.inputs[0]
    assert (engine.min_batch, engine.max_batch) == (1, None), (engine.min_batch, engine.max_batch)
    assert engine.sample_shape(batch=3) == (3, 1, 28, 28), engine.sample_shape(batch=3)


def test_infer_matches_onnxruntime_for_array_and_dict(engine, onnx_path):
    x = sample_batch(5)
    expected = ort_reference(onnx_path, x)
    out = engine.infer(x)
    assert isinstance(out, np.ndarray) and out.shape == (5, NUM_CLASSES), f"array in -> array out, got {type(out)}"
    np.testing.assert_array_equal(out, expected, err_msg="engine output differs from a plain onnxruntime session")
    out_dict = engine.infer({"input": x})
    assert set(out_dict) == {"logits"}, f"dict in -> dict out, got {out_dict.keys()}"
    np.testing.assert_array_equal(out_dict["logits"], expected, err_msg="dict path differs")


def test_batches_are_independent(engine):
    x = sample_batch(4, seed=3)
    whole = engine.infer(x)
    rows = np.concatenate([engine.infer(x[i : i + 1]) for i in range(4)])
    np.testing.assert_allclose(rows, whole, rtol=1e-5, atol=1e-5, err_msg="batch-of-4 differs from 4 single runs")


def test_outputs_are_owned_by_the_caller(engine):
    x = sample_batch(2)
    first = engine.infer(x)
    kept = first.copy()
    engine.infer(sample_batch(2, seed=9))
    np.testing.assert_array_equal(first, kept, err_msg="a later inference changed an earlier result")


def test_infer_async_returns_future_with_same_result(engine):
    x = sample_batch(3, seed=1)
    futures = [engine.infer_async(x) for _ in range(4)]
    expected = engine.infer(x)
    for f in futures:
        np.testing.assert_array_equal(f.result(timeout=60), expected, err_msg="infer_async result differs from infer")
    with pytest.raises(EngineInputError, match="stream=None"):
        engine.infer_async(x, stream=1)


def test_infer_async_checks_inputs_before_returning(engine):
    with pytest.raises(EngineInputError, match="float32"):
        engine.infer_async(sample_batch(1).astype(np.float64))


def test_warmup_runs_and_rejects_negative(engine):
    assert engine.warmup(3) is None, "warmup returns nothing"
    with pytest.raises(EngineInputError, match=">= 0"):
        engine.warmup(-1)


@pytest.mark.parametrize(
    ("make", "pattern"),
    [
        (lambda x: x.astype(np.float64), r"expected float32 of shape \(N, 1, 28, 28\).*received float64"),
        (lambda x: x[0], r"received float32 of shape \(1, 28, 28\).*missing the batch axis"),
        (lambda x: x[:, :, :20], r"expected float32 of shape \(N, 1, 28, 28\).*received float32 of shape \(2, 1, 20, 28\)"),
        (lambda x: x[:0], r"batch 0 is outside"),
        (lambda x: "not an array", r"expected a numpy array.*received str"),
        (lambda x: {"wrong": x}, r"expected inputs \['input'\], received \['wrong'\]"),
    ],
)
def test_bad_inputs_raise_one_clear_error(engine, make, pattern):
    with pytest.raises(EngineInputError, match=pattern) as info:
        engine.infer(make(sample_batch(2)))
    assert isinstance(info.value, EdgeresError), "runtime errors are EdgeresError subclasses"


def test_non_contiguous_host_input_is_copied_not_refused(engine):
    x = sample_batch(4, seed=2)
    strided = np.asfortranarray(x)
    assert not strided.flags.c_contiguous, "test needs a non-contiguous array"
    np.testing.assert_array_equal(engine.infer(strided), engine.infer(x), err_msg="strided input gives another result")
    every_other = sample_batch(8, seed=2)[::2]
    np.testing.assert_array_equal(engine.infer(every_other), engine.infer(np.ascontiguousarray(every_other)),
                                  err_msg="sliced input gives another result")


def test_max_batch_limit_from_argument(onnx_path):
    with Engine(onnx_path, max_batch=4) as e:
        e.infer(sample_batch(4))
        with pytest.raises(EngineInputError, match=r"batch 5 is outside.*1 <= N <= 4.*split the batch"):
            e.infer(sample_batch(5))


def test_batch_limits_and_recipe_from_bundle_manifest(onnx_path, tmp_path):
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    (bundle / "model.onnx").write_bytes(onnx_path.read_bytes())
    recipe = {"input_size": [28, 28], "in_channels": 1, "resize": None, "mean": [0.1307], "std": [0.3081],
              "num_classes": 10}
    (bundle / "manifest.json").write_text(json.dumps({"recipe": recipe, "max_batch": 6}))
    with open_engine(bundle) as e:
        assert e.path.name == "model.onnx", e.path
        assert e.max_batch == 6, f"manifest max_batch not applied: {e.max_batch}"
        assert e.recipe is not None and e.recipe.mean == (0.1307,), f"manifest recipe not loaded: {e.recipe}"


def test_bundle_prefers_onnx_when_tensorrt_is_absent(tmp_path, onnx_path, monkeypatch):
    import edgeres.runtime as rt

    (tmp_path / "model.onnx").write_bytes(onnx_path.read_bytes())
    (tmp_path / "model.plan").write_bytes(b"plan")
    monkeypatch.setattr(rt, "tensorrt_available", lambda: False)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        chosen = model_path_in_bundle(tmp_path)
    assert chosen.name == "model.onnx", f"expected the ONNX fallback, got {chosen}"
    assert any("TensorRT is not installed" in str(w.message) for w in caught), "fallback must be announced"
    assert model_path_in_bundle(tmp_path, prefer="plan").name == "model.plan", "prefer='plan' picks the plan"
    with pytest.raises(EngineError, match="no runnable model"):
        model_path_in_bundle(tmp_path, prefer="qdq")


def test_closed_engine_refuses_every_call(onnx_path):
    e = Engine(onnx_path)
    f = e.infer_async(sample_batch(1))
    e.close()
    assert f.done() and f.result().shape == (1, NUM_CLASSES), "close() lets pending async calls finish"
    e.close()  # idempotent
    assert e.closed, "closed flag"
    for call in (lambda: e.infer(sample_batch(1)), lambda: e.infer_async(sample_batch(1)), lambda: e.warmup(1)):
        with pytest.raises(EngineClosedError, match="closed"):
            call()
    with pytest.raises(EngineClosedError):
        with e:
            pass


@pytest.mark.parametrize(
    ("content", "error", "pattern"),
    [(b"", PlanIntegrityError, "empty"), (b"\x08\x01garbage-not-onnx" * 10, PlanIntegrityError, "cannot load")],
)
def test_corrupt_or_empty_model_file(tmp_path, content, error, pattern):
    path = tmp_path / "broken.onnx"
    path.write_bytes(content)
    with pytest.raises(error, match=pattern):
        Engine(path)


def test_missing_file_and_unknown_suffix(tmp_path):
    with pytest.raises(EngineError, match="does not exist"):
        Engine(tmp_path / "absent.onnx")
    with pytest.raises(EngineError, match=r"\.plan, \.engine or \.trt.*\.onnx.*'\.bin'"):
        Engine(tmp_path / "model.bin")


def test_fp16_model_keeps_its_dtype_contract(onnx_path, tmp_path):
    onnx = pytest.importorskip("onnx")
    from onnx import helper, TensorProto

    # A tiny FP16 graph (the FP16 bundle variant has float16 I/O): y = x * 2
    graph = helper.make_graph(
        [helper.make_node("Add", ["x", "x"], ["y"])], "fp16",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT16, ["batch", 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT16, ["batch", 3])],
    )
    path = tmp_path / "fp16.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    with Engine(path) as e:
        x = np.arange(6, dtype=np.float16).reshape(2, 3)
        out = e.infer(x)
        assert out.dtype == np.float16, f"expected float16 output, got {out.dtype}"
        np.testing.assert_array_equal(out, x * 2, err_msg="fp16 graph result")
        with pytest.raises(EngineInputError, match="expected float16.*received float32"):
            e.infer(x.astype(np.float32))


def test_reference_model_keeps_its_recorded_accuracy_through_the_engine(engine):
    from edgeres.reference import reference_info, reference_recipe
    from tests._runtime_helpers import _test_split

    images, labels = _test_split()
    x = reference_recipe().normalize_uint8_nhwc(images)
    futures = [engine.infer_async(x[i : i + 250]) for i in range(0, len(x), 250)]
    predicted = np.concatenate([f.result(timeout=120) for f in futures]).argmax(1)
    correct = int((predicted == labels).sum())
    recorded = reference_info()["accuracy"]["fp32_onnxruntime_correct"]
    assert correct == recorded, f"Engine gets {correct}/1000 right on the test split; recorded FP32 result is {recorded}"


def test_qdq_int8_model_runs_with_the_same_api(onnx_path, tmp_path):
    quantization = pytest.importorskip("onnxruntime.quantization")
    from tests._runtime_helpers import sample_batch as batch_of

    class Reader(quantization.CalibrationDataReader):
        def __init__(self):
            self.batches = iter([{"input": batch_of(8, seed=s)} for s in range(4)])

        def get_next(self):
            return next(self.batches, None)

    qdq = tmp_path / "model.qdq.onnx"
    quantization.quantize_static(str(onnx_path), str(qdq), Reader(), quant_format=quantization.QuantFormat.QDQ,
                                 per_channel=True, activation_type=quantization.QuantType.QInt8,
                                 weight_type=quantization.QuantType.QInt8)
    x = batch_of(64, seed=11)
    with Engine(onnx_path) as fp32, Engine(qdq) as int8:
        assert int8.inputs == fp32.inputs, f"Q/DQ keeps the float32 I/O contract: {int8.inputs}"
        agree = float((fp32.infer(x).argmax(1) == int8.infer(x).argmax(1)).mean())
    assert agree >= 0.95, f"Q/DQ INT8 top-1 agrees with FP32 on only {agree:.0%} of 64 real digits"


# ---- issue 14: a bundle's model is checked against its manifest; unclear messages -----------------

def _bundle_with_manifest(tmp_path, onnx_path):
    import hashlib
    import shutil

    from tests.test_bundle_manifest import GOOD

    folder = tmp_path / "bundle"
    folder.mkdir()
    shutil.copyfile(onnx_path, folder / "model.onnx")
    digest = hashlib.sha256((folder / "model.onnx").read_bytes()).hexdigest()
    manifest = {**GOOD, "input_shape": [1, 28, 28], "recipe": None, "files": {"model.onnx": {"sha256": digest}}}
    (folder / "manifest.json").write_text(json.dumps(manifest))
    return folder


def test_bundle_model_is_verified_against_the_manifest(onnx_path, tmp_path):
    folder = _bundle_with_manifest(tmp_path, onnx_path)
    with open_engine(folder / "model.onnx") as e:
        assert e.max_batch == 8, f"the manifest's batch range applies: {e.max_batch}"
    data = bytearray((folder / "model.onnx").read_bytes())
    data[-1] ^= 0x01  # one tampered byte (the model may still load)
    (folder / "model.onnx").write_bytes(bytes(data))
    with pytest.raises(PlanIntegrityError, match="fails its sha256 check against"):
        open_engine(folder / "model.onnx")
    with pytest.raises(PlanIntegrityError, match="fails its sha256 check"):
        open_engine(folder, prefer="onnx")


def test_swapped_valid_model_is_refused_and_verify_false_opts_out(onnx_path, tmp_path):
    folder = _bundle_with_manifest(tmp_path, onnx_path)
    onnx = pytest.importorskip("onnx")
    model = onnx.load(str(folder / "model.onnx"))
    model.doc_string = "another valid model"
    onnx.save(model, str(folder / "model.onnx"))
    with pytest.raises(PlanIntegrityError, match="verify=False"):
        Engine(folder / "model.onnx")
    with Engine(folder / "model.onnx", verify=False) as e:
        assert e.infer(sample_batch(1)).shape == (1, NUM_CLASSES), "verify=False opens it anyway"


def test_model_not_listed_in_a_bundle_manifest_is_refused(onnx_path, tmp_path):
    import shutil

    folder = _bundle_with_manifest(tmp_path, onnx_path)
    shutil.copyfile(onnx_path, folder / "model.qdq.onnx")
    with pytest.raises(PlanIntegrityError, match="is not listed"):
        Engine(folder / "model.qdq.onnx")


@pytest.mark.parametrize("manifest, pattern", [
    ('{"max_batch": "many"}', "max_batch"),
    ("[" * 10000, "nests"),
    ('{"recipe": {"interpolation": "sinc"}}', "interpolation"),
    ('{"recipe": [1]}', "recipe"),
])
def test_malformed_manifest_beside_a_model_is_one_error(onnx_path, tmp_path, manifest, pattern):
    import shutil

    shutil.copyfile(onnx_path, tmp_path / "model.onnx")
    (tmp_path / "manifest.json").write_text(manifest)
    with pytest.raises(EdgeresError, match=pattern):
        Engine(tmp_path / "model.onnx")


def test_sample_shape_after_close_raises(onnx_path):
    e = Engine(onnx_path)
    assert e.sample_shape(batch=2) == (2, 1, 28, 28), "open: the shape"
    e.close()
    with pytest.raises(EngineClosedError, match="closed"):
        e.sample_shape()


def test_big_endian_input_names_the_byte_order(engine):
    x = sample_batch(1).astype(">f4")
    with pytest.raises(EngineInputError, match=r"received float32 \(big-endian\)"):
        engine.infer(x)


def test_fifo_model_is_refused(tmp_path):
    import os

    if not hasattr(os, "mkfifo"):
        pytest.skip("no FIFOs")
    os.mkfifo(tmp_path / "model.onnx")
    with pytest.raises(EngineError, match="FIFO"):
        Engine(tmp_path / "model.onnx")
