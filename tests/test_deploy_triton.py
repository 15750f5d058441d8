"""edgeres config triton: repositories whose limits and names are the engine's, parsed by Triton's own schema."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from edgeres.cli import cli
from edgeres.deploy import triton
from edgeres.deploy.facts import facts_from_bundle
from edgeres.errors import DeployConfigError
from tests.deploy_fixtures import Bundles, deploy_bundles  # noqa: F401  (fixture)
from tests.deploy_golden import check_golden

model_config_pb2 = pytest.importorskip(
    "tritonclient.grpc.model_config_pb2", reason="tritonclient[grpc] not installed (pip install 'edgeres[serve]')"
)
from google.protobuf import text_format  # noqa: E402


def parse(path: Path) -> "model_config_pb2.ModelConfig":
    return text_format.Parse(path.read_text(encoding="utf-8"), model_config_pb2.ModelConfig())


@pytest.mark.parametrize("name", ["ref_fp32", "ref_int8", "rgb_fp32"])
def test_configs_parse_into_model_config_and_match_the_manifest(deploy_bundles: Bundles, tmp_path: Path, name: str) -> None:
    bundle = deploy_bundles[name]
    manifest = json.loads((bundle / "manifest.json").read_text())
    result = CliRunner().invoke(cli, ["config", "triton", str(bundle), "-o", str(tmp_path / "repo"), "--instances", "2"])
    assert result.exit_code == 0, f"config triton: {result.output}"
    platforms = {"gpu": ("tensorrt_plan", model_config_pb2.ModelInstanceGroup.KIND_GPU, "model.plan"),
                 "cpu": ("onnxruntime_onnx", model_config_pb2.ModelInstanceGroup.KIND_CPU, "model.onnx")}
    for kind, (platform, instance_kind, model_file) in platforms.items():
        model_dir = tmp_path / "repo" / kind / "edgeres"
        cfg = parse(model_dir / "config.pbtxt")
        assert cfg.platform == platform and cfg.name == "edgeres", f"{kind}: platform {cfg.platform}"
        assert cfg.max_batch_size == manifest["max_batch"], f"{kind}: max_batch_size {cfg.max_batch_size} vs profile"
        assert [(i.name, list(i.dims), i.data_type) for i in cfg.input] == \
            [(manifest["input_name"], manifest["input_shape"], model_config_pb2.TYPE_FP32)], f"{kind} input {cfg.input}"
        assert [(o.name, list(o.dims)) for o in cfg.output] == \
            [(manifest["output_name"], [manifest["recipe"]["num_classes"]])], f"{kind} output {cfg.output}"
        assert cfg.instance_group[0].count == 2 and cfg.instance_group[0].kind == instance_kind, f"{kind} instances"
        assert cfg.default_model_filename == model_file, f"{kind}: model file {cfg.default_model_filename}"
        preferred = list(cfg.dynamic_batching.preferred_batch_size)
        assert all(1 <= b <= manifest["max_batch"] for b in preferred), f"{kind}: preferred {preferred} inside the profile"
        assert cfg.HasField("dynamic_batching") == (manifest["max_batch"] > 1), f"{kind}: batching only with a batch range"
        if manifest["source"]["arch"] == "reference":
            labels = (model_dir / "labels.txt").read_text().split()
            assert labels == [str(i) for i in range(10)] and cfg.output[0].label_filename == "labels.txt", "digit labels"
        else:
            assert not (model_dir / "labels.txt").exists() and not cfg.output[0].label_filename, "no names, no labels"
    cpu_model = tmp_path / "repo" / "cpu" / "edgeres" / "1" / "model.onnx"
    expected = "model.qdq.ort.onnx" if manifest["precision"] == "int8" else "model.onnx"
    assert cpu_model.read_bytes() == (bundle / expected).read_bytes(), f"CPU node runs the bundle's {expected}"
    assert not any((tmp_path / "repo" / "gpu" / "edgeres" / "1").iterdir()), "no plan: it is built on the node"
    assert "edgeres compile" in (tmp_path / "repo" / "README.md").read_text(), "the repository says how to get the plan"


def test_golden_config(deploy_bundles: Bundles) -> None:
    facts = facts_from_bundle(deploy_bundles["ref_fp32"])
    text = triton.config_text(facts, "gpu", name="edgeres", instances=1, max_queue_delay_us=100)
    check_golden("triton_ref_fp32_gpu.pbtxt", text)
    cfg = text_format.Parse(text, model_config_pb2.ModelConfig())
    assert list(cfg.dynamic_batching.preferred_batch_size) == [4, 8], "opt and max batch of the 1..8 profile"


def test_a_plan_in_the_bundle_is_copied(deploy_bundles: Bundles, tmp_path: Path) -> None:
    facts = facts_from_bundle(deploy_bundles["ref_fp32"])
    import dataclasses

    fake = tmp_path / "bundle"
    fake.mkdir()
    (fake / "model.plan").write_bytes(b"plan bytes")
    with_plan = dataclasses.replace(facts, bundle=fake, files=(*facts.files, "model.plan"))
    repo = triton.write_triton_repository(with_plan, tmp_path / "repo", kinds=("gpu",))
    assert repo.plan_included and (tmp_path / "repo/gpu/edgeres/1/model.plan").read_bytes() == b"plan bytes", "plan copied"
    assert not (tmp_path / "repo" / "cpu").exists(), "--kind gpu writes the GPU repository only"


def test_profiles_triton_cannot_serve_are_refused(deploy_bundles: Bundles) -> None:
    import dataclasses

    facts = facts_from_bundle(deploy_bundles["ref_fp32"])
    with pytest.raises(DeployConfigError, match="starts at batch 2"):
        triton.model_config(dataclasses.replace(facts, min_batch=2), "gpu", name="m")
    with pytest.raises(DeployConfigError, match="node kind"):
        triton.model_config(facts, "tpu", name="m")
    with pytest.raises(DeployConfigError, match="ModelConfig"):
        triton.validate_config_text('name: "m"\nmax_batch_size: "eight"\n')


def test_pbtxt_writer_escapes_and_nests() -> None:
    text = triton.pbtxt({"name": 'a"b', "flag": True, "dims": [1, 2], "sub": {"x": 1}, "list": [{"y": 2}, {"y": 3}]})
    assert 'name: "a\\"b"' in text and "flag: true" in text and "dims: [ 1, 2 ]" in text, f"scalars: {text}"
    assert text.count("{") == text.count("}") == 3, f"nested messages balanced: {text}"


def test_cli_refuses_a_folder_that_is_not_a_bundle(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["config", "triton", str(tmp_path), "-o", str(tmp_path / "repo")])
    assert result.exit_code == 2 and "no manifest.json" in result.stderr, f"one-line error: {result.stderr}"
    assert "Traceback" not in result.stderr and not (tmp_path / "repo").exists(), "nothing written"
