"""calibrate(): outputs, byte-identical reproducibility, budget, bad inputs, and the CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from edgeres.calibrate import calibrate, read_calibration_cache
from edgeres.cli import cli
from edgeres.errors import CalibrationError, DataError
from tests.calib_fixtures import ArrayDataset, export_tiny_resnet, tiny_dataset

OUTPUTS = ("model.qdq.onnx", "calib.cache", "calib_report.json", "model.qdq.trt8.onnx")


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
    return export_tiny_resnet(tmp_path_factory.mktemp("api") / "model.onnx")


def test_outputs_and_reproducibility(model_path, tmp_path) -> None:
    data = tiny_dataset(24)
    a = calibrate(model_path, data, tmp_path / "a", batch_size=24, progress=False, trt_version="8.5.2")
    b = calibrate(model_path, data, tmp_path / "b", batch_size=5, progress=False, trt_version="8.5.2")
    for name in OUTPUTS[:2] + OUTPUTS[3:]:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), f"{name} differs across batch sizes"
    ra, rb = (json.loads((tmp_path / d / OUTPUTS[2]).read_text()) for d in "ab")
    ra.pop("timing"), rb.pop("timing")
    assert ra == rb, "report (timings aside) differs across batch sizes"
    assert not (tmp_path / "a" / "model.onnx").exists(), "calibrate() must not write model.onnx"
    assert a.ort_qdq_path is not None and a.ort_qdq_path.is_file(), "the onnxruntime-placement model is written too"
    assert a.ort_qdq_path.read_bytes() == (tmp_path / "b" / "model.qdq.ort.onnx").read_bytes(), "ORT variant differs across batch sizes"
    assert (tmp_path / "a" / "calib.cache").read_text().startswith("TRT-8502-EntropyCalibration2\n"), "cache header"
    import onnx

    from edgeres.calibrate.cache import cache_tensors
    from edgeres.calibrate.qdq import quantized_activations

    fp32 = onnx.load(str(model_path))
    cached = read_calibration_cache(a.cache_path)
    assert list(cached) == cache_tensors(fp32), "the cache lists the graph input and every node output, in graph order"
    for name in quantized_activations(fp32):
        assert cached[name] == pytest.approx(a.scales[name]), f"{name}: cache and Q/DQ model disagree"
    assert set(a.qdq_paths) == {"int8", "fp32"} and a.qdq_paths["fp32"].name == "model.qdq.trt8.onnx", (
        f"both weight forms are written by default: {a.qdq_paths}"
    )
    assert a.report["qdq"]["weight_forms"] == {"int8": "model.qdq.onnx", "fp32": "model.qdq.trt8.onnx"}, "report names the files"
    report = a.report
    for key in ("tensors", "layers", "model", "method", "trt_version_code"):
        assert key in report, f"report lacks {key}"
    tensor = report["tensors"][0]
    assert {"name", "method", "amax", "scale", "saturated_pct"} <= set(tensor), f"tensor row lacks fields: {tensor}"
    assert all("sqnr_db" in layer and "macs" in layer for layer in report["layers"]), "layer rows need SQNR and MACs"
    assert report["model"]["top1_agreement"] > 0.8 and report["model"]["sqnr_db"] > 20, f"INT8 too far from FP32: {report['model']}"
    assert report["evaluated_on"] == "calibration data", "no eval set -> figures on calibration data"


def test_budget_leaves_sensitive_layers_out(model_path, tmp_path) -> None:
    data = tiny_dataset(32)
    coarse = calibrate(model_path, data, tmp_path / "c", method="percentile", percentile=60.0, progress=False)
    assert coarse.report["model"]["top1_agreement"] < 1.0, "the 60th percentile should hurt agreement"
    target = 100 * coarse.report["model"]["top1_agreement"] + 5
    result = calibrate(model_path, data, tmp_path / "d", method="percentile", percentile=60.0, progress=False,
                       eval_dataset=data, min_agreement=target)
    budget = result.report["budget"]
    assert result.excluded_layers, "meeting the budget needs some layers left out"
    assert budget["macs_left_at_higher_precision"] > 0, "cost of the excluded layers must be reported"
    assert budget["met"] == (100 * result.report["model"]["top1_agreement"] >= target), "met flag matches the metrics"
    assert [l["name"] for l in result.report["layers"] if l["precision"] != "int8"] == [
        l for l in [x["name"] for x in result.report["layers"]] if l in result.excluded_layers or l == "/fc/Gemm"
    ], "excluded layers (and the classifier, unquantized by default) are marked in the layer table"


def test_bad_inputs_write_nothing(model_path, tmp_path) -> None:
    out = tmp_path / "out"
    data = tiny_dataset(8)
    cases = [
        (dict(dataset=ArrayDataset(np.zeros((4, 3, 32, 32), np.float32))), DataError, "expects"),
        (dict(method="kl"), CalibrationError, "unknown calibration method"),
        (dict(trt_version="11.0"), CalibrationError, "TensorRT 11"),
        (dict(min_agreement=120.0, eval_dataset=data), CalibrationError, "min-agreement"),
        (dict(max_accuracy_drop=-1.0, eval_dataset=data), CalibrationError, "max-accuracy-drop"),
        (dict(max_accuracy_drop=0.5), CalibrationError, "needs evaluation data"),
        (dict(max_accuracy_drop=0.5, eval_dataset=tiny_dataset(8, labels=False)), DataError, "labelled"),
    ]
    for kwargs, error, match in cases:
        dataset = kwargs.pop("dataset", data)
        with pytest.raises(error, match=match):
            calibrate(model_path, dataset, out, progress=False, **kwargs)
        assert not out.exists() or not any(out.iterdir()), f"files left after {match!r}: {list(out.iterdir())}"


def test_cli_errors_and_run(model_path, tmp_path) -> None:
    runner = CliRunner()
    images = tiny_dataset(16).images
    np.savez(tmp_path / "d.npz", images=np.repeat(np.repeat(images, 3, axis=1)[:, :, :28, :28], 1, axis=0))
    result = runner.invoke(cli, ["calibrate", "--arch", "resnet20", "--calib-data", str(tmp_path / "d.npz"), "-o", str(tmp_path / "o")])
    assert result.exit_code == 2 and "error:" in result.stderr and "Traceback" not in result.output, result.output
    assert not (tmp_path / "o" / "model.qdq.onnx").exists(), "no output after a data error"
    result = runner.invoke(cli, ["calibrate", "--arch", "resnet20", "--calib-data", str(tmp_path / "d.npz"), "--trt-version", "7.0", "-o", str(tmp_path / "o")])
    assert result.exit_code == 2 and "TensorRT version" in result.stderr, result.stderr
    rgb = np.repeat(tiny_dataset(16, seed=4).images, 3, axis=1)
    rgb = np.pad(rgb, ((0, 0), (0, 0), (2, 2), (2, 2)))
    np.savez(tmp_path / "rgb.npz", images=rgb, labels=np.arange(16) % 10)
    result = runner.invoke(cli, ["calibrate", "--arch", "resnet20", "--calib-data", str(tmp_path / "rgb.npz"),
                                 "--eval-data", str(tmp_path / "rgb.npz"), "--method", "mse", "--quiet", "-o", str(tmp_path / "ok")])
    assert result.exit_code == 0, result.output
    for name in (*OUTPUTS, "model.onnx"):
        assert (tmp_path / "ok" / name).is_file(), f"CLI did not write {name}"


def test_cli_migrates_a_cache(model_path, tmp_path) -> None:
    runner = CliRunner()
    result = calibrate(model_path, tiny_dataset(8), tmp_path / "c", progress=False)
    out = tmp_path / "migrated"
    ok = runner.invoke(cli, ["calibrate", "--from-cache", str(result.cache_path), "--onnx", str(model_path), "-o", str(out)])
    assert ok.exit_code == 0, ok.output
    assert (out / "model.qdq.onnx").read_bytes() == result.qdq_path.read_bytes(), "cache -> Q/DQ must reproduce calibrate()'s model"
    bad = tmp_path / "bad.cache"
    bad.write_text("TRT-8502-EntropyCalibration2\nnot a line\n")
    fail = runner.invoke(cli, ["calibrate", "--from-cache", str(bad), "--onnx", str(model_path), "-o", str(tmp_path / "none")])
    assert fail.exit_code == 2 and "line 2" in fail.stderr, fail.stderr
    assert not (tmp_path / "none").exists(), "a malformed cache must leave no output folder"


def test_timing_false_writes_no_wall_times_and_is_byte_identical(model_path, tmp_path) -> None:
    data = tiny_dataset(16)
    timed = calibrate(model_path, data, tmp_path / "t", progress=False)
    assert list(timed.report["timing"]) == ["statistics_s", "thresholds_s", "evaluation_s", "budget_s", "serialize_s",
                                            "total_s"], f"timing keys by default: {timed.report.get('timing')}"
    runs = [calibrate(model_path, data, tmp_path / d, progress=False, timing=False) for d in "xy"]
    for result in runs:
        written = json.loads(result.report_path.read_text())
        assert "timing" not in written and "timing" not in result.report, "timing=False leaves the key out"
    for name in (*OUTPUTS, "model.qdq.ort.onnx"):
        assert (tmp_path / "x" / name).read_bytes() == (tmp_path / "y" / name).read_bytes(), f"{name} differs across runs"
    untimed = json.loads((tmp_path / "x" / OUTPUTS[2]).read_text())
    assert untimed == {k: v for k, v in json.loads((tmp_path / "t" / OUTPUTS[2]).read_text()).items() if k != "timing"}, (
        "timing=False changes nothing but the timing key"
    )
