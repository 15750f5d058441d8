"""The plan sidecar: round trip, and sidecars written before a field existed still read."""

from __future__ import annotations

import json

from edgeres.sidecar import PlanSidecar, TensorSpec, read_sidecar, write_sidecar


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
