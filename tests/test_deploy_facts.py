"""Deployment facts come from the plan sidecar where there is a plan, else from the manifest."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from edgeres.deploy.facts import check_batch, facts_from_bundle, preferred_batch_sizes
from edgeres.errors import BundleError, DeployConfigError
from edgeres.sidecar import PlanSidecar, TensorSpec, write_sidecar
from tests.deploy_fixtures import Bundles, deploy_bundles  # noqa: F401  (fixture)


def test_manifest_facts(deploy_bundles: Bundles) -> None:
    facts = facts_from_bundle(deploy_bundles["ref_fp32"])
    assert facts.source == "manifest" and not facts.has_plan, "no plan: facts from the manifest"
    assert (facts.input.name, facts.input.dims, facts.output.name, facts.output.dims) == \
        ("input", (1, 28, 28), "logits", (10,)), f"I/O from the manifest and recipe: {facts.input} {facts.output}"
    assert (facts.min_batch, facts.opt_batch, facts.max_batch) == (1, 4, 8), "batch profile"
    assert facts.class_names == tuple(str(i) for i in range(10)), "the reference model's digits"


def test_sidecar_facts_win(deploy_bundles: Bundles, tmp_path: Path) -> None:
    bundle = tmp_path / "b"
    shutil.copytree(deploy_bundles["ref_fp32"], bundle)
    (bundle / "model.plan").write_bytes(b"not a real plan")
    from edgeres._io import sha256_file

    # the plan's sidecar names its own hash and the bundle ONNX it was built from (verify_bundle checks both)
    write_sidecar(bundle / "model.plan", PlanSidecar(
        tensorrt_version="10.3.0", compute_capability=(8, 7), device_name="Orin", precision="fp16",
        inputs=(TensorSpec("input", (-1, 1, 28, 28), "float16"),), outputs=(TensorSpec("logits", (-1, 10), "float16"),),
        min_batch=1, opt_batch=2, max_batch=16, plan_sha256=sha256_file(bundle / "model.plan"),
        onnx_sha256=sha256_file(bundle / "model.onnx"), edgeres_version="0.1.0",
    ))
    facts = facts_from_bundle(bundle)
    assert facts.source == "sidecar" and facts.has_plan, "a plan's sidecar is the engine's own facts"
    assert facts.max_batch == 16 and facts.input.dtype == "float16", f"profile and dtype of the plan: {facts}"
    from edgeres.deploy.triton import config_text

    text = config_text(facts, "gpu", name="m")
    assert "max_batch_size: 16" in text and "TYPE_FP16" in text, f"the Triton config follows the plan: {text}"


def test_labels_and_refusals(deploy_bundles: Bundles, tmp_path: Path) -> None:
    labels = tmp_path / "labels.txt"
    labels.write_text("\n".join(f"class {i}" for i in range(10)) + "\n")
    facts = facts_from_bundle(deploy_bundles["rgb_fp32"], labels)
    assert facts.class_names[3] == "class 3", "names from --labels"
    labels.write_text("a\nb\n")
    with pytest.raises(DeployConfigError, match="2 class names for 10 outputs"):
        facts_from_bundle(deploy_bundles["rgb_fp32"], labels)
    with pytest.raises(DeployConfigError, match="outside the engine's profile"):
        check_batch(facts, 5)
    broken = tmp_path / "broken"
    shutil.copytree(deploy_bundles["rgb_fp32"], broken)
    (broken / "model.onnx").write_bytes(b"changed")
    with pytest.raises(BundleError, match="sha256"):
        facts_from_bundle(broken)


def test_preferred_batch_sizes() -> None:
    assert preferred_batch_sizes(4, 8) == (4, 8), "opt and max"
    assert preferred_batch_sizes(1, 8) == (8,), "batch 1 is not a preference"
    assert preferred_batch_sizes(1, 1) == (), "nothing to batch"
