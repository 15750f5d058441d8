"""The runtime examples run (infer_folder) or explain themselves (ros2_classifier without ROS 2)."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import pytest

from tests._runtime_helpers import digits, reference_onnx

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"

def reference_recipe_dict() -> dict:
    from edgeres.reference import reference_info

    return reference_info()["recipe"]

HAS_ROS = importlib.util.find_spec("rclpy") is not None


def load_example(name: str) -> types.ModuleType:
    spec = importlib.util.spec_from_file_location(name, EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run_example(*args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, env=env, timeout=120)


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    folder = tmp_path_factory.mktemp("bundle")
    onnx = reference_onnx()
    (folder / "model.onnx").write_bytes(onnx.read_bytes())
    (folder / "manifest.json").write_text(json.dumps({"recipe": reference_recipe_dict(), "min_batch": 1, "max_batch": 4}))
    return folder


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    from PIL import Image

    folder = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(0)
    for i in range(6):  # 6 images at odd sizes and modes: two batches of at most 4
        size = (20 + 5 * i, 30 + 3 * i)
        mode = "RGB" if i % 2 else "L"
        shape = (size[1], size[0], 3) if mode == "RGB" else (size[1], size[0])
        Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8), mode).save(folder / f"img{i}.png")
    images, labels = digits(20, seed=3)  # real test-split digits, label in the name
    for i, (image, label) in enumerate(zip(images, labels)):
        Image.fromarray(image[:, :, 0], "L").save(folder / f"digit{i:02d}_label{label}.png")
    (folder / "broken.png").write_bytes(b"not a png")
    (folder / "notes.txt").write_text("ignored")
    return folder


def test_infer_folder_classifies_every_image_like_the_engine_does(bundle, images):
    from PIL import Image

    from edgeres.recipe import Recipe
    from edgeres.runtime import Engine

    result = run_example(str(EXAMPLES / "infer_folder.py"), str(bundle), str(images), "--top-k", "3")
    assert result.returncode == 0, f"exit {result.returncode}: {result.stderr[-2000:]}"
    lines = [line.split("\t") for line in result.stdout.strip().splitlines()]
    names = [name for name, _ in lines]
    assert names == sorted(p.name for p in images.glob("*.png") if p.name != "broken.png"), result.stdout
    assert "skipped broken.png" in result.stderr, f"a corrupt image must be reported: {result.stderr}"
    recipe = Recipe.from_dict(reference_recipe_dict())
    with Engine(bundle / "model.onnx") as engine:
        for name, ranked in lines:
            entries = [(int(c), float(p)) for c, p in (e.split(":") for e in ranked.split())]
            assert len(entries) == 3, f"{name}: expected 3 classes, got {ranked}"
            with Image.open(images / name) as img:
                expected = int(np.argmax(engine.infer(recipe.preprocess(img)[None])))
            assert entries[0][0] == expected, f"{name}: example says class {entries[0][0]}, engine says {expected}"
            assert entries[0][1] >= entries[1][1] >= entries[2][1], f"{name}: scores not sorted: {entries}"
    right = sum(int(name.split("label")[1][0]) == int(ranked.split(":")[0]) for name, ranked in lines if "label" in name)
    assert right >= 19, f"the example classified only {right}/20 real digits correctly (model top-1 is 98.9%)"


def test_infer_folder_bad_input_is_one_error_line(bundle, tmp_path):
    result = run_example(str(EXAMPLES / "infer_folder.py"), str(bundle), str(tmp_path))
    assert result.returncode == 2, f"expected exit 2, got {result.returncode}"
    assert result.stderr.startswith("error: ") and "has no images" in result.stderr, result.stderr
    assert "Traceback" not in result.stderr, result.stderr


@pytest.mark.skipif(HAS_ROS, reason="ROS 2 is installed here; the no-ROS explanation cannot be checked")
def test_ros2_node_without_ros_explains_how_to_run():
    result = run_example(str(EXAMPLES / "ros2_classifier.py"))
    assert result.returncode == 2, f"expected exit 2 without rclpy, got {result.returncode}: {result.stderr[-500:]}"
    for needle in ("rclpy", "source /opt/ros/", "-p bundle:=", "-r image:="):
        assert needle in result.stderr, f"instructions miss {needle!r}: {result.stderr}"
    assert "Traceback" not in result.stderr, result.stderr


def test_ros2_module_imports_without_ros_or_torch():
    example = str(EXAMPLES / "ros2_classifier.py")
    code = (f"import importlib.util, sys\nspec = importlib.util.spec_from_file_location('n', {example!r})\n"
            "m = importlib.util.module_from_spec(spec); spec.loader.exec_module(m)\n"
            "print(sorted(k for k in sys.modules if k.split('.')[0] in ('torch', 'onnx', 'rclpy', 'click')))")
    result = run_example("-c", code)
    assert result.returncode == 0 and result.stdout.strip() == "[]", f"{result.stdout} {result.stderr[-800:]}"


def image_msg(array: np.ndarray, encoding: str, pad: int = 0, bigendian: bool = False) -> types.SimpleNamespace:
    h, w = array.shape[:2]
    data = array.astype(array.dtype.newbyteorder(">" if bigendian else "<")).reshape(h, -1).view(np.uint8)
    rows = np.concatenate([data, np.zeros((h, pad), np.uint8)], axis=1)
    return types.SimpleNamespace(height=h, width=w, encoding=encoding, is_bigendian=int(bigendian),
                                 step=rows.shape[1], data=rows.tobytes())


def test_ros2_image_conversion_handles_encodings_and_row_padding():
    ros = load_example("ros2_classifier")
    rgb = np.random.default_rng(1).integers(0, 256, (5, 7, 3), dtype=np.uint8)
    np.testing.assert_array_equal(ros.image_to_array(image_msg(rgb, "rgb8", pad=3)), rgb, err_msg="rgb8 with padding")
    np.testing.assert_array_equal(ros.image_to_array(image_msg(rgb[:, :, ::-1].copy(), "bgr8")), rgb, err_msg="bgr8")
    rgba = np.concatenate([rgb[:, :, ::-1], np.full((5, 7, 1), 255, np.uint8)], axis=2)
    np.testing.assert_array_equal(ros.image_to_array(image_msg(rgba, "bgra8")), rgb, err_msg="bgra8")
    depth = (np.arange(35, dtype=np.uint16).reshape(5, 7, 1) * 1000)
    out = ros.image_to_array(image_msg(depth, "mono16", bigendian=True))
    np.testing.assert_array_equal(out, (depth >> 8).astype(np.uint8), err_msg="big-endian mono16 -> top byte")
    with pytest.raises(ValueError, match="expected an image encoding"):
        ros.image_to_array(image_msg(rgb, "yuv422"))
    short = image_msg(rgb, "rgb8")
    short.data = short.data[:-1]
    with pytest.raises(ValueError, match="expected 5 rows"):
        ros.image_to_array(short)


def test_ros2_classify_matches_engine_top1(bundle):
    from edgeres.runtime import open_engine

    ros = load_example("ros2_classifier")
    image = np.random.default_rng(2).integers(0, 256, (40, 30, 1), dtype=np.uint8)
    with open_engine(bundle) as engine:
        best = ros.classify(engine, image, 3)
        x = engine.recipe.preprocess(__import__("PIL.Image", fromlist=["Image"]).fromarray(image[:, :, 0]))[None]
        logits = engine.infer(x)[0]
    assert [b["class"] for b in best] == list(np.argsort(-logits)[:3]), f"top-3 differs: {best} vs {logits}"
    assert abs(sum(b["score"] for b in ros.top_k(logits, 10)) - 1.0) < 1e-5, "scores are probabilities"
