"""Deploy bundles: manifest, sha256 verification naming the file, build.sh run with a stand-in trtexec."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from edgeres.bundle import MANIFEST, load_manifest, make_bundle, manifest_json, verify_bundle
from edgeres.errors import BundleError
from edgeres.trtexec import TrtexecSpec, build_script

FIELDS = dict(
    target="jetson-orin", compute_capability=(8, 7), precision="int8", int8_mode="qdq", input_name="input",
    output_name="logits", input_shape=(1, 28, 28), min_batch=1, opt_batch=1, max_batch=8, workspace_mib=1024,
    dla_core=None, gpu_fallback=True, tensorrt_version="10.3.0", tensorrt_versions=("10.3.0",),
    recipe={"input_size": [28, 28]}, source={"arch": "resnet20", "weights_sha256": "ab" * 32}, edgeres_version="0.1.0",
)


def _bundle(tmp_path: Path) -> Path:
    src = tmp_path / "src"
    src.mkdir()
    (src / "model.onnx").write_bytes(b"fp32 onnx bytes")
    (src / "model.qdq.onnx").write_bytes(b"qdq onnx bytes")
    (src / "calib.cache").write_bytes(b"TRT-8601-EntropyCalibration2\ninput: 3c010a14\n")
    spec = TrtexecSpec("int8", (1, 28, 28), int8_mode="qdq", max_batch=8, workspace_mib=1024)
    from edgeres._io import sha256_file

    sha = {p.name: sha256_file(p) for p in src.iterdir()}
    script = build_script(spec, "10.3.0", target="jetson-orin", edgeres_version="0.1.0", sha256=sha)
    out = tmp_path / "bundle"
    make_bundle(out, {p.name: p for p in src.iterdir()}, FIELDS, script)
    return out


def test_manifest_lists_every_file_with_its_hash(tmp_path: Path) -> None:
    out = _bundle(tmp_path)
    manifest = verify_bundle(out)
    on_disk = {p.name for p in out.iterdir()} - {MANIFEST}
    assert set(manifest.files) == on_disk, f"every file hashed: {set(manifest.files)} vs {on_disk}"
    assert manifest.target == "jetson-orin" and manifest.max_batch == 8, "fields round-trip"
    data = json.loads((out / MANIFEST).read_text())
    assert data["format"] == "edgeres-bundle/1" and data["source"]["weights_sha256"] == "ab" * 32, "manifest content"
    assert (out / MANIFEST).read_text() == manifest_json(load_manifest(out)), "canonical JSON round-trips byte-for-byte"
    assert os.access(out / "build.sh", os.X_OK), "build.sh is executable"
    assert not list(tmp_path.glob(".bundle.*")), "no temporary folder left"


@pytest.mark.parametrize("damage", ["missing", "changed"])
def test_damaged_bundle_is_refused_naming_the_file(tmp_path: Path, damage: str) -> None:
    out = _bundle(tmp_path)
    if damage == "missing":
        (out / "calib.cache").unlink()
        match = "calib.cache is missing"
    else:
        (out / "model.qdq.onnx").write_bytes(b"qdq onnx bytez")
        match = "model.qdq.onnx fails its sha256"
    with pytest.raises(BundleError, match=match):
        verify_bundle(out)


def test_manifest_errors(tmp_path: Path) -> None:
    with pytest.raises(BundleError, match="not a folder"):
        load_manifest(tmp_path / "nope")
    with pytest.raises(BundleError, match="no manifest.json"):
        load_manifest(tmp_path)
    (tmp_path / MANIFEST).write_text('{"format": "edgeres-bundle/1", "target": "x"}')
    with pytest.raises(BundleError, match="missing field"):
        load_manifest(tmp_path)


def test_build_sh_verifies_then_runs_trtexec(tmp_path: Path) -> None:
    out = _bundle(tmp_path)
    fake = tmp_path / "trtexec"
    fake.write_text('#!/bin/sh\nprintf "%s\\n" "$@" > args.txt\necho plan > model.plan\n')
    fake.chmod(0o755)
    env = {**os.environ, "TRTEXEC": str(fake)}
    done = subprocess.run(["sh", str(out / "build.sh")], capture_output=True, text=True, env=env)
    assert done.returncode == 0, f"build.sh failed: {done.stderr}"
    args = (out / "args.txt").read_text().split()
    assert "--onnx=model.qdq.onnx" in args and "--int8" in args, f"trtexec received the command: {args}"
    (out / "args.txt").unlink()
    (out / "model.onnx").write_bytes(b"tampered")
    bad = subprocess.run(["sh", str(out / "build.sh")], capture_output=True, text=True, env=env)
    assert bad.returncode != 0 and "model.onnx" in bad.stdout + bad.stderr, "build.sh stops on a changed file"
    assert not (out / "args.txt").exists(), "trtexec not run after a failed check"


def test_onnx_for_round_trips_and_older_manifests_still_read(tmp_path: Path) -> None:
    out = _bundle(tmp_path)
    data = json.loads((out / MANIFEST).read_text())
    assert "onnx_for" not in data and "dla_fallback" not in data, "empty new fields are left out of the manifest"
    assert load_manifest(out).onnx_for is None, "a manifest without onnx_for reads (older bundles)"
    data["onnx_for"] = {"8.6.2": "model.qdq.trt8.onnx", "10.3.0": "model.qdq.onnx"}
    data["dla_fallback"] = [{"layer": "/fc/Gemm", "op": "Gemm", "reason": "r", "source": "s", "certainty": "unconfirmed"}]
    (out / MANIFEST).write_text(json.dumps(data))
    manifest = load_manifest(out)
    assert manifest.onnx_for == data["onnx_for"] and manifest.dla_fallback[0]["op"] == "Gemm", "new fields read back"
    assert json.loads(manifest_json(manifest))["onnx_for"] == data["onnx_for"], "and are written again"
    data["onnx_for"] = ["model.onnx"]
    (out / MANIFEST).write_text(json.dumps(data))
    with pytest.raises(BundleError, match="'onnx_for' must be an object of TensorRT version -> ONNX file name"):
        load_manifest(out)


# ---- issue 14: what verification refuses --------------------------------------------------------

def _sha(path: Path) -> str:
    from edgeres._io import sha256_file

    return sha256_file(path)


def test_symlink_inside_a_bundle_is_refused_even_when_its_hash_matches(tmp_path: Path) -> None:
    out = _bundle(tmp_path)
    outside = tmp_path / "outside.onnx"
    outside.write_bytes((out / "model.onnx").read_bytes())
    (out / "model.onnx").unlink()
    (out / "model.onnx").symlink_to(outside)
    assert _sha(out / "model.onnx") == load_manifest(out).files["model.onnx"]["sha256"], "the link's target matches"
    with pytest.raises(BundleError, match="model.onnx is a symbolic link"):
        verify_bundle(out)


def test_hard_link_is_refused(tmp_path: Path) -> None:
    out = _bundle(tmp_path)
    os.link(out / "model.onnx", tmp_path / "elsewhere.onnx")
    with pytest.raises(BundleError, match="model.onnx has 2 hard links"):
        verify_bundle(out)


@pytest.mark.parametrize("name", ["timing.cache", "model.plan", "extra.onnx", ".hidden", "calib.trt-10.3.0.cache"])
def test_unlisted_files_are_refused(tmp_path: Path, name: str) -> None:
    out = _bundle(tmp_path)
    (out / name).write_bytes(b"not from edgeres compile")
    with pytest.raises(BundleError, match=name.replace(".", r"\.")):
        verify_bundle(out)


@pytest.mark.parametrize("make, needle", [
    (lambda out: (out / "sub").mkdir(), "sub is a folder"),
    (lambda out: os.mkfifo(out / "pipe"), "pipe is a FIFO"),
    (lambda out: (out / "bad\nname").write_text("x"), "not a plain file name"),
])
def test_odd_entries_are_refused(tmp_path: Path, make, needle: str) -> None:
    out = _bundle(tmp_path)
    make(out)
    with pytest.raises(BundleError, match=needle):
        verify_bundle(out)


@pytest.mark.parametrize("name", ["../escape.onnx", "/etc/passwd", "sub/model.onnx", "..", ".", "a\nb", "manifest.json"])
def test_manifest_naming_a_path_is_refused(tmp_path: Path, name: str) -> None:
    out = _bundle(tmp_path)
    data = json.loads((out / MANIFEST).read_text())
    data["files"][name] = {"sha256": "0" * 64, "bytes": 1, "role": ""}
    (out / MANIFEST).write_text(json.dumps(data))
    with pytest.raises(BundleError, match="field 'files' names"):
        verify_bundle(out)


def test_output_marker_is_accepted(tmp_path: Path) -> None:
    from edgeres.bundle import OUTPUT_MARKER

    out = _bundle(tmp_path)
    data = json.loads((out / MANIFEST).read_text())
    assert OUTPUT_MARKER in data["files"], "edgeres build lists (and hashes) its output marker"
    assert verify_bundle(out).target == "jetson-orin", "the listed marker verifies"
    del data["files"][OUTPUT_MARKER]  # as a bundle written before markers were listed
    (out / MANIFEST).write_text(json.dumps(data))
    assert verify_bundle(out).target == "jetson-orin", "an unlisted output-ownership marker is not an unlisted file"


def _compiled(out: Path, *, plan: bytes = b"engine bytes", sidecar_sha: str | None = None,
              onnx_sha: str | None = None) -> None:
    """What edgeres compile leaves: model.plan + sidecar, timing cache + stamp, a re-headered cache."""
    from edgeres.sidecar import PlanSidecar, TensorSpec, write_sidecar

    (out / "model.plan").write_bytes(plan)
    write_sidecar(out / "model.plan", PlanSidecar(
        tensorrt_version="10.3.0.30", compute_capability=(8, 7), device_name="Orin", precision="int8",
        inputs=(TensorSpec("input", (-1, 1, 28, 28), "float32"),), outputs=(TensorSpec("logits", (-1, 10), "float32"),),
        min_batch=1, opt_batch=1, max_batch=8, plan_sha256=sidecar_sha or _sha(out / "model.plan"),
        onnx_sha256=onnx_sha or _sha(out / "model.qdq.onnx"), edgeres_version="0.1.0",
    ))
    (out / "timing.cache").write_bytes(b"\x00binary timing cache")
    (out / "timing.cache.json").write_text(json.dumps({"format": "edgeres-timing-cache/1", "tensorrt_version": "10.3.0.30"}))
    (out / "calib.trt-10.3.0.30.cache").write_text("TRT-100300-EntropyCalibration2\ninput: 3c010a14\n")


def test_files_compile_writes_are_accepted_against_their_own_record(tmp_path: Path) -> None:
    out = _bundle(tmp_path)
    (out / "calib.cache").chmod(0o644)
    _compiled(out)
    # the bundle's calib.cache says 8601: the re-headered copy carries the same scales under 10.3.0
    assert verify_bundle(out).precision == "int8", "plan, sidecar, timing cache, stamp and re-headered cache pass"


@pytest.mark.parametrize("damage, needle", [
    (lambda out: (out / "model.plan").write_bytes(b"swapped engine"), "model.plan fails its sha256 check against"),
    (lambda out: (out / "model.plan.json").unlink(), "model.plan has no model.plan.json"),
    (lambda out: (out / "model.plan.json").write_text('{"format": "edgeres-plan/1", "min_batch": "many"}'), "model.plan.json"),
    (lambda out: (out / "timing.cache.json").unlink(), "timing.cache has no timing.cache.json"),
    (lambda out: (out / "timing.cache.json").write_text('{"format": "edgeres-timing-cache/1", "tensorrt_version": 5}'),
     "tensorrt_version"),
    (lambda out: (out / "calib.trt-10.3.0.30.cache").write_text("TRT-100300-EntropyCalibration2\ninput: 3c010a15\n"),
     "is not calib.cache re-headered"),
    (lambda out: (out / "calib.trt-10.3.0.30.cache").write_text("TRT-100200-EntropyCalibration2\ninput: 3c010a14\n"),
     "is not calib.cache re-headered"),
])
def test_files_compile_writes_are_refused_when_they_fail_their_record(tmp_path: Path, damage, needle: str) -> None:
    out = _bundle(tmp_path)
    _compiled(out)
    damage(out)
    with pytest.raises(BundleError, match=needle):
        verify_bundle(out)


def test_plan_built_from_another_onnx_is_refused(tmp_path: Path) -> None:
    out = _bundle(tmp_path)
    _compiled(out, onnx_sha="1" * 64)
    with pytest.raises(BundleError, match="built from an ONNX this bundle does not hold"):
        verify_bundle(out)
