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
    assert a.dla_qdq_path is None and not (tmp_path / "a" / "model.qdq.dla.onnx").exists(), "DLA model only when asked"
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
    import onnx

    def gemm_reads_dq(path) -> bool:
        model = onnx.load(str(path))
        dq = {n.output[0] for n in model.graph.node if n.op_type == "DequantizeLinear"}
        return all(i in dq for i in next(n for n in model.graph.node if n.op_type == "Gemm").input[:2])

    assert not gemm_reads_dq(out / "model.qdq.onnx"), "the classifier stays unquantized by default"
    qc = runner.invoke(cli, ["calibrate", "--from-cache", str(result.cache_path), "--onnx", str(model_path),
                             "--quantize-classifier", "-o", str(tmp_path / "qc")])
    assert qc.exit_code == 0 and gemm_reads_dq(tmp_path / "qc" / "model.qdq.onnx"), f"--quantize-classifier quantizes the Gemm: {qc.output}"
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


def test_labels_beyond_the_model_are_refused_before_any_budget(model_path, tmp_path) -> None:
    """Evaluation labels are checked against the ONNX model's output classes (10) before accuracy or a budget."""
    data = tiny_dataset(16)
    out = tmp_path / "out"
    for labels, needle in ((np.full(16, 10), "[10, 10]"), (np.full(16, 2**64 - 1, np.uint64), "18446744073709551615"),
                           (-np.ones(16, np.int64), "[-1, -1]")):
        with pytest.raises(DataError, match="the model has 10 classes") as caught:
            calibrate(model_path, data, out, eval_dataset=ArrayDataset(data.images, labels), max_accuracy_drop=1.0,
                      progress=False)
        assert needle in str(caught.value), f"the message gives the labels' range: {caught.value}"
        assert not out.exists(), "nothing is written"
    with pytest.raises(DataError, match="the model has 10 classes"):
        calibrate(model_path, ArrayDataset(data.images, np.full(16, 12)), out, progress=False)  # labels of the calibration data


def test_cli_refuses_npz_labels_beyond_the_model(tmp_path) -> None:
    from edgeres.reference import reference_data_path

    with np.load(reference_data_path()) as ref:
        images = ref["test_images"][:8]
    np.savez(tmp_path / "e.npz", images=images, labels=np.full(8, 2**64 - 1, np.uint64))
    result = CliRunner().invoke(cli, ["calibrate", "--eval-data", str(tmp_path / "e.npz"), "--max-accuracy-drop", "1",
                                      "--quiet", "-o", str(tmp_path / "o")])
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert result.exit_code == 2 and len(errors) == 1 and "18446744073709551615" in errors[0], result.stderr
    assert "Traceback" not in result.output and not (tmp_path / "o").exists(), "one line, no output"


def _full_disk_at(monkeypatch, name: str) -> None:
    """Writing ``name`` fails half-way with ENOSPC, as on a full disk."""
    import errno
    import os
    from pathlib import Path

    real = Path.write_bytes

    def write_bytes(self: Path, data: bytes) -> int:
        if self.name == name:
            real(self, data[: len(data) // 2])
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(self))
        return real(self, data)

    monkeypatch.setattr(Path, "write_bytes", write_bytes)


def test_full_disk_leaves_no_output(model_path, tmp_path, monkeypatch) -> None:
    """ENOSPC while writing model.qdq.onnx: one OutputPathError, and no file of the new set anywhere."""
    from edgeres.errors import OutputPathError

    data = tiny_dataset(8)
    earlier = calibrate(model_path, data, tmp_path / "earlier", progress=False, method="max")
    before = {p.name: p.read_bytes() for p in (tmp_path / "earlier").iterdir()}
    _full_disk_at(monkeypatch, "model.qdq.onnx")
    for out in (tmp_path / "new", tmp_path / "earlier"):
        with pytest.raises(OutputPathError, match="No space left on device"):
            calibrate(model_path, data, out, progress=False)
    assert not (tmp_path / "new").exists(), "a new output folder does not appear"
    assert {p.name: p.read_bytes() for p in (tmp_path / "earlier").iterdir()} == before, (
        f"the earlier outputs are untouched ({earlier.qdq_path.name} included) and nothing is left inside"
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["earlier"], f"nothing left beside: {list(tmp_path.iterdir())}"


def test_cli_full_disk_and_foreign_folder(tmp_path, monkeypatch) -> None:
    """calibrate -o: a full disk leaves nothing; a folder it did not make is refused; model.onnx is never overwritten."""
    rgb = np.pad(np.repeat(tiny_dataset(16, seed=4).images, 3, axis=1), ((0, 0), (0, 0), (2, 2), (2, 2)))
    np.savez(tmp_path / "rgb.npz", images=rgb, labels=np.arange(16) % 10)
    args = ["calibrate", "--arch", "resnet20", "--calib-data", str(tmp_path / "rgb.npz"), "--calib-size", "8", "--quiet"]
    user = tmp_path / "user"
    user.mkdir()
    (user / "model.onnx").write_text("the user's own model")
    refused = CliRunner().invoke(cli, [*args, "-o", str(user)])
    assert refused.exit_code == 2 and "--force" in refused.stderr and str(user) in refused.stderr, refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1, f"the refusal is one line, before any progress: {refused.stderr}"
    assert (user / "model.onnx").read_text() == "the user's own model", "the user's file is untouched"
    inside = CliRunner().invoke(cli, ["calibrate", "--arch", "resnet20", "--calib-data", str(user / "model.onnx"),
                                      "--force", "-o", str(user)])
    assert inside.exit_code == 2 and "not even with --force" in inside.stderr, inside.stderr
    _full_disk_at(monkeypatch, "model.qdq.onnx")
    full = CliRunner().invoke(cli, [*args, "-o", str(tmp_path / "out")])
    errors = [line for line in full.stderr.splitlines() if line.startswith("error:")]
    assert full.exit_code == 2 and len(errors) == 1 and "No space left on device" in errors[0], full.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["rgb.npz", "user"], f"nothing written: {list(tmp_path.iterdir())}"


def test_dla_option_writes_the_dla_placement_with_the_cache_scales(model_path, tmp_path) -> None:
    import onnx
    from onnx import numpy_helper

    from edgeres.calibrate.qdq import dla_quantized_activations

    result = calibrate(model_path, tiny_dataset(8), tmp_path / "d", progress=False, timing=False, dla=True)
    assert result.dla_qdq_path == tmp_path / "d" / "model.qdq.dla.onnx" and result.dla_qdq_path.is_file(), result.dla_qdq_path
    dla = onnx.load(str(result.dla_qdq_path))
    inits = {i.name: numpy_helper.to_array(i) for i in dla.graph.initializer}
    q = {n.input[0]: float(inits[n.input[1]]) for n in dla.graph.node if n.op_type == "QuantizeLinear"}
    cached = read_calibration_cache(result.cache_path)
    assert set(q) == set(dla_quantized_activations(onnx.load(str(model_path)))), "every tensor of the DLA rule"
    assert all(q[t] == pytest.approx(cached[t], rel=1e-6) for t in q), "one scale per tensor: the cache's"
