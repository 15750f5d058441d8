"""``edgeres bench`` through click's CliRunner: bad input is one line on stderr and exit 2."""

from __future__ import annotations

import importlib.util
import json
import sys
import types
from pathlib import Path

import pytest
from click.testing import CliRunner

from tests.bench_fixtures import linear_onnx
from edgeres.cli import cli
from edgeres.errors import EngineError

FAST = ["--duration", "0.2", "--warmup", "20", "--rounds", "4", "--threads", "1"]


def _run(args: list[str]):
    return CliRunner().invoke(cli, ["bench", *args])


def _assert_one_line_error(result, needle: str) -> None:
    lines = result.stderr.strip().splitlines()
    assert result.exit_code == 2, f"exit code 2 expected, got {result.exit_code}: {result.stderr} {result.output}"
    errors = [line for line in lines if not line.startswith("- ")]  # "- ..." lines are progress before the failure
    assert len(errors) == 1 and errors[0].startswith("error: ") and lines[-1] == errors[0], f"one final 'error:' line, got {lines}"
    assert needle in errors[0], f"{needle!r} missing from {errors[0]!r}"
    assert "Traceback" not in result.output + result.stderr, "no traceback"


@pytest.fixture()
def models(tmp_path: Path) -> dict[str, Path]:
    return {
        "fp32": linear_onnx(tmp_path / "model.onnx"),
        "qdq": linear_onnx(tmp_path / "model.qdq.onnx", qdq=True),
        "static": linear_onnx(tmp_path / "static" / "fixed.onnx", batch=1) if (tmp_path / "static").mkdir() is None else None,
    }


def test_qdq_against_fp32_writes_json_and_png(models: dict[str, Path], tmp_path: Path) -> None:
    pytest.importorskip("matplotlib", reason="matplotlib (the plot extra) is not installed")
    out_json, out_png = tmp_path / "r.json", tmp_path / "r.png"
    result = _run([str(models["qdq"]), "--batch", "1,4", *FAST, "--json", str(out_json), "--plot", str(out_png)])
    assert result.exit_code == 0, f"bench failed: {result.stderr}"
    assert "speedup vs reference" in result.output and "top-1 agreement" in result.output, "comparison printed"
    assert f"reference: onnxruntime {models['fp32']}" in result.output, "the FP32 sibling is the default reference"
    from edgeres.bench.report import validate_report

    data = json.loads(out_json.read_text())
    assert validate_report(data) == [], "JSON conforms to the schema"
    assert [r["batch_size"] for r in data["results"]] == [1, 4], "batch sweep"
    assert data["results"][0]["agreement"]["samples"] == 64 and data["results"][1]["agreement"]["samples"] == 64, "agreement on 64 samples"
    assert out_png.read_bytes()[:4] == b"\x89PNG", "PNG written"


def test_unknown_model_type(tmp_path: Path) -> None:
    weird = tmp_path / "model.tflite"
    weird.write_bytes(b"x")
    _assert_one_line_error(_run([str(weird)]), "unknown model file type '.tflite'")


def test_backend_not_installed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    plan = tmp_path / "m.plan"
    plan.write_bytes(b"x")
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "tensorrt" else real(name, *a))
    _assert_one_line_error(_run([str(plan), "--no-reference"]), "needs the tensorrt package, which is not installed; pip install")


def test_engine_for_another_gpu(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The runtime's mismatch message reaches the user unchanged (fake runtime: no TensorRT here)."""

    class MismatchedEngine:
        def __init__(self, path: str, **kwargs: object) -> None:
            raise EngineError(f"{path} was built for compute capability 8.7 with TensorRT 10.3, this GPU is 8.6; rebuild the plan")

    plan = tmp_path / "m.plan"
    plan.write_bytes(b"x")
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: object() if name == "tensorrt" else real(name, *a))
    monkeypatch.setitem(sys.modules, "edgeres.runtime", types.SimpleNamespace(Engine=MismatchedEngine))
    _assert_one_line_error(_run([str(plan), "--no-reference"]), "built for compute capability 8.7")


def test_batch_outside_static_batch(models: dict[str, Path]) -> None:
    _assert_one_line_error(_run([str(models["static"]), "--batch", "1,8", *FAST]), "batch size 8 is outside the candidate's static batch [1, 1]")


@pytest.mark.parametrize(
    "args, needle",
    [
        (["--duration", "0"], "--duration must be a positive number"),
        (["--duration", "-2"], "--duration must be a positive number"),
        (["--iterations", "0"], "--iterations must be at least 1"),
        (["--iterations", "-3"], "--iterations must be at least 1"),
        (["--rounds", "0"], "--rounds must be at least 1"),
        (["--batch", "0"], "--batch sizes must be integers of at least 1"),
        (["--batch", "1,x"], "--batch takes comma-separated integers"),
        (["--buffers", "0"], "--buffers must be at least 1"),
        (["--threads", "0"], "--threads must be at least 1"),
    ],
)
def test_bad_numbers(models: dict[str, Path], args: list[str], needle: str) -> None:
    _assert_one_line_error(_run([str(models["fp32"]), *args]), needle)


@pytest.mark.parametrize("flag", ["--json", "--plot"])
def test_unwritable_output(models: dict[str, Path], tmp_path: Path, flag: str) -> None:
    _assert_one_line_error(_run([str(models["fp32"]), flag, str(tmp_path / "no" / "such" / "out")]), "does not exist")


def test_missing_reference_sibling(tmp_path: Path) -> None:
    lonely = linear_onnx(tmp_path / "lonely.qdq.onnx", qdq=True)
    _assert_one_line_error(_run([str(lonely), *FAST]), "no FP32 reference found")


def test_fp32_candidate_latency_only(models: dict[str, Path]) -> None:
    result = _run([str(models["fp32"]), *FAST])
    assert result.exit_code == 0 and "speedup" not in result.output, f"latency only: {result.stderr}"
    assert "FP32 model: measuring its latency only" in result.stderr, "the user is told why there is no comparison"


def test_no_arguments_benchmarks_reference_int8_vs_fp32(tmp_path: Path) -> None:
    out = tmp_path / "default.json"
    result = _run(["--duration", "0.2", "--rounds", "2", "--warmup", "20", "--json", str(out)])
    assert result.exit_code == 0, f"default bench failed: {result.stderr}"
    data = json.loads(out.read_text())
    cand, ref = data["candidate"], data["reference"]
    assert cand["model"].endswith("model.qdq.ort.onnx") and ref["model"].endswith("model.onnx"), f"INT8 vs FP32: {cand['model']}, {ref['model']}"
    assert cand["execution_providers"] == ref["execution_providers"] == ["CPUExecutionProvider"], "both on onnxruntime CPU"
    assert data["inputs"]["description"].endswith("reference:test"), f"real test digits as inputs: {data['inputs']}"
    agreement = data["results"][0]["agreement"]
    assert agreement["top1_agreement"] >= 0.95 and agreement["accuracy"] >= 0.95, f"INT8 agrees with FP32 on digits: {agreement}"
    assert data["results"][0]["speedup"]["rounds"] == 2, "alternated rounds"


def test_help_imports_no_heavy_library() -> None:
    import subprocess

    code = (
        "import sys\nimport edgeres.bench\nfrom edgeres.cli import cli\n"
        "try:\n    cli.main(args=['bench', '--help'], prog_name='edgeres')\nexcept SystemExit:\n    pass\n"
        "print('HEAVY', sorted(m for m in ('torch', 'onnx', 'onnxruntime', 'matplotlib', 'tensorrt') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60).stdout
    assert "--duration" in out and "HEAVY []" in out, f"import edgeres.bench and bench --help load no torch/onnx/matplotlib: {out[-200:]}"


def test_plan_batch_outside_profile(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The plan's sidecar profile is checked before TensorRT is touched (tensorrt 'installed' by a stub spec)."""
    from tests.test_bench_backends import _fake_plan

    plan = _fake_plan(tmp_path, min_batch=1, max_batch=4)
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: object() if name == "tensorrt" else real(name, *a))
    _assert_one_line_error(_run([str(plan), "--no-reference", "--batch", "1,16"]),
                           "batch size 16 is outside the candidate's profile [1, 4]")


def _fake_bundle(folder: Path, source_arch: str = "reference") -> Path:
    """A bundle folder (manifest.json via edgeres.bundle) holding the tiny FP32 and Q/DQ models of the reference recipe."""
    from edgeres.bundle import BUNDLE_FORMAT, make_bundle
    from edgeres.reference import reference_recipe

    staging = folder.parent / f"{folder.name}-src"
    staging.mkdir()
    files = {"model.onnx": linear_onnx(staging / "model.onnx"), "model.qdq.onnx": linear_onnx(staging / "model.qdq.onnx", qdq=True)}
    recipe = reference_recipe().to_dict()
    fields = dict(target="orin-nano", compute_capability=(8, 7), precision="int8", int8_mode="qdq", input_name="input",
                  output_name="logits", input_shape=(1, 28, 28), min_batch=1, opt_batch=1, max_batch=8, workspace_mib=256,
                  dla_core=None, gpu_fallback=False, tensorrt_version="10.3.0", tensorrt_versions=("10.3.0",), recipe=recipe,
                  source={"arch": source_arch, "weights": None, "weights_sha256": None}, edgeres_version="0.1.0")
    manifest = make_bundle(folder, files, fields, "#!/bin/sh\n")
    assert BUNDLE_FORMAT and manifest.files, "bundle written"
    return folder


def test_bench_bundle_uses_its_files_recipe_and_data(tmp_path: Path) -> None:
    from edgeres.reference import reference_recipe

    if tuple(reference_recipe().input_shape) != (1, 28, 28):
        pytest.skip("the reference recipe is not 1x28x28 here")
    bundle = _fake_bundle(tmp_path / "bundle")
    out_json = tmp_path / "r.json"
    result = _run([str(bundle), *FAST, "--json", str(out_json)])
    assert result.exit_code == 0, f"bench BUNDLE failed: {result.stderr}"
    assert f"candidate: onnxruntime {bundle / 'model.qdq.onnx'}" in result.output, result.output
    assert f"reference: onnxruntime {bundle / 'model.onnx'}" in result.output, result.output
    data = json.loads(out_json.read_text())
    assert "reference:test" in data["inputs"]["description"], f"the reference model's test split: {data['inputs']}"
    for side in ("candidate", "reference"):
        assert Path(data[side]["model"]).is_file(), f"printed {side} path must exist after the command"


def test_bench_bundle_missing_file_is_not_found(tmp_path: Path) -> None:
    bundle = _fake_bundle(tmp_path / "bundle")
    (bundle / "model.onnx").unlink()
    _assert_one_line_error(_run([str(bundle), *FAST]), "model.onnx not found")


def test_bench_no_candidate_prints_no_vanished_paths() -> None:
    result = _run(["--batch", "1", *FAST, "--agreement-samples", "8"])
    assert result.exit_code == 0, f"default bench failed: {result.stderr}"
    for line in result.output.splitlines():
        for word in line.split():
            if word.startswith("/") and word.endswith(".onnx"):
                assert Path(word).exists(), f"printed path {word} does not exist after the command"
