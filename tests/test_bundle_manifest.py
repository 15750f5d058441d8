"""edgeres.bundle_manifest: every manifest field type-checked; the runtime's partial reader; the sha256 check."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from edgeres.bundle_manifest import (
    BUNDLE_FORMAT,
    BundleManifest,
    check_listed_file,
    load_manifest_file,
    manifest_from_dict,
    runtime_manifest,
)
from edgeres.errors import BundleError, EngineError

GOOD = {
    "format": BUNDLE_FORMAT, "target": "jetson-orin-nx:16gb", "compute_capability": [8, 7], "precision": "int8",
    "int8_mode": "qdq", "input_name": "input", "output_name": "logits", "input_shape": [3, 224, 224],
    "min_batch": 1, "opt_batch": 4, "max_batch": 8, "workspace_mib": 1024, "dla_core": None, "gpu_fallback": True,
    "tensorrt_version": "10.3.0", "tensorrt_versions": ["10.3.0"],
    "files": {"model.onnx": {"sha256": "ab" * 32, "bytes": 10, "role": "FP32 ONNX"}},
    "recipe": {"input_size": [224, 224]}, "source": {"arch": "resnet50"}, "edgeres_version": "0.1.0", "calibration": None,
}


def test_good_manifest_round_trips() -> None:
    m = manifest_from_dict(GOOD)
    assert isinstance(m, BundleManifest) and m.input_shape == (3, 224, 224), f"parsed: {m}"
    assert manifest_from_dict(m.to_dict()) == m, "to_dict -> from_dict is the identity"


# (field, bad value, what the message names)
BAD = [
    ("min_batch", "many", "min_batch"),
    ("min_batch", True, "min_batch"),
    ("min_batch", 0, "min_batch"),
    ("max_batch", 10**30, "max_batch"),
    ("opt_batch", 99, "min_batch <= opt_batch <= max_batch"),
    ("precision", "int3", "precision"),
    ("precision", None, "precision"),
    ("int8_mode", None, "int8_mode"),
    ("int8_mode", "magic", "int8_mode"),
    ("compute_capability", [8], "compute_capability"),
    ("compute_capability", [8, 1e300], "compute_capability"),
    ("compute_capability", {"major": 8}, "compute_capability"),
    ("compute_capability", [0, 7], "compute_capability"),
    ("input_shape", [3, 224], "input_shape"),
    ("input_shape", [3, -1, 224], "input_shape"),
    ("files", [], "files"),
    ("files", {"model.onnx": {"sha256": 5}}, "files.model.onnx.sha256"),
    ("files", {"model.onnx": {"sha256": "AB" * 32}}, "files.model.onnx.sha256"),
    ("files", {"model.onnx": None}, "files.model.onnx"),
    ("files", {"model.onnx": {"sha256": "ab" * 32, "bytes": -1}}, "bytes"),
    ("files", {"../x": {"sha256": "ab" * 32}}, "files' names"),
    ("target", "jetson-orin\ntouch /tmp/pwned", "target"),
    ("target", "Jetson-Orin", "target"),
    ("tensorrt_version", "10.3.0\n", "tensorrt_version"),
    ("tensorrt_version", " 10.3.0", "tensorrt_version"),
    ("tensorrt_versions", "10.3.0", "tensorrt_versions"),
    ("tensorrt_versions", [], "tensorrt_versions"),
    ("tensorrt_versions", ["10.3.0", 10], "tensorrt_versions"),
    ("input_name", "in put", "input_name"),
    ("input_name", "$(reboot)", "input_name"),
    ("workspace_mib", 1.5, "workspace_mib"),
    ("dla_core", -1, "dla_core"),
    ("dla_core", "0", "dla_core"),
    ("gpu_fallback", "yes", "gpu_fallback"),
    ("recipe", [1, 2], "recipe"),
    ("source", None, "source"),
    ("calibration", "x", "calibration"),
    ("edgeres_version", "0.1.0; rm -rf ~", "edgeres_version"),
    ("format", "edgeres-bundle/2", "format"),
]


@pytest.mark.parametrize("field, value, needle", BAD, ids=[f"{f}={v!r:.20}" for f, v, _ in BAD])
def test_each_field_is_type_checked(field: str, value, needle: str) -> None:
    with pytest.raises(BundleError) as info:
        manifest_from_dict({**GOOD, field: value})
    assert needle in str(info.value), f"{needle!r} not named in {info.value}"
    assert "\n" not in str(info.value), f"one line, control characters escaped: {info.value!r}"


@pytest.mark.parametrize("field", [k for k in GOOD if k not in ("dla_core", "recipe", "calibration", "int8_mode")])
def test_each_required_field_is_required(field: str) -> None:
    data = {k: v for k, v in GOOD.items() if k != field}
    with pytest.raises(BundleError, match=f"(missing field '{field}'|{field})"):
        manifest_from_dict(data)


def test_not_an_object(tmp_path: Path) -> None:
    path = tmp_path / "manifest.json"
    path.write_text("[]")
    with pytest.raises(BundleError, match="must hold a JSON object"):
        load_manifest_file(path)
    path.write_text('{"x": Infinity}')
    with pytest.raises(BundleError, match="only finite numbers"):
        load_manifest_file(path)


def test_runtime_reader_accepts_partial_manifests_typed(tmp_path: Path) -> None:
    model = tmp_path / "model.onnx"
    model.write_bytes(b"onnx")
    assert runtime_manifest(model, EngineError) is None, "no manifest: None"
    (tmp_path / "manifest.json").write_text(json.dumps({"max_batch": 6, "recipe": {"num_classes": 10}}))
    m = runtime_manifest(model, EngineError)
    assert m is not None and m.max_batch == 6 and not m.bundle, f"partial manifest read: {m}"
    check_listed_file(m, model, EngineError)  # nothing listed, nothing to check
    (tmp_path / "manifest.json").write_text(json.dumps({"max_batch": "six"}))
    with pytest.raises(EngineError, match="max_batch"):
        runtime_manifest(model, EngineError)


def test_runtime_check_of_a_listed_file(tmp_path: Path) -> None:
    import hashlib

    model = tmp_path / "model.onnx"
    model.write_bytes(b"onnx")
    other = tmp_path / "model.qdq.onnx"
    other.write_bytes(b"qdq")
    files = {"model.onnx": {"sha256": hashlib.sha256(b"onnx").hexdigest()}}
    (tmp_path / "manifest.json").write_text(json.dumps({**GOOD, "files": files}))
    m = runtime_manifest(model, EngineError)
    assert m is not None and m.bundle, "a full bundle manifest"
    check_listed_file(m, model, EngineError)
    with pytest.raises(EngineError, match="is not listed"):
        check_listed_file(m, other, EngineError)
    model.write_bytes(b"onnX")
    with pytest.raises(EngineError, match="fails its sha256 check"):
        check_listed_file(m, model, EngineError)


def test_optional_newer_fields_and_the_output_marker() -> None:
    from edgeres.bundle_manifest import OUTPUT_MARKER

    files = {**GOOD["files"], OUTPUT_MARKER: {"sha256": "cd" * 32}}
    m = manifest_from_dict({**GOOD, "files": files, "onnx_for": {"10.3.0": "model.qdq.onnx"},
                            "dla_fallback": [{"layer": "fc", "op": "Gemm"}]})
    assert m.onnx_for == {"10.3.0": "model.qdq.onnx"} and m.dla_fallback[0]["op"] == "Gemm", f"optional fields read: {m}"
    assert OUTPUT_MARKER in m.files, "the output marker may be a listed file"
    assert "onnx_for" not in manifest_from_dict(GOOD).to_dict(), "absent optional fields stay out of the JSON"
    assert manifest_from_dict(m.to_dict()) == m, "round trip with the optional fields"
    for field, value in (("onnx_for", {"10.3.0": "../x.onnx"}), ("onnx_for", {"ten": "model.onnx"}), ("dla_fallback", [1])):
        with pytest.raises(BundleError, match=field):
            manifest_from_dict({**GOOD, field: value})
