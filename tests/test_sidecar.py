"""The plan sidecar: round trip, older sidecars still read, and a typed bounded reader (every malformed sidecar is one EngineError)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from edgeres.errors import EngineError
from edgeres.sidecar import PlanSidecar, TensorSpec, read_sidecar, sidecar_path, write_sidecar


def _sidecar() -> PlanSidecar:
    return PlanSidecar(
        tensorrt_version="10.3.0.30", compute_capability=(8, 7), device_name="Orin", precision="int8",
        inputs=(TensorSpec("input", (-1, 3, 224, 224), "float32"),), outputs=(TensorSpec("logits", (-1, 1000), "float32"),),
        min_batch=1, opt_batch=4, max_batch=8, plan_sha256="ab" * 32, onnx_sha256="cd" * 32, edgeres_version="0.1.0",
        target="jetson-orin", recipe={"num_classes": 1000}, extra={"int8_mode": "qdq"},
    )


def test_round_trip(tmp_path: Path) -> None:
    plan = tmp_path / "model.plan"
    write_sidecar(plan, _sidecar())
    assert read_sidecar(plan) == _sidecar(), "write -> read is the identity"
    assert read_sidecar(tmp_path / "other.plan") is None, "no sidecar: None"


BAD = [
    ("min_batch", "many"), ("min_batch", None), ("compute_capability", [8, float("1e300")]),
    ("compute_capability", "8.7"), ("inputs", {}), ("inputs", []), ("inputs", [5]),
    ("inputs", [{"name": "input", "shape": [-2, 3], "dtype": "float32"}]),
    ("inputs", [{"name": "input", "shape": [1], "dtype": "<f4 x"}]),
    ("plan_sha256", 5), ("plan_sha256", "x" * 64), ("tensorrt_version", "10.3.0\n"), ("precision", "int3"),
    ("target", "a\nb"), ("recipe", [1]), ("extra", "x"), ("dla_core", True), ("device_name", "x" * 5000),
]


@pytest.mark.parametrize("field, value", BAD, ids=[f"{f}={v!r:.15}" for f, v in BAD])
def test_malformed_fields_are_one_engine_error(tmp_path: Path, field: str, value) -> None:
    plan = tmp_path / "model.plan"
    data = {**_sidecar().to_dict(), field: value}
    sidecar_path(plan).write_text(json.dumps(data))
    with pytest.raises(EngineError) as info:
        read_sidecar(plan)
    assert field in str(info.value) and "\n" not in str(info.value), f"one line naming {field}: {info.value!r}"


@pytest.mark.parametrize("content, needle", [
    (b"\xff\xfe{}", "not UTF-8"), (b"[" * 100000, "nests"), (b"{", "not readable JSON"), (b"[]", "JSON object"),
])
def test_unreadable_sidecars(tmp_path: Path, content: bytes, needle: str) -> None:
    plan = tmp_path / "model.plan"
    sidecar_path(plan).write_bytes(content)
    with pytest.raises(EngineError, match=needle):
        read_sidecar(plan)


def sidecar(**kw) -> PlanSidecar:
    base = dict(tensorrt_version="8.6.2.3", compute_capability=(8, 7), device_name="Jetson AGX Orin", precision="fp16",
                inputs=(TensorSpec("input", (-1, 3, 224, 224), "float32"),),
                outputs=(TensorSpec("logits", (-1, 1000), "float32"),), min_batch=1, opt_batch=4, max_batch=8,
                plan_sha256="0" * 64, onnx_sha256="1" * 64, edgeres_version="0.1.0")
    return PlanSidecar(**{**base, **kw})


def test_round_trip_keeps_the_context_fields(tmp_path):
    written = sidecar(optimization_profiles=3, profile_sharing=False)
    write_sidecar(tmp_path / "model.plan", written)
    assert read_sidecar(tmp_path / "model.plan") == written, "the sidecar must read back as written"


def test_sidecar_from_before_the_context_fields_reads_with_unknown_sharing(tmp_path):
    data = sidecar().to_dict()
    for key in ("optimization_profiles", "profile_sharing"):
        del data[key]
    (tmp_path / "model.plan.json").write_text(json.dumps(data))
    old = read_sidecar(tmp_path / "model.plan")
    assert old is not None and old.optimization_profiles == 1, f"an older sidecar means one profile: {old}"
    assert old.profile_sharing is None, "an older sidecar does not say whether contexts share profiles"
