"""trtexec command lines per TensorRT version, checked against the options each release parses.

tests/data/trtexec_documented_flags.json lists the options that
samples/common/sampleOptions.cpp parses on each release/<version> branch of
github.com/NVIDIA/TensorRT (extracted from the source, not typed by hand).
The command lines are not executed: no TensorRT here.
"""

from __future__ import annotations

import dataclasses

import json
import subprocess
from pathlib import Path

import pytest

from edgeres.errors import BuildError
from edgeres.tensorrt_version import TensorRTVersion, parse_version
from edgeres.trtexec import TRTEXEC_FLAGS, TrtexecSpec, build_script, flag_supported, onnx_file_for, trtexec_argv

DOCUMENTED = json.loads((Path(__file__).parent / "data" / "trtexec_documented_flags.json").read_text())["versions"]
# versions the shipped targets use, mapped to the release branch whose options they parse
FIELD_VERSIONS = {"8.2.1": "8.2", "8.5.2": "8.5", "8.6.1": "8.6", "8.6.2": "8.6", "10.3.0": "10.3", "10.8.0": "10.7", "11.0.0": "11.0", "11.1.0": "11.1"}
SHAPE = (1, 28, 28)


def _flags(argv: list[str]) -> list[str]:
    return [a.split("=", 1)[0] for a in argv[1:]]


@pytest.mark.parametrize("branch", sorted(DOCUMENTED))
def test_flag_table_matches_each_release(branch: str) -> None:
    documented = set(DOCUMENTED[branch]["build_model_system_inference_options"])
    version = parse_version(branch)
    for flag in TRTEXEC_FLAGS:
        assert flag_supported(flag, version) == (flag in documented), (
            f"table says {flag} {'is' if flag_supported(flag, version) else 'is not'} parsed by {branch}, source disagrees"
        )


SPECS = [
    TrtexecSpec("fp32", SHAPE, max_batch=8),
    TrtexecSpec("fp16", SHAPE, max_batch=8, opt_batch=4),
    TrtexecSpec("int8", SHAPE, int8_mode="qdq", max_batch=8),
    TrtexecSpec("int8", SHAPE, int8_mode="calibrator", max_batch=8),
    TrtexecSpec("int8", SHAPE, int8_mode="calibrator", dla_core=1, min_batch=8, opt_batch=8, max_batch=8),
    TrtexecSpec("fp16", SHAPE, dla_core=0, gpu_fallback=False),
]


def _refused(spec: TrtexecSpec, v: TensorRTVersion) -> bool:
    """What edgeres.trt_rules refuses: no DLA in this version, implicit INT8 on 11 (or a cache edgeres cannot write)."""
    no_dla = spec.dla_core is not None and not ((8, 0) <= v < (10, 8) or v >= (11, 4))
    calibrator = spec.int8_mode == "calibrator" and not ((8, 5) <= v < (11, 0))
    return no_dla or calibrator


@pytest.mark.parametrize("version, branch", sorted(FIELD_VERSIONS.items()))
@pytest.mark.parametrize("spec", SPECS, ids=lambda s: f"{s.precision}-{s.int8_mode}-dla{s.dla_core}")
def test_every_generated_flag_is_documented(version: str, branch: str, spec: TrtexecSpec) -> None:
    documented = set(DOCUMENTED[branch]["build_model_system_inference_options"])
    v = parse_version(version)
    if _refused(spec, v):
        with pytest.raises(BuildError, match="^rule "):
            trtexec_argv(spec, version)
        return
    argv = trtexec_argv(spec, version)
    missing = [f for f in _flags(argv) if f not in documented]
    assert not missing, f"TensorRT {version} (release/{branch}) does not parse {missing}: {argv}"


def test_precision_flags_by_version() -> None:
    fp16 = TrtexecSpec("fp16", SHAPE, max_batch=8)
    assert "--fp16" in trtexec_argv(fp16, "10.3.0"), "10.x takes the FP32 ONNX plus --fp16"
    assert "--onnx=model.onnx" in trtexec_argv(fp16, "10.3.0"), "10.x: FP32 ONNX"
    argv11 = trtexec_argv(fp16, "11.1.0")
    assert not {"--fp16", "--int8", "--best", "--calib"} & set(_flags(argv11)), f"11.x has no precision flags: {argv11}"
    assert "--onnx=model.fp16.onnx" in argv11, f"11.x builds FP16 from the FP16 ONNX: {argv11}"
    qdq11 = trtexec_argv(TrtexecSpec("int8", SHAPE, int8_mode="qdq"), "11.0.0")
    assert "--onnx=model.qdq.fp16.onnx" in qdq11, f"11.x INT8 uses the Q/DQ model with FP16 rest: {qdq11}"
    calib = trtexec_argv(TrtexecSpec("int8", SHAPE, int8_mode="calibrator"), "8.5.2")
    assert {"--int8", "--fp16", "--calib"} <= set(_flags(calib)) and "--onnx=model.onnx" in calib, f"implicit INT8: {calib}"


def test_workspace_and_skip_flags_by_version() -> None:
    spec = TrtexecSpec("fp16", SHAPE, workspace_mib=2048)
    assert "--workspace=2048" in trtexec_argv(spec, "8.2.1"), "8.2 has no --memPoolSize"
    assert "--memPoolSize=workspace:2048" in trtexec_argv(spec, "8.5.2"), "8.4+ prefers --memPoolSize"
    assert "--memPoolSize=workspace:2048" in trtexec_argv(spec, "10.3.0"), "10.x dropped --workspace"
    assert "--buildOnly" in trtexec_argv(spec, "8.5.2") and "--skipInference" in trtexec_argv(spec, "8.6.2"), "skip flag"
    assert "--explicitBatch" not in " ".join(trtexec_argv(spec, "8.2.1")), "deprecated no-op never emitted"


def test_shapes_and_dla() -> None:
    argv = trtexec_argv(TrtexecSpec("int8", SHAPE, int8_mode="qdq", min_batch=1, opt_batch=4, max_batch=16), "10.3.0")
    assert "--minShapes=input:1x1x28x28" in argv and "--optShapes=input:4x1x28x28" in argv, f"shapes: {argv}"
    assert "--maxShapes=input:16x1x28x28" in argv, f"max shape: {argv}"
    dla = TrtexecSpec("int8", SHAPE, int8_mode="calibrator", min_batch=4, opt_batch=4, max_batch=4, dla_core=1)
    argv = trtexec_argv(dla, "10.3.0")
    assert {"--onnx=model.onnx", "--int8", "--calib=calib.cache", "--useDLACore=1", "--allowGPUFallback"} <= set(argv), (
        f"DLA INT8 is implicit calibration from model.onnx + calib.cache: {argv}")
    assert {"--minShapes=input:4x1x28x28", "--maxShapes=input:4x1x28x28"} <= set(argv), f"static DLA shapes: {argv}"
    with pytest.raises(BuildError, match="^rule dla-implicit-int8: .*drop --int8-mode qdq"):
        trtexec_argv(dataclasses.replace(dla, int8_mode="qdq"), "8.6.2")
    with pytest.raises(BuildError, match="^rule dla-static-shapes: DLA profile min/opt/max batch 1/4/4"):
        trtexec_argv(dataclasses.replace(dla, min_batch=1), "10.3.0")
    argv11 = trtexec_argv(dataclasses.replace(dla, int8_mode="qdq"), "11.4.1")
    assert {"--onnx=model.qdq.dla.fp16.onnx", "--useDLACore=1", "--allowGPUFallback"} <= set(argv11), (
        f"11.x DLA INT8 builds the DLA-placement Q/DQ model, typed FP16 (rule dla-qdq-placement-11): {argv11}")
    assert not {"--int8", "--fp16", "--calib=calib.cache"} & set(argv11), f"11.x is strongly typed: {argv11}"
    assert onnx_file_for("int8", "qdq", "11.4.1") == "model.qdq.fp16.onnx", "on the GPU 11.x keeps the TensorRT placement"
    with pytest.raises(BuildError, match="no DLA support"):
        trtexec_argv(TrtexecSpec("fp16", SHAPE, dla_core=0), "11.1.0")
    assert "--useDLACore=0" in trtexec_argv(TrtexecSpec("fp16", SHAPE, dla_core=0), "11.4.1"), "DLA back in 11.4"
    with pytest.raises(BuildError, match="FP16 or INT8"):
        trtexec_argv(TrtexecSpec("fp32", SHAPE, dla_core=0), "10.3.0")
    with pytest.raises(BuildError, match="batch range"):
        trtexec_argv(TrtexecSpec("fp16", SHAPE, opt_batch=8, max_batch=4), "10.3.0")


def test_build_script_is_valid_shell(tmp_path: Path) -> None:
    spec = TrtexecSpec("int8", SHAPE, int8_mode="qdq", max_batch=8)
    text = build_script(spec, "10.3.0", target="jetson-orin", edgeres_version="0.1.0", sha256={"model.qdq.onnx": "0" * 64})
    assert text.startswith("#!/bin/sh\n") and "sha256sum -c -" in text, "script verifies hashes first"
    path = tmp_path / "build.sh"
    path.write_text(text)
    result = subprocess.run(["sh", "-n", str(path)], capture_output=True, text=True)
    assert result.returncode == 0, f"sh -n rejects build.sh: {result.stderr}"
    assert "--onnx=model.qdq.onnx" in text and "--int8" in text, "the command is in the script"


# ---- issue 14: nothing unchecked reaches build.sh -------------------------------------------------

HOSTILE_NAMES = ["jetson-orin\ntouch /tmp/pwned", "x; touch pwned", "$(touch pwned)", "`touch pwned`", "a'b", "A B"]


@pytest.mark.parametrize("target", HOSTILE_NAMES)
def test_hostile_target_is_refused(target: str) -> None:
    with pytest.raises(BuildError, match="target name must be"):
        build_script(TrtexecSpec("fp16", SHAPE), "10.3.0", target=target, edgeres_version="0.1.0")


@pytest.mark.parametrize("field, value", [
    ("input_name", "input\ntouch pwned"), ("input_name", "in$(x)"), ("plan", "../model.plan"),
    ("plan", "model plan"), ("timing_cache", "/tmp/t.cache"), ("calib_cache", "c.cache\n"),
    ("min_batch", True), ("max_batch", 10**9), ("workspace_mib", 0), ("dla_core", "0"), ("gpu_fallback", "no"),
])
def test_hostile_spec_values_are_refused(field: str, value) -> None:
    spec = TrtexecSpec("fp16", SHAPE, **{"max_batch": 4, field: value})
    with pytest.raises(BuildError):
        build_script(spec, "10.3.0", target="jetson-orin", edgeres_version="0.1.0")


@pytest.mark.parametrize("kw", [
    {"trt_version": "10.3.0\n"}, {"trt_version": "10.3.0 && touch pwned"}, {"edgeres_version": "0.1\nid"},
    {"sha256": {"model.onnx\nEOF\ntouch pwned": "0" * 64}}, {"sha256": {"model.onnx": "0" * 63 + "\n"}},
])
def test_hostile_versions_and_hashes_are_refused(kw: dict) -> None:
    args = {"trt_version": "10.3.0", "edgeres_version": "0.1.0", "sha256": {"model.onnx": "0" * 64}, **kw}
    with pytest.raises(BuildError):
        build_script(TrtexecSpec("fp16", SHAPE), args.pop("trt_version"), target="jetson-orin", **args)


def test_build_script_for_hostile_but_valid_values_is_inert(tmp_path: Path) -> None:
    """Valid values with shell meaning (':', '/', '.', '+', '-') are quoted: sh -n passes, a stub trtexec sees them as given."""
    import hashlib
    import os
    import shutil

    if shutil.which("sha256sum") is None:
        pytest.skip("no sha256sum on this machine")
    spec = TrtexecSpec("int8", (3, 32, 32), int8_mode="calibrator", input_name="in:put/x.0-y", min_batch=1, opt_batch=2,
                       max_batch=4, plan="my-model+v2.plan", timing_cache="t-1.cache", calib_cache="calib.v2+x.cache")
    folder = tmp_path / "bundle"
    folder.mkdir()
    (folder / "model.onnx").write_bytes(b"onnx")
    sha = {"model.onnx": hashlib.sha256(b"onnx").hexdigest()}
    text = build_script(spec, "10.3.0.30", target="my-dev_2:16gb", edgeres_version="0.1.0+local-build.7", sha256=sha)
    assert all(ch == "\n" or ch.isprintable() for ch in text), "no control characters but newlines"
    script = folder / "build.sh"
    script.write_text(text)
    assert subprocess.run(["sh", "-n", str(script)], capture_output=True).returncode == 0, "sh -n accepts it"
    if shutil.which("bash"):
        assert subprocess.run(["bash", "-n", str(script)], capture_output=True).returncode == 0, "bash -n accepts it"
    stub = tmp_path / "trtexec"
    record = tmp_path / "argv.txt"
    stub.write_text(f'#!/bin/sh\nfor a in "$@"; do printf "%s\\n" "$a"; done > {record}\n')
    stub.chmod(0o755)
    before = set(os.listdir(folder))
    done = subprocess.run(["sh", str(script)], capture_output=True, text=True,
                          env={**os.environ, "TRTEXEC": str(stub)}, cwd=tmp_path)
    assert done.returncode == 0, f"build.sh failed: {done.stderr}"
    expected = trtexec_argv(spec, "10.3.0.30")[1:]
    assert record.read_text().splitlines() == expected, "trtexec receives exactly the argv, word for word"
    assert set(os.listdir(folder)) == before, "the script created nothing but what trtexec writes"
