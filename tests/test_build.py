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
    block11 = script.split("11.4|11.4.*)", 1)[1].split(";;", 1)[0]
    assert "--onnx=model.qdq.fp16.onnx" in block11, f"TensorRT 11 builds from the Q/DQ-FP16 model: {block11}"
    assert not any(flag in block11 for flag in ("--int8", "--fp16", "--calib", "--best")), f"no precision flags: {block11}"
    manifest = verify_bundle(out)
    # JetPack 7.0/7.1/7.2.0 ship TensorRT 10.x on Thor (targets/jetson-thor.toml), 7.2.2 ships 11.4.1
    assert manifest.tensorrt_versions == ("10.13.3", "10.16.2", "11.4.1"), manifest.tensorrt_versions
    assert manifest.onnx_for == {"10.13.3": "model.qdq.onnx", "10.16.2": "model.qdq.onnx",
                                 "11.4.1": "model.qdq.fp16.onnx"}, manifest.onnx_for


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
    assert result.exit_code == 2 and "not an earlier `edgeres build` output" in result.stderr, result.stderr
    assert "--force" in result.stderr and str(out) in result.stderr, f"names the folder and --force: {result.stderr}"
    assert (out / "notes.txt").read_text() == "keep me", "the user's folder is untouched"


def test_build_never_replaces_a_folder_holding_an_input(tmp_path: Path, weights: Path) -> None:
    """-o holding the --weights (or the targets folder) is refused even with --force; a manifest.json proves nothing."""
    import shutil

    from edgeres._io import OUTPUT_MARKER, marker_text

    out = tmp_path / "out"
    out.mkdir()
    shutil.copy(weights, out / "w.pth")
    (out / "manifest.json").write_text('{"format": "edgeres-bundle/1"}')
    args = ["build", "--target", "jetson-orin", "--arch", "resnet20", "--weights", str(out / "w.pth"), "--precision", "fp16"]
    for extra in ([], ["--force"]):
        (out / OUTPUT_MARKER).write_text(marker_text("build"))  # even an earlier build's folder
        result = run(*args, *extra, "-o", str(out))
        assert result.exit_code == 2 and "holds an input" in result.stderr and "not even with --force" in result.stderr, (
            result.stderr
        )
        assert (out / "w.pth").read_bytes() == weights.read_bytes(), "the user's checkpoint is still there"
    (out / OUTPUT_MARKER).unlink()
    (out / "w.pth").unlink()
    result = run("build", "--target", "jetson-orin", "--precision", "fp16", "-o", str(out))
    assert result.exit_code == 2 and "--force" in result.stderr, f"a manifest.json alone is no proof: {result.stderr}"
    assert (out / "manifest.json").is_file(), "the folder is untouched"


def test_full_disk_during_build_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import errno
    import os

    real = Path.write_text

    def write_text(self: Path, text: str, *args: object, **kwargs: object) -> int:
        if self.name == MANIFEST:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(self))
        return real(self, text, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(Path, "write_text", write_text)
    out = tmp_path / "out"
    result = run("build", "--target", "jetson-orin", "--precision", "fp16", "-o", str(out))
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert result.exit_code == 2 and len(errors) == 1 and "No space left on device" in errors[0], result.stderr
    assert list(tmp_path.iterdir()) == [], f"no output and no temporary folder: {list(tmp_path.iterdir())}"


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




# ---- issue 10: the file per TensorRT version, build.sh picking it, DLA, old Jetsons --------------------

@pytest.fixture(scope="module")
def int8_bundle(tmp_path_factory: pytest.TempPathFactory, weights: Path, calib_npy: Path) -> Path:
    """An INT8 (Q/DQ) jetson-orin bundle: TensorRT 8.5.2, 8.6.2, 10.3.0 and 11.4.1 listed."""
    out = tmp_path_factory.mktemp("i8") / "bundle"
    result = run("build", "--target", "jetson-orin", "--arch", "resnet20", "--weights", str(weights),
                 "--precision", "int8", "--calib-data", str(calib_npy), "-o", str(out))
    assert result.exit_code == 0, result.output + result.stderr
    return out


def _stub_path(tmp_path: Path, banner: str | None, dpkg: str | None = None) -> dict[str, str]:
    """PATH with a stand-in ``trtexec`` that prints ``banner`` for --help (else records its argv), and ``dpkg-query``.

    The banner line is the one trtexec prints first ("&&&& RUNNING TensorRT.trtexec [TensorRT v8502] # ...",
    NVIDIA-AI-IOT/cuDLA-samples#19 log of TensorRT 8.5.2).
    """
    import os

    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    say = f'echo "&&&& RUNNING TensorRT.trtexec [TensorRT v{banner}] # trtexec $*"' if banner else 'echo "usage"'
    (bin_dir / "trtexec").write_text(
        "#!/bin/sh\n"
        f'if [ "${{1:-}}" = "--help" ]; then {say}; exit 0; fi\n'
        'printf "%s\\n" "$@" > "$ARGS_OUT"\n')
    (bin_dir / "dpkg-query").write_text(f"#!/bin/sh\necho '{dpkg}'\n" if dpkg else "#!/bin/sh\nexit 1\n")
    for p in bin_dir.iterdir():
        p.chmod(0o755)
    env = {k: v for k, v in os.environ.items() if k not in ("TRTEXEC", "TRT_VERSION")}
    return {**env, "PATH": f"{bin_dir}:{os.environ['PATH']}", "ARGS_OUT": str(tmp_path / "args.txt")}


@pytest.mark.parametrize("banner, dpkg, version", [
    ("8502", None, "8.5.2"), ("8602", None, "8.6.2"), ("100300", None, "10.3.0"), ("110401", None, "11.4.1"),
    (None, "10.3.0.30-1+cuda12.6", "10.3.0"),  # no banner: dpkg's libnvinfer-bin version
])
def test_build_sh_picks_the_file_of_the_installed_tensorrt(int8_bundle: Path, tmp_path: Path, banner: str | None,
                                                           dpkg: str | None, version: str) -> None:
    import subprocess

    manifest = verify_bundle(int8_bundle)
    assert manifest.onnx_for == {"8.5.2": "model.qdq.trt8.onnx", "8.6.2": "model.qdq.trt8.onnx",
                                 "10.3.0": "model.qdq.onnx", "11.4.1": "model.qdq.fp16.onnx"}, manifest.onnx_for
    env = _stub_path(tmp_path, banner, dpkg)
    done = subprocess.run(["sh", str(int8_bundle / "build.sh")], capture_output=True, text=True, env=env)
    assert done.returncode == 0, f"build.sh for {version}: {done.stdout}{done.stderr}"
    args = (tmp_path / "args.txt").read_text().split()
    assert f"--onnx={manifest.onnx_for[version]}" in args, f"TensorRT {version} builds {manifest.onnx_for[version]}: {args}"
    strongly = version.startswith("11.")
    assert ("--int8" in args) != strongly and ("--fp16" in args) != strongly, f"precision flags per version: {args}"
    assert ("--skipInference" in args) == (version != "8.5.2"), f"8.5 has --buildOnly, 8.6+ --skipInference: {args}"


def test_build_sh_refuses_a_version_it_is_not_for(int8_bundle: Path, tmp_path: Path) -> None:
    import subprocess

    env = _stub_path(tmp_path, "9300")  # NV_TENSORRT_VERSION of 9.3.0
    done = subprocess.run(["sh", str(int8_bundle / "build.sh")], capture_output=True, text=True, env=env)
    assert done.returncode == 1 and not (tmp_path / "args.txt").exists(), f"nothing run: {done.stdout}{done.stderr}"
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "found 9.3.0" in lines[0] and "8.5.2, 8.6.2, 10.3.0, 11.4.1" in lines[0], done.stderr
    forced = subprocess.run(["sh", str(int8_bundle / "build.sh")], capture_output=True, text=True,
                            env={**env, "TRT_VERSION": "8.6"})
    assert forced.returncode == 0 and "--onnx=model.qdq.trt8.onnx" in (tmp_path / "args.txt").read_text(), forced.stderr


@pytest.mark.skipif(not HAS_CALIBRATE, reason="needs edgeres.calibrate.calibrate")
def test_dla_bundle_is_implicit_int8_with_static_shapes_and_a_fallback_report(tmp_path: Path, weights: Path,
                                                                              calib_npy: Path) -> None:
    out = tmp_path / "dla"
    result = run("build", "--target", "jetson-orin", "--arch", "resnet20", "--weights", str(weights),
                 "--calib-data", str(calib_npy), "--dla-core", "1", "--batch", "2", "-o", str(out))
    assert result.exit_code == 0, result.output + result.stderr
    manifest = verify_bundle(out)
    assert manifest.int8_mode == "calibrator" and "rule dla-implicit-int8" in result.stderr, result.stderr
    assert (manifest.min_batch, manifest.opt_batch, manifest.max_batch) == (2, 2, 2), "min = opt = max on DLA"
    assert manifest.onnx_for == {"8.5.2": "model.onnx", "8.6.2": "model.onnx", "10.3.0": "model.onnx",
                                 "11.4.1": "model.qdq.dla.fp16.onnx"}, manifest.onnx_for
    assert "rule dla-qdq-placement-11" in result.stderr and "left out" not in result.stderr, result.stderr
    assert {"model.qdq.dla.onnx", "model.qdq.dla.fp16.onnx"} <= set(manifest.files), sorted(manifest.files)
    assert "model.qdq.fp16.onnx" not in manifest.files, "a DLA bundle carries no GPU-placement typed Q/DQ for 11.x"
    script = (out / "build.sh").read_text()
    for flag in ("--onnx=model.onnx", "--int8", "--calib=calib.cache", "--useDLACore=1", "--allowGPUFallback",
                 "--minShapes=input:2x1x32x32", "--maxShapes=input:2x1x32x32", "--onnx=model.qdq.dla.fp16.onnx"):
        assert flag in script, f"{flag} in build.sh"
    import subprocess

    for banner, version in (("100300", "10.3.0"), ("110401", "11.4.1")):  # build.sh with a stand-in trtexec
        env = _stub_path(tmp_path, banner)
        done = subprocess.run(["sh", str(out / "build.sh")], capture_output=True, text=True, env=env)
        assert done.returncode == 0, f"build.sh for {version}: {done.stdout}{done.stderr}"
        args = (tmp_path / "args.txt").read_text().split()
        assert f"--onnx={manifest.onnx_for[version]}" in args and "--useDLACore=1" in args, f"{version}: {args}"
        implicit = version != "11.4.1"  # rule dla-implicit-int8 before 11; 11 is strongly typed (no --int8/--calib)
        assert ("--calib=calib.cache" in args) == implicit and ("--int8" in args) == implicit, f"{version}: {args}"
    _assert_dla_qdq_files(out)
    ops = {f["op"] for f in manifest.dla_fallback}
    assert {"GlobalAveragePool", "Gemm"} <= ops and not ops & {"Conv", "Relu", "Add"}, f"fallback ops: {ops}"
    gap = next(f for f in manifest.dla_fallback if f["op"] == "GlobalAveragePool")
    assert f"DLA -> GPU fallback: {gap['layer']} (GlobalAveragePool)" in result.stderr, "printed in the build output"


def _assert_dla_qdq_files(out: Path) -> None:
    """model.qdq.dla.onnx has ModelOpt's DLA placement with calib.cache's scales; its FP16 copy is typed FP16."""
    import onnx

    from edgeres.calibrate.cache import parse_calibration_cache
    from edgeres.calibrate.qdq import dla_quantized_activations

    fp32, dla = onnx.load(str(out / "model.onnx")), onnx.load(str(out / "model.qdq.dla.onnx"))
    inits = {i.name: onnx.numpy_helper.to_array(i) for i in dla.graph.initializer}
    q = {n.input[0]: float(inits[n.input[1]]) for n in dla.graph.node if n.op_type == "QuantizeLinear"}
    _, _, cache = parse_calibration_cache((out / "calib.cache").read_text())
    assert set(q) == set(dla_quantized_activations(fp32)), f"every tensor but ReLU inputs: {sorted(q)[:6]}"
    assert all(abs(q[t] - cache[t]) <= 1e-7 * cache[t] for t in q), "the DLA model states calib.cache's scales"
    typed = onnx.load(str(out / "model.qdq.dla.fp16.onnx"))
    fp16 = {i.name for i in typed.graph.initializer if i.data_type == onnx.TensorProto.FLOAT16}
    assert fp16 and sum(n.op_type == "QuantizeLinear" for n in typed.graph.node) == len(q), "typed FP16, same pairs"


@pytest.mark.skipif(not HAS_CALIBRATE, reason="needs edgeres.calibrate.calibrate")
def test_dla_build_for_tensorrt_11_is_the_dla_qdq_model(tmp_path: Path, weights: Path, calib_npy: Path) -> None:
    out = tmp_path / "dla11"
    result = run("build", "--target", "jetson-orin", "--arch", "resnet20", "--weights", str(weights),
                 "--calib-data", str(calib_npy), "--dla-core", "0", "--trt-version", "11.4.1", "-o", str(out))
    assert result.exit_code == 0, result.output + result.stderr
    manifest = verify_bundle(out)
    assert manifest.int8_mode == "qdq" and manifest.tensorrt_version == "11.4.1", (manifest.int8_mode, manifest.tensorrt_version)
    assert manifest.onnx_for["11.4.1"] == "model.qdq.dla.fp16.onnx" and manifest.onnx_for["10.3.0"] == "model.onnx", (
        manifest.onnx_for)
    _assert_dla_qdq_files(out)


@pytest.mark.parametrize("args, needles", [
    (["--dla-core", "0", "--max-batch", "8"], ["rule dla-static-shapes", "1/1/8", "--batch N"]),
    (["--dla-core", "0", "--int8-mode", "qdq"], ["rule dla-implicit-int8", "drop --int8-mode qdq"]),
    (["--dla-core", "0", "--precision", "fp32"], ["rule dla-precision", "fp16 or int8"]),
])
def test_refused_dla_builds_name_the_rule(tmp_path: Path, args: list[str], needles: list[str]) -> None:
    out = tmp_path / "out"
    assert_refused(run("build", "--target", "jetson-orin", *args, "-o", str(out)), out, *needles)


@pytest.mark.parametrize("target", ["jetson-nano", "jetson-tx2"])
def test_old_jetson_bundle_is_opset_13_and_finishes_with_build_sh(tmp_path: Path, weights: Path, target: str) -> None:
    import onnx

    out = tmp_path / target
    result = run("build", "--target", target, "--arch", "resnet20", "--weights", str(weights), "-o", str(out))
    assert result.exit_code == 0, result.output + result.stderr
    model = onnx.load(str(out / "model.onnx"))
    opset = max(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))
    assert opset == 13, f"TensorRT 8.2's parser documents opset <= 13, bundle has {opset}"
    assert verify_bundle(out).onnx_for == {"8.2.1": "model.onnx"}, "FP16 from the FP32 ONNX with --fp16"
    assert f"sh {out}/build.sh" in result.output and "edgeres compile" not in result.output, result.output
    script = (out / "build.sh").read_text()
    assert "8.2|8.2.*)" in script and "--workspace=" in script and "--fp16" in script, script
