"""`edgeres compile` and edgeres.device_build: bundle -> engine settings, checks, cache re-headering.

No TensorRT or GPU here: engines are never built by these tests. The GPU-side
checks (wrong GPU, out of memory, no TensorRT) run with the TensorRT adapter's
entry points replaced, so what they prove is edgeres' handling, not TensorRT's behaviour.
"""

from __future__ import annotations

import importlib.util
import warnings
from pathlib import Path

import pytest

import edgeres.trt
from edgeres.errors import BuildError, TensorRTUnavailableError
from edgeres.targets import load_target
from tests.build_fixtures import build_fp16_bundle, fake_tensorrt, run, write_weights


@pytest.fixture(scope="module")
def fp16_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One FP16 jetson-orin bundle (TensorRT 10.3 default) of a seeded ResNet-20."""
    root = tmp_path_factory.mktemp("dev")
    out = root / "bundle"
    build_fp16_bundle(out, write_weights(root / "resnet20.pth"))
    return out


def test_damaged_bundle_is_refused_by_compile(fp16_bundle: Path, tmp_path: Path) -> None:
    import shutil

    bundle = tmp_path / "copy"
    shutil.copytree(fp16_bundle, bundle)
    (bundle / "model.fp16.onnx").unlink()
    result = run("compile", str(bundle))
    assert result.exit_code == 2 and "model.fp16.onnx is missing" in result.stderr, result.stderr
    shutil.copyfile(fp16_bundle / "model.fp16.onnx", bundle / "model.fp16.onnx")
    with open(bundle / "model.onnx", "ab") as f:
        f.write(b"\0")
    result = run("compile", str(bundle))
    assert result.exit_code == 2 and "model.onnx fails its sha256" in result.stderr, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, f"one line: {result.stderr}"
    assert not (bundle / "model.plan").exists(), "nothing built from a damaged bundle"




def test_compile_refuses_another_gpu(fp16_bundle: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def never(_settings: object) -> None:
        raise AssertionError("build_engine must not run on a mismatched GPU")

    fake_tensorrt(monkeypatch, (8, 6), never)
    result = run("compile", str(fp16_bundle))
    # the doctor's preflight refuses first, naming both compute capabilities and the fix
    assert result.exit_code == 2 and "this GPU is sm_8.6" in result.stderr and "sm_8.7 (jetson-orin)" in result.stderr, result.stderr
    assert "--allow-mismatch" in result.stderr, f"the fix is named: {result.stderr}"
    assert len(result.stderr.strip().splitlines()) == 1, f"one line: {result.stderr}"
    assert not (fp16_bundle / "model.plan").exists(), "no plan written"



def test_compile_reports_out_of_memory(fp16_bundle: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from edgeres.trt.loaders import explain_build_failure

    seen = {}

    def oom(settings: object) -> None:
        seen["settings"] = settings
        raise BuildError(explain_build_failure(["[defaultAllocator.cpp] Error: out of memory"], settings.workspace_bytes))

    fake_tensorrt(monkeypatch, (8, 7), oom)
    result = run("compile", str(fp16_bundle), "--workspace", "256")
    assert result.exit_code == 2 and "out of GPU memory" in result.stderr and "workspace" in result.stderr, result.stderr
    settings = seen["settings"]
    assert settings.onnx_path.name == "model.onnx" and settings.precision == "fp16", "TensorRT 10.3 builds from FP32 ONNX"
    assert settings.opt_batch == 4 and settings.max_batch == 8 and settings.expected_compute_capability == (8, 7), "manifest -> settings"
    assert settings.workspace_bytes == 256 << 20 and "256 MiB" in result.stderr, "--workspace overrides the bundle's limit"
    assert not (fp16_bundle / "model.plan").exists(), "no half-written plan"



def test_missing_tensorrt_message(monkeypatch: pytest.MonkeyPatch, fp16_bundle: Path) -> None:
    from edgeres.trt.loaders import INSTALL_HINT

    def absent() -> None:
        raise TensorRTUnavailableError(f"TensorRT is not importable in this Python (No module named 'tensorrt'); {INSTALL_HINT}")

    monkeypatch.setattr(edgeres.trt, "require_tensorrt", absent, raising=False)
    result = run("compile", str(fp16_bundle))
    assert result.exit_code == 2 and "JetPack" in result.stderr and "pypi.nvidia.com" in result.stderr, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, f"one line: {result.stderr}"



def test_torch_tensorrt_frontend_absent_is_refused_cleanly() -> None:
    if importlib.util.find_spec("torch_tensorrt") is not None:
        pytest.skip("torch_tensorrt is installed here")
    from edgeres.device_build import compile_torch_tensorrt

    with pytest.raises(TensorRTUnavailableError, match="pip install torch-tensorrt"):
        compile_torch_tensorrt(None, None, None, Path("."), None)



def test_calibration_cache_is_reheadered_for_the_device_tensorrt(tmp_path: Path) -> None:
    from edgeres.device_build import cache_for_version
    from edgeres.calibrate.cache import read_calibration_cache, write_calibration_cache

    cache = write_calibration_cache(tmp_path / "calib.cache", {"input": 0.0125, "/conv1/Conv_output_0": 0.03}, "10.3.0")
    assert cache_for_version(cache, "10.3.0") == cache, "same version: the bundle's cache as is"
    other = cache_for_version(cache, "8.6.2")
    assert other != cache and other.read_text().startswith("TRT-8602-"), other.read_text()[:40]
    assert read_calibration_cache(other) == read_calibration_cache(cache), "same scales under the new header"


def test_engine_possible_here_gives_the_shared_mismatch_reason(monkeypatch: pytest.MonkeyPatch) -> None:
    from edgeres.device_build import engine_possible_here

    fake_tensorrt(monkeypatch, (8, 6), None)
    orin = load_target("jetson-orin")
    ok, why = engine_possible_here(orin)
    assert not ok and why and "target jetson-orin has compute capability 8.7" in why and "has 8.6" in why, why
    ok, why = engine_possible_here(orin, allow_mismatch=True)
    assert ok and why == "TensorRT 10.3.0", f"--allow-mismatch builds here: {why}"
    fake_tensorrt(monkeypatch, (8, 7), None)
    assert engine_possible_here(orin) == (True, "TensorRT 10.3.0"), "the target's own GPU builds here"
    monkeypatch.setattr(edgeres.trt, "local_compute_capability", lambda: None, raising=False)
    assert engine_possible_here(orin) == (False, "no GPU here"), "no GPU: a bundle"


def test_old_build_names_still_import_with_a_warning() -> None:
    import edgeres.build
    import edgeres.device_build

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        moved = edgeres.build.compile_bundle
    assert moved is edgeres.device_build.compile_bundle, "edgeres.build.compile_bundle is the device_build function"
    assert any(issubclass(w.category, DeprecationWarning) and "device_build" in str(w.message) for w in caught), \
        f"the old name warns: {[str(w.message) for w in caught]}"
    with pytest.raises(AttributeError):
        edgeres.build.no_such_name  # noqa: B018
