"""`edgeres build`: bundles without TensorRT, reproducibility, every bad input (compile: test_device_build.py).

No TensorRT or GPU here: engines are never built by these tests. The engine
branch runs with the TensorRT adapter's entry points replaced, so what it
proves is edgeres' orchestration, not TensorRT's behaviour.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
from click.testing import Result

from edgeres.bundle import MANIFEST, verify_bundle
from tests.build_fixtures import assert_refused, build_fp16_bundle, fake_tensorrt, run, write_weights

HAS_TENSORRT = importlib.util.find_spec("tensorrt") is not None
HAS_CALIBRATE = importlib.util.find_spec("edgeres.calibrate") is not None and hasattr(
    importlib.import_module("edgeres.calibrate"), "calibrate"
)
HAS_REFERENCE = importlib.util.find_spec("edgeres.reference") is not None


@pytest.fixture(scope="module")
def weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_weights(tmp_path_factory.mktemp("w") / "resnet20.pth")


@pytest.fixture(scope="module")
def fp16_bundles(tmp_path_factory: pytest.TempPathFactory, weights: Path) -> tuple[Path, Path, Result]:
    """The same FP16 build twice (jetson-orin: TensorRT 10.3 default, 11.4.1 also listed)."""
    root = tmp_path_factory.mktemp("b")
    results = [build_fp16_bundle(root / name, weights) for name in ("one", "two")]
    return root / "one", root / "two", results[0]


@pytest.mark.skipif(HAS_TENSORRT, reason="checks the no-TensorRT path; TensorRT is installed here")
def test_bundle_without_tensorrt(fp16_bundles: tuple[Path, Path, Result]) -> None:
    one, _, result = fp16_bundles
    assert "BUNDLE, not an engine" in result.output, f"says a bundle was made: {result.output}"
    assert f"edgeres compile {one}" in result.output, f"prints the one command to finish: {result.output}"
    manifest = verify_bundle(one)
    assert {"model.onnx", "model.fp16.onnx", "build.sh"} <= set(manifest.files), f"files: {set(manifest.files)}"
    assert manifest.opt_batch == 4 and manifest.max_batch == 8 and manifest.input_shape == (1, 32, 32), "shape/batch"
    assert manifest.source["weights_sha256"] and manifest.recipe["in_channels"] == 1, "source hash and recipe recorded"
    assert "11.4.1" in manifest.tensorrt_versions and "10.3.0" in manifest.tensorrt_versions, manifest.tensorrt_versions
    for stage in ("fold", "export", "fp16 onnx", "bundle"):
        assert stage in result.output, f"stage {stage} reported with its time"
    script = (one / "build.sh").read_text()
    assert "--fp16" in script and "--onnx=model.onnx" in script and "--optShapes=input:4x1x32x32" in script, script
    verified = run("compile", str(one), "--verify-only")
    assert verified.exit_code == 0 and "verified" in verified.output, verified.output + verified.stderr
    missing = run("compile", str(one))
    assert missing.exit_code == 2 and "pip install" in missing.stderr and "JetPack" in missing.stderr, missing.stderr
    assert not (one / "model.plan").exists(), "no engine written"


def test_same_inputs_give_byte_identical_bundles(fp16_bundles: tuple[Path, Path, Result]) -> None:
    one, two, _ = fp16_bundles
    for name in ("model.onnx", "model.fp16.onnx", MANIFEST, "build.sh"):
        assert (one / name).read_bytes() == (two / name).read_bytes(), f"{name} differs between identical builds"


@pytest.fixture(scope="module")
def calib_npy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import numpy as np

    path = tmp_path_factory.mktemp("c") / "calib.npy"
    np.save(path, np.random.default_rng(0).integers(0, 256, (48, 32, 32, 1), dtype=np.uint8))
    return path


@pytest.mark.skipif(not HAS_CALIBRATE, reason="needs edgeres.calibrate.calibrate (branch calib)")
def test_int8_bundles_are_byte_identical(tmp_path: Path, weights: Path, calib_npy: Path) -> None:
    outs = [tmp_path / "a", tmp_path / "b"]
    for out in outs:
        result = run("build", "--target", "jetson-orin", "--arch", "resnet20", "--weights", str(weights),
                     "--precision", "int8", "--calib-data", str(calib_npy), "-o", str(out))
        assert result.exit_code == 0, result.output + result.stderr
    manifest = verify_bundle(outs[0])
    wanted = {"model.onnx", "model.qdq.onnx", "model.qdq.fp16.onnx", "calib.cache", "calib_report.json", "build.sh"}
    assert wanted <= set(manifest.files), f"INT8 bundle files: {set(manifest.files)}"
    assert "calibrate" in result.output and "INT8 vs FP32" in result.output, f"stage and accuracy shown: {result.output}"
    assert manifest.calibration and manifest.calibration["top1_agreement"] > 0.5, f"summary kept: {manifest.calibration}"
    for name in ("model.onnx", "model.qdq.onnx", "model.qdq.fp16.onnx", "calib.cache", "calib_report.json", MANIFEST, "build.sh"):
        assert (outs[0] / name).read_bytes() == (outs[1] / name).read_bytes(), f"{name} differs between identical builds"
    script = (outs[0] / "build.sh").read_text()
    assert "--onnx=model.qdq.onnx" in script and "--int8" in script and "--fp16" in script, script


@pytest.mark.skipif(not HAS_CALIBRATE, reason="needs edgeres.calibrate.calibrate (branch calib)")
def test_int8_bundle_for_strongly_typed_tensorrt(tmp_path: Path, weights: Path, calib_npy: Path) -> None:
    out = tmp_path / "thor"
    result = run("build", "--target", "jetson-thor", "--arch", "resnet20", "--weights", str(weights),
                 "--calib-data", str(calib_npy), "-o", str(out))
    assert result.exit_code == 0, result.output + result.stderr
    script = (out / "build.sh").read_text()
    assert "--onnx=model.qdq.fp16.onnx" in script, f"TensorRT 11 builds from the Q/DQ-FP16 model: {script}"
    assert not any(flag in script for flag in ("--int8", "--fp16", "--calib", "--best")), f"no precision flags: {script}"
    assert verify_bundle(out).tensorrt_versions == ("11.4.1",), "meant for TensorRT 11.4.1"


@pytest.mark.skipif(not (HAS_CALIBRATE and HAS_REFERENCE), reason="needs edgeres.calibrate.calibrate and edgeres.reference (branches calib, data)")
def test_default_int8_build_is_reproducible(tmp_path: Path) -> None:
    outs = [tmp_path / "a", tmp_path / "b"]
    for out in outs:
        result = run("build", "--target", "jetson-orin", "--calib-size", "64", "-o", str(out))
        assert result.exit_code == 0, result.output + result.stderr
    manifest = verify_bundle(outs[0])
    assert manifest.precision == "int8" and {"model.qdq.onnx", "calib.cache", "model.qdq.fp16.onnx"} <= set(manifest.files)
    assert "INT8 vs FP32" in result.output, f"summary shows calibration accuracy: {result.output}"
    for name in ("model.onnx", "model.qdq.onnx", "model.qdq.fp16.onnx", "calib.cache", MANIFEST):
        assert (outs[0] / name).read_bytes() == (outs[1] / name).read_bytes(), f"{name} differs between identical builds"
    # what TensorRT 11 compiles (Q/DQ with FP16 rest) keeps the accuracy of the FP32 Q/DQ model, on real digits
    import onnxruntime as ort

    from edgeres.data import load_dataset

    test = load_dataset("reference:test", None)
    images, labels = test.array(), test.labels
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    top1 = {}
    for name in ("model.onnx", "model.qdq.onnx", "model.qdq.fp16.onnx"):
        session = ort.InferenceSession(str(outs[0] / name), opts, providers=["CPUExecutionProvider"])
        top1[name] = float((session.run(None, {"input": images})[0].argmax(1) == labels).mean())
    assert top1["model.onnx"] > 0.95, f"reference FP32 accuracy: {top1}"
    assert abs(top1["model.qdq.fp16.onnx"] - top1["model.qdq.onnx"]) <= 0.005, f"FP16 rest costs no accuracy: {top1}"
    assert top1["model.onnx"] - top1["model.qdq.onnx"] <= 0.01, f"INT8 within 1 point of FP32: {top1}"


@pytest.mark.parametrize(
    "args, needles",
    [
        (["--target", "jetson-orn"], ["unknown target", "jetson-orin"]),
        (["--target", "jetson-nano", "--precision", "int8"], ["no fast INT8", "--precision fp16"]),
        (["--target", "jetson-orin-nano", "--dla-core", "0"], ["has no DLA"]),
        (["--target", "jetson-orin", "--dla-core", "2", "--precision", "fp16"], ["2 DLA core"]),
        (["--target", "jetson-nano", "--batch", "999"], ["outside target jetson-nano"]),
        (["--target", "jetson-orin", "--batch", "8", "--max-batch", "4"], ["larger than max batch"]),
        (["--target", "jetson-orin", "--trt-version", "7.1.3"], ["runs TensorRT"]),
        (["--target", "jetson-thor", "--precision", "int8", "--int8-mode", "calibrator"], ["removed implicit INT8"]),
        (["--target", "jetson-orin", "--frontend", "torch-tensorrt", "--precision", "fp16"], ["torch-tensorrt"]),
        (["--target", "jetson-orin", "--arch", "resnet20"], ["needs --calib-data"]),
    ],
)
def test_bad_build_inputs(tmp_path: Path, args: list[str], needles: list[str]) -> None:
    out = tmp_path / "out"
    assert_refused(run("build", *args, "-o", str(out)), out, *needles)


def test_existing_foreign_folder_is_never_replaced(tmp_path: Path) -> None:
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    result = run("build", "--target", "jetson-orin", "--precision", "fp16", "-o", str(out))
    assert result.exit_code == 2 and "not an edgeres build folder" in result.stderr, result.stderr
    assert (out / "notes.txt").read_text() == "keep me", "the user's folder is untouched"


def test_compile_and_build_modules_import_no_torch() -> None:
    import subprocess
    import sys

    code = "import sys, edgeres.cli.compile, edgeres.build, edgeres.device_build, edgeres.pipeline, edgeres.bundle, edgeres.trtexec, edgeres.targets; print(sorted(m for m in ('torch', 'onnx', 'tensorrt') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]", f"compile path imports heavy modules: {out}"


def test_engine_path_with_stand_in_tensorrt(tmp_path: Path, weights: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Orchestration of the engine branch (TensorRT and GPU replaced; no real engine is built)."""
    calls = []

    def fake_build(settings: object) -> str:
        # as edgeres.trt.build_engine does: the plan and its sidecar (verify_bundle checks one against the other)
        import hashlib

        from edgeres.sidecar import PlanSidecar, TensorSpec, write_sidecar

        calls.append(settings)
        Path(settings.plan_path).write_bytes(b"stand-in plan")
        write_sidecar(settings.plan_path, PlanSidecar(
            tensorrt_version="10.3.0", compute_capability=(8, 7), device_name="stand-in", precision=settings.precision,
            inputs=(TensorSpec("input", (-1, 3, 32, 32), "float32"),), outputs=(TensorSpec("logits", (-1, 10), "float32"),),
            min_batch=settings.min_batch, opt_batch=settings.opt_batch, max_batch=settings.max_batch,
            plan_sha256=hashlib.sha256(b"stand-in plan").hexdigest(),
            onnx_sha256=hashlib.sha256(Path(settings.onnx_path).read_bytes()).hexdigest(), edgeres_version="0.1.0",
        ))
        return "sidecar"

    fake_tensorrt(monkeypatch, (8, 7), fake_build)
    out = tmp_path / "engine"
    result = run("build", "--target", "jetson-orin", "--arch", "resnet20", "--weights", str(weights),
                 "--precision", "fp16", "-o", str(out))
    assert result.exit_code == 0, result.output + result.stderr
    assert f"built engine {out}/model.plan" in result.output, result.output
    assert (out / "model.plan").read_bytes() == b"stand-in plan", "plan written into the output folder"
    (settings,) = calls
    assert settings.onnx_path.name == "model.onnx" and settings.precision == "fp16", "TensorRT 10.3: FP32 ONNX + FP16 flag"
    assert verify_bundle(out).tensorrt_version == "10.3.0", "the folder is also a verified bundle for the installed TensorRT"
    other = run("build", "--target", "rtx30", "--arch", "resnet20", "--weights", str(weights), "--precision", "fp16",
                "-o", str(tmp_path / "b"))
    assert other.exit_code == 0 and "BUNDLE, not an engine" in other.output and "has 8.7" in other.output, other.output
    assert not calls[1:], "no engine for a target whose GPU is not here"


