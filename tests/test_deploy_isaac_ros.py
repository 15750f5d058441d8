"""edgeres config isaac-ros: parameter names of DnnImageEncoderNode and TensorRTNode, values from the bundle."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from edgeres.cli import cli
from edgeres.deploy import isaac_ros
from edgeres.deploy.facts import facts_from_bundle
from tests.deploy_fixtures import Bundles, deploy_bundles  # noqa: F401  (fixture)
from tests.deploy_golden import check_golden

yaml = pytest.importorskip("yaml", reason="PyYAML parses the generated ROS 2 parameters file")


@pytest.mark.parametrize("name", ["ref_int8", "rgb_fp32"])
def test_parameters_from_the_bundle(deploy_bundles: Bundles, tmp_path: Path, name: str) -> None:
    bundle = deploy_bundles[name]
    manifest = json.loads((bundle / "manifest.json").read_text())
    out = tmp_path / "ros"
    result = CliRunner().invoke(cli, ["config", "isaac-ros", str(bundle), "-o", str(out), "--bundle-dir", "/opt/b"])
    assert result.exit_code == 0, f"config isaac-ros: {result.output}"
    params = yaml.safe_load((out / isaac_ros.PARAMS_NAME).read_text())
    enc = params["dnn_image_encoder"]["ros__parameters"]
    trt = params["tensor_rt"]["ros__parameters"]
    assert set(enc) == set(isaac_ros.ENCODER_PARAMS) and set(trt) == set(isaac_ros.TRT_PARAMS), "exactly the checked names"
    c, h, w = manifest["input_shape"]
    assert (enc["network_image_height"], enc["network_image_width"]) == (h, w), f"network size {enc}"
    assert enc["image_mean"] == manifest["recipe"]["mean"] and enc["image_stddev"] == manifest["recipe"]["std"], "mean/std"
    assert enc["input_encoding"] == ("mono8" if c == 1 else "rgb8"), f"encoding for {c} channels"
    assert trt["input_binding_names"] == [manifest["input_name"]] and trt["output_binding_names"] == [manifest["output_name"]], \
        "binding names from the engine"
    assert trt["input_tensor_names"] == [enc["tensor_name"]], "TensorRT node reads the encoder's tensor"
    assert trt["force_engine_update"] is False, "never rebuild the engine at start"
    assert trt["engine_file_path"] == "/opt/b/model.plan" and trt["max_batch_size"] == manifest["max_batch"], f"{trt}"
    assert trt["enable_fp16"] == (manifest["precision"] != "fp32"), "FP16 flag from the precision"
    launch = (out / isaac_ros.LAUNCH_NAME).read_text()
    ast.parse(launch)
    assert isaac_ros.ENCODER_PLUGIN in launch and isaac_ros.TRT_PLUGIN in launch and '"tensor_pub"' in launch, \
        "launch file loads both plugins and wires tensors -> tensor_pub"


def test_golden_parameters(deploy_bundles: Bundles, tmp_path: Path) -> None:
    result = isaac_ros.write_isaac_ros_config(facts_from_bundle(deploy_bundles["ref_fp32"]), tmp_path / "ros",
                                              bundle_dir="/opt/bundle")
    check_golden("isaac_ros_ref_fp32.yaml", result.params.read_text())


def test_camera_size_turns_on_padding(deploy_bundles: Bundles) -> None:
    facts = facts_from_bundle(deploy_bundles["rgb_fp32"])
    params = isaac_ros.node_parameters(facts, "/b", batch=1, trt_version="10.3.0", camera_size=(640, 480))
    enc = params["dnn_image_encoder"]
    assert (enc["input_image_width"], enc["input_image_height"], enc["enable_padding"]) == (640, 480, True), f"{enc}"
