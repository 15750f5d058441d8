"""``edgeres config isaac-ros``: parameters and a launch file for Isaac ROS DNN inference.

Two composable nodes, wired ``image`` -> encoder -> ``tensors`` -> ``tensor_pub`` -> TensorRT -> ``tensor_sub``:

* ``isaac_ros_dnn_image_encoder`` (``nvidia::isaac_ros::dnn_inference::DnnImageEncoderNode``):
  ``input_image_width/height``, ``network_image_width/height``, ``input_encoding``,
  ``image_mean``, ``image_stddev`` (0..1 scale: the node converts with 1/255 and then
  normalizes with ``CVCUDA_NORMALIZE_SCALE_IS_STDDEV``, i.e. the recipe's
  ``(x/255 - mean)/std``), ``enable_padding``, ``tensor_name``, ``batch_size``.
* ``isaac_ros_tensor_rt`` (``nvidia::isaac_ros::dnn_inference::TensorRTNode``):
  ``model_file_path``, ``engine_file_path``, ``input_tensor_names``,
  ``input_binding_names``, ``output_tensor_names``, ``output_binding_names``,
  ``force_engine_update``, ``max_batch_size``, ``enable_fp16``, ``dla_core``, ``verbose``.

Parameter names, defaults, topics and plugin names are checked against
NVIDIA-ISAAC-ROS/isaac_ros_dnn_inference@06251476 (2026-07-06):
``isaac_ros_dnn_image_encoder/src/dnn_image_encoder_node.cpp`` lines 42-55 (declare_parameter),
136-161 (topics ``image``, ``camera_info``, ``tensors``), 227-233 (1/255 then mean/stddev);
``isaac_ros_tensor_rt/src/tensor_rt_node.cpp`` lines 45-48 (topics ``tensor_pub``/``tensor_sub``),
172-192 (declare_parameter; ``force_engine_update`` defaults to true, which rebuilds the
engine at every start, so edgeres writes false); ``isaac_ros_tensor_rt/launch/isaac_ros_tensor_rt.launch.py``.
Documentation page: https://nvidia-isaac-ros.github.io/repositories_and_packages/isaac_ros_dnn_inference/

The engine is the bundle's ``model.plan``, built on the robot by ``edgeres compile``
(the TensorRT node's own builder, used only when the plan is missing, sets no INT8 flag,
so an INT8 engine must come from ``edgeres compile``).

Not verified: a ROS 2 run (no ROS 2 here); the generated launch file is checked to compile
as Python and the YAML to parse with the names above.
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Any, Mapping

from edgeres.deploy.facts import DeployFacts, check_batch
from edgeres.errors import DeployConfigError

PARAMS_NAME = "edgeres_isaac_ros.yaml"
LAUNCH_NAME = "edgeres_isaac_ros.launch.py"
ENCODER_NODE = "dnn_image_encoder"
TRT_NODE = "tensor_rt"
ENCODER_PLUGIN = "nvidia::isaac_ros::dnn_inference::DnnImageEncoderNode"
TRT_PLUGIN = "nvidia::isaac_ros::dnn_inference::TensorRTNode"
ENCODER_PARAMS = ("input_image_width", "input_image_height", "network_image_width", "network_image_height",
                  "input_encoding", "image_mean", "image_stddev", "enable_padding", "tensor_name", "batch_size")
TRT_PARAMS = ("model_file_path", "engine_file_path", "input_tensor_names", "input_binding_names",
              "output_tensor_names", "output_binding_names", "force_engine_update", "max_batch_size",
              "enable_fp16", "dla_core", "verbose")
ENCODINGS = {1: "mono8", 3: "rgb8"}  # channels -> sensor_msgs image encoding
TENSOR_NAMES = ("input_tensor", "output_tensor")  # NITROS tensor names between the nodes (encoder default: output_tensor)
NO_DLA = -1  # tensor_rt_node.cpp default_dla_core


@dataclasses.dataclass(frozen=True)
class IsaacRosConfig:
    folder: Path
    params: Path
    launch: Path
    parameters: Mapping[str, Mapping[str, Any]]


def node_parameters(facts: DeployFacts, bundle_dir: str, *, batch: int, trt_version: str,
                    camera_size: tuple[int, int] | None = None) -> dict[str, dict[str, Any]]:
    """node name -> parameter -> value, from the engine's facts."""
    from edgeres.trtexec import onnx_file_for

    r = facts.recipe
    if r is None:
        raise DeployConfigError(f"bundle {facts.bundle} has no recipe; the encoder's mean/std cannot be derived")
    if r.in_channels not in ENCODINGS:
        raise DeployConfigError(f"the encoder takes 1 (mono8) or 3 (rgb8) channels, the model has {r.in_channels}")
    height, width = r.input_size
    cam_w, cam_h = camera_size or (width, height)
    onnx_name = onnx_file_for(facts.precision, facts.int8_mode, trt_version)
    if onnx_name not in facts.files:
        raise DeployConfigError(f"TensorRT {trt_version} builds from {onnx_name}, which bundle {facts.bundle} lacks")
    encoder = {
        "input_image_width": int(cam_w), "input_image_height": int(cam_h),
        "network_image_width": int(width), "network_image_height": int(height),
        "input_encoding": ENCODINGS[r.in_channels],
        "image_mean": [float(m) for m in r.mean], "image_stddev": [float(s) for s in r.std],
        "enable_padding": camera_size is not None and tuple(camera_size) != (width, height),
        "tensor_name": TENSOR_NAMES[0], "batch_size": 1,
    }
    trt = {
        "model_file_path": f"{bundle_dir}/{onnx_name}",
        "engine_file_path": f"{bundle_dir}/model.plan",
        "input_tensor_names": [TENSOR_NAMES[0]], "input_binding_names": [facts.input.name],
        "output_tensor_names": [TENSOR_NAMES[1]], "output_binding_names": [facts.output.name],
        "force_engine_update": False, "max_batch_size": int(batch),
        "enable_fp16": facts.precision != "fp32",
        "dla_core": NO_DLA if facts.dla_core is None else int(facts.dla_core), "verbose": False,
    }
    return {ENCODER_NODE: encoder, TRT_NODE: trt}


def _yaml_value(v: Any) -> str:
    # JSON scalars and flow lists are valid YAML; booleans as YAML's true/false
    return json.dumps(v)


def params_yaml(facts: DeployFacts, params: Mapping[str, Mapping[str, Any]]) -> str:
    """ROS 2 parameters file: ``node: {ros__parameters: {...}}``."""
    lines = [
        f"# edgeres config isaac-ros: {facts.precision} bundle for {facts.target}, facts from the {facts.source}",
        "# parameter names: NVIDIA-ISAAC-ROS/isaac_ros_dnn_inference (DnnImageEncoderNode, TensorRTNode)",
        f"# engine: run `edgeres compile` on the robot so that {params[TRT_NODE]['engine_file_path']} exists",
    ]
    r = facts.recipe
    if r is not None and r.resize is not None:
        lines.append(f"# note: the recipe resizes the shorter side to {r.resize} and center-crops; the encoder "
                     "resizes (and pads with enable_padding) without a crop")
    for node, values in params.items():
        lines += [f"{node}:", "  ros__parameters:"]
        lines += [f"    {k}: {_yaml_value(v)}" for k, v in values.items()]
    return "\n".join(lines) + "\n"


LAUNCH_TEMPLATE = '''"""Isaac ROS image classification with {bundle} (generated by edgeres config isaac-ros).

image -> {encoder} ({encoder_plugin}) -> tensors -> {trt} ({trt_plugin}) -> tensor_sub

    ros2 launch {launch_name} bundle_dir:=/path/to/bundle image:=/camera/image_raw
"""

import os

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import ComposableNodeContainer
from launch_ros.descriptions import ComposableNode

PARAMS = os.path.join(os.path.dirname(os.path.abspath(__file__)), {params_name!r})


def generate_launch_description():
    bundle_dir = LaunchConfiguration("bundle_dir")
    encoder = ComposableNode(
        name={encoder!r},
        package="isaac_ros_dnn_image_encoder",
        plugin={encoder_plugin!r},
        parameters=[PARAMS],
        remappings=[("image", LaunchConfiguration("image")), ("camera_info", LaunchConfiguration("camera_info")),
                    ("tensors", "tensor_pub")],
    )
    tensor_rt = ComposableNode(
        name={trt!r},
        package="isaac_ros_tensor_rt",
        plugin={trt_plugin!r},
        parameters=[PARAMS, {{
            "model_file_path": PathJoinSubstitution([bundle_dir, {onnx_name!r}]),
            "engine_file_path": PathJoinSubstitution([bundle_dir, "model.plan"]),
        }}],
    )
    container = ComposableNodeContainer(
        name="edgeres_container", namespace="", package="rclcpp_components",
        executable="component_container_mt", composable_node_descriptions=[encoder, tensor_rt], output="screen",
    )
    return LaunchDescription([
        DeclareLaunchArgument("bundle_dir", default_value={bundle_dir!r}, description="the edgeres bundle folder"),
        DeclareLaunchArgument("image", default_value="image", description="input sensor_msgs/Image topic"),
        DeclareLaunchArgument("camera_info", default_value="camera_info", description="its CameraInfo topic"),
        container,
    ])
'''


def launch_text(facts: DeployFacts, params: Mapping[str, Mapping[str, Any]], bundle_dir: str) -> str:
    onnx_name = Path(params[TRT_NODE]["model_file_path"]).name
    return LAUNCH_TEMPLATE.format(
        bundle=facts.bundle.name, encoder=ENCODER_NODE, encoder_plugin=ENCODER_PLUGIN, trt=TRT_NODE,
        trt_plugin=TRT_PLUGIN, launch_name=LAUNCH_NAME, params_name=PARAMS_NAME, onnx_name=onnx_name,
        bundle_dir=bundle_dir,
    )


def write_isaac_ros_config(facts: DeployFacts, out_dir: str | os.PathLike[str], *, bundle_dir: str | None = None,
                           batch: int | None = None, trt_version: str | None = None,
                           camera_size: tuple[int, int] | None = None, force: bool = False) -> IsaacRosConfig:
    """Write the parameters YAML and the launch file atomically.

    Args:
        bundle_dir: where the bundle lives on the robot (default: its absolute path here).
        batch: TensorRT node ``max_batch_size`` (default: the profile's maximum).
        trt_version: the robot's TensorRT (default: the bundle's); picks the fallback ONNX.
        camera_size: (width, height) of the camera images; default: already at network size.
    """
    from edgeres._io import output_dir

    batch = check_batch(facts, batch)
    where = bundle_dir or os.fspath(facts.bundle.resolve())
    params = node_parameters(facts, where, batch=batch, trt_version=trt_version or facts.tensorrt_version,
                             camera_size=camera_size)
    out = Path(out_dir)
    # replaced only when an earlier `edgeres config isaac-ros` made it (or --force); never the bundle itself
    with output_dir(out, "config isaac-ros", inputs=(facts.bundle,), force=force) as tmp:
        (tmp / PARAMS_NAME).write_text(params_yaml(facts, params), encoding="utf-8")
        (tmp / LAUNCH_NAME).write_text(launch_text(facts, params, where), encoding="utf-8")
    return IsaacRosConfig(folder=out, params=out / PARAMS_NAME, launch=out / LAUNCH_NAME, parameters=params)
