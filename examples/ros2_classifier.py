#!/usr/bin/env python3
"""A ROS 2 node that classifies camera images with an edgeres engine and publishes the top-k classes.

How to run (ROS 2 Humble/Jazzy, on the robot):

    source /opt/ros/$ROS_DISTRO/setup.bash
    pip install edgeres              # numpy, Pillow, onnxruntime; TensorRT comes with JetPack
    python3 examples/ros2_classifier.py --ros-args \\
        -p bundle:=/opt/models/resnet18_orin_int8 -p top_k:=5 \\
        -r image:=/camera/image_raw -r classification:=/perception/classes

Subscribes to ``image`` (sensor_msgs/Image: mono8, mono16, rgb8, bgr8, rgba8,
bgra8), preprocesses with the bundle's recipe (the same pixels as calibration
and evaluation), runs :class:`edgeres.runtime.Engine` (the bundle's
``model.plan`` on TensorRT when present, else ``model.onnx`` on onnxruntime) and
publishes ``classification`` (std_msgs/String holding JSON:
``{"stamp": [sec, nanosec], "frame_id": ..., "top_k": [{"class": i, "score": p}, ...],
"latency_ms": ...}``), so no custom message package is needed.

The sensor-data QoS (best effort, depth 1) drops stale frames instead of
queueing them. The node never imports PyTorch. Without ROS 2 installed, running
this file prints these instructions and exits with status 2; importing it
(e.g. to reuse :func:`image_to_array`) always works.
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any

import numpy as np

# encoding -> (numpy dtype, channels, channel order to RGB); declarative, see image_to_array
ENCODINGS: dict[str, tuple[str, int, tuple[int, ...] | None]] = {
    "mono8": ("uint8", 1, None),
    "mono16": ("uint16", 1, None),
    "rgb8": ("uint8", 3, None),
    "bgr8": ("uint8", 3, (2, 1, 0)),
    "rgba8": ("uint8", 4, (0, 1, 2)),
    "bgra8": ("uint8", 4, (2, 1, 0)),
}


def image_to_array(msg: Any) -> np.ndarray:
    """sensor_msgs/Image -> uint8 (H, W, 1) or (H, W, 3) RGB, honouring ``step`` row padding and endianness."""
    if msg.encoding not in ENCODINGS:
        raise ValueError(f"expected an image encoding in {sorted(ENCODINGS)}, received {msg.encoding!r}")
    dtype_name, channels, order = ENCODINGS[msg.encoding]
    dtype = np.dtype(dtype_name).newbyteorder(">" if getattr(msg, "is_bigendian", 0) else "<")
    row_bytes = msg.width * channels * dtype.itemsize
    if msg.step < row_bytes or len(msg.data) < msg.step * msg.height:
        raise ValueError(
            f"expected {msg.height} rows of >= {row_bytes} bytes, received step {msg.step} and {len(msg.data)} bytes"
        )
    rows = np.frombuffer(bytes(msg.data), dtype=np.uint8).reshape(msg.height, msg.step)[:, :row_bytes]
    image = np.ascontiguousarray(rows).view(dtype).reshape(msg.height, msg.width, channels)
    if dtype.itemsize == 2:
        image = (image.astype(np.uint32) >> 8).astype(np.uint8)
    if order is not None:
        image = image[:, :, list(order)]
    return np.ascontiguousarray(image, dtype=np.uint8)


def top_k(logits: np.ndarray, k: int) -> list[dict[str, float]]:
    """The k most probable classes of one logits row, best first."""
    z = logits.astype(np.float64).ravel()
    p = np.exp(z - z.max())
    p /= p.sum()
    best = np.argsort(-p, kind="stable")[: min(k, p.size)]
    return [{"class": int(c), "score": round(float(p[c]), 6)} for c in best]


def classify(engine: Any, image: np.ndarray, k: int) -> list[dict[str, float]]:
    """Preprocess one (H, W, C) uint8 image with the engine's recipe and return its top-k."""
    from PIL import Image

    pil = Image.fromarray(image[:, :, 0] if image.shape[2] == 1 else image)
    x = engine.recipe.preprocess(pil)[None].astype(engine.inputs[0].dtype, copy=False)
    return top_k(engine.infer(x)[0], k)


HOW_TO_RUN = __doc__.split("\n\n")[1] + "\n\n" + __doc__.split("\n\n")[2]


def main(argv: list[str] | None = None) -> int:
    try:
        import rclpy
        from rclpy.node import Node
        from rclpy.qos import qos_profile_sensor_data
        from sensor_msgs.msg import Image as ImageMsg
        from std_msgs.msg import String
    except ImportError as exc:
        print(f"ROS 2 (rclpy) is not available here ({exc}).\n\n{HOW_TO_RUN}", file=sys.stderr)
        return 2

    from edgeres.runtime import open_engine

    class Classifier(Node):
        def __init__(self) -> None:
            super().__init__("edgeres_classifier")
            bundle = self.declare_parameter("bundle", "").value
            self.k = int(self.declare_parameter("top_k", 5).value)
            if not bundle:
                raise SystemExit("set the bundle parameter: --ros-args -p bundle:=/path/to/bundle")
            self.engine = open_engine(bundle)
            if self.engine.recipe is None:
                raise SystemExit(f"{bundle} has no preprocessing recipe in manifest.json")
            self.engine.warmup(5, batch=1)
            self.pub = self.create_publisher(String, "classification", 10)
            self.sub = self.create_subscription(ImageMsg, "image", self.on_image, qos_profile_sensor_data)
            self.get_logger().info(f"{self.engine.path} on {self.engine.backend}; listening on 'image'")

        def on_image(self, msg: Any) -> None:
            start = time.perf_counter()
            try:
                best = classify(self.engine, image_to_array(msg), self.k)
            except Exception as exc:  # one bad frame must not stop the node
                self.get_logger().warning(f"frame skipped: {exc}")
                return
            out = String()
            out.data = json.dumps({
                "stamp": [msg.header.stamp.sec, msg.header.stamp.nanosec], "frame_id": msg.header.frame_id,
                "top_k": best, "latency_ms": round((time.perf_counter() - start) * 1e3, 3),
            })
            self.pub.publish(out)

        def destroy_node(self) -> None:
            self.engine.close()
            super().destroy_node()

    rclpy.init(args=argv)
    node = Classifier()
    try:
        rclpy.spin(node)
    except KeyboardInterrupt:
        pass
    finally:
        node.destroy_node()
        rclpy.try_shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
