"""nvinfer's one-scale normalization made exact: 1/std folded into the model."""

from __future__ import annotations

import configparser
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from edgeres.deploy.deepstream import write_deepstream_config
from edgeres.deploy.facts import facts_from_bundle
from edgeres.deploy.normalization import (
    fold_channel_scale,
    nvinfer_normalization,
    nvinfer_preprocess,
    scale_conv_input_channels,
)
from edgeres.errors import DeployConfigError
from edgeres.recipe import Recipe
from tests.deploy_fixtures import Bundles, deploy_bundles  # noqa: F401  (fixture)

REL_TOL = 1e-4


def run(model: onnx.ModelProto | Path, x: np.ndarray) -> np.ndarray:
    data = model.SerializeToString() if isinstance(model, onnx.ModelProto) else str(model)
    sess = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    return sess.run(None, {sess.get_inputs()[0].name: x})[0]


def uint8_images(recipe: Recipe, n: int = 6, seed: int = 0) -> np.ndarray:
    h, w = recipe.input_size
    return np.random.default_rng(seed).integers(0, 256, (n, h, w, recipe.in_channels), dtype=np.uint8)


def rel_err(got: np.ndarray, ref: np.ndarray) -> float:
    return float(np.max(np.abs(got - ref)) / max(np.max(np.abs(ref)), 1e-12))


def nvinfer_from_config(config: Path) -> tuple[float, list[float]]:
    """net-scale-factor and offsets as nvinfer reads them from the written file (GKeyFile ~ INI)."""
    parser = configparser.ConfigParser(comment_prefixes=("#",), interpolation=None)
    parser.read(config)
    prop = parser["property"]
    return float(prop["net-scale-factor"]), [float(v) for v in prop["offsets"].split(";")]


def test_nvinfer_normalization_values() -> None:
    recipe = Recipe(input_size=(4, 4), in_channels=3, resize=None, mean=(0.5, 0.25, 0.0), std=(0.5, 0.25, 0.125))
    norm = nvinfer_normalization(recipe)
    assert norm.net_scale_factor == 1 / 255, "one scale: exactly 1/255"
    assert norm.offsets == (127.5, 63.75, 0.0), f"offsets are 255 * mean: {norm.offsets}"
    assert norm.channel_scale == (2.0, 4.0, 8.0), f"the model absorbs 1/std: {norm.channel_scale}"
    x = uint8_images(recipe)
    y = nvinfer_preprocess(x, norm.net_scale_factor, norm.offsets) * np.asarray(norm.channel_scale, np.float32)[:, None, None]
    np.testing.assert_allclose(y, recipe.normalize_uint8_nhwc(x), rtol=1e-6, atol=1e-6,
                               err_msg="nvinfer's formula times 1/std is the recipe's normalization")


def test_scale_conv_input_channels() -> None:
    w = np.arange(2 * 3 * 1 * 1, dtype=np.float32).reshape(2, 3, 1, 1)
    out = scale_conv_input_channels(w, (1.0, 2.0, 0.5))
    assert np.array_equal(out[:, 1], w[:, 1] * 2) and np.array_equal(out[:, 2], w[:, 2] * 0.5), "per input channel"
    with pytest.raises(DeployConfigError, match="input channels"):
        scale_conv_input_channels(w, (1.0, 2.0))


@pytest.mark.parametrize("mode", ["conv", "input-mul"])
def test_rgb_identity_nvinfer_on_folded_equals_recipe_on_original(deploy_bundles: Bundles, mode: str) -> None:
    bundle = deploy_bundles["rgb_fp32"]
    facts = facts_from_bundle(bundle)
    recipe = facts.recipe
    assert len(set(recipe.std)) == 3, f"the test needs a per-channel std that differs: {recipe.std}"
    original = onnx.load(bundle / "model.onnx")
    norm = nvinfer_normalization(recipe)
    folded = fold_channel_scale(original, norm.channel_scale, mode)
    x = uint8_images(recipe)
    ref = run(original, recipe.normalize_uint8_nhwc(x))
    got = run(folded, nvinfer_preprocess(x, norm.net_scale_factor, norm.offsets))
    assert rel_err(got, ref) <= REL_TOL, f"{mode}: relative error {rel_err(got, ref):.2e} > {REL_TOL}"
    # what users do by hand: one averaged std as net-scale-factor; the test must be able to fail
    avg = 1 / (255 * float(np.mean(recipe.std)))
    averaged = run(original, nvinfer_preprocess(x, avg, norm.offsets))
    assert rel_err(averaged, ref) > 10 * REL_TOL, f"averaging the std is measurably wrong: {rel_err(averaged, ref):.2e}"


def test_deepstream_folder_identity_rgb(deploy_bundles: Bundles, tmp_path: Path) -> None:
    bundle = deploy_bundles["rgb_fp32"]
    facts = facts_from_bundle(bundle)
    result = write_deepstream_config(facts, tmp_path / "ds")
    assert result.fold_mode == "conv", f"FP32 ONNX takes the free conv fold: {result.fold_mode}"
    scale, offsets = nvinfer_from_config(result.config)
    assert scale == 1 / 255 and len(offsets) == 3, f"net-scale-factor {scale}, offsets {offsets}"
    x = uint8_images(facts.recipe, seed=1)
    ref = run(bundle / "model.onnx", facts.recipe.normalize_uint8_nhwc(x))
    got = run(result.onnx, nvinfer_preprocess(x, scale, offsets))
    assert rel_err(got, ref) <= REL_TOL, f"written folder: relative error {rel_err(got, ref):.2e}"
    graph = onnx.load(result.onnx).graph
    assert [i.name for i in graph.input] == ["input"] and len(graph.node) == len(onnx.load(bundle / "model.onnx").graph.node), \
        "conv fold adds no node and keeps the binding name"


@pytest.mark.parametrize("bundle_name, source", [("ref_int8", "model.qdq.onnx"), ("ref_calib", "model.onnx")])
def test_deepstream_folder_identity_int8(deploy_bundles: Bundles, tmp_path: Path, bundle_name: str, source: str) -> None:
    bundle = deploy_bundles[bundle_name]
    facts = facts_from_bundle(bundle)
    result = write_deepstream_config(facts, tmp_path / "ds")
    assert result.source_onnx == source and result.fold_mode == "input-mul", f"{bundle_name}: {result}"
    graph = onnx.load(result.onnx).graph
    assert graph.input[0].name == "input_raw" and graph.node[0].op_type == "Mul" and graph.node[0].output[0] == "input", \
        "the Mul takes over the input name, so every quantization scale still sees the normalized tensor"
    scale, offsets = nvinfer_from_config(result.config)
    x = uint8_images(facts.recipe, n=8, seed=2)
    ref = run(bundle / source, facts.recipe.normalize_uint8_nhwc(x))
    got = run(result.onnx, nvinfer_preprocess(x, scale, offsets))
    assert rel_err(got, ref) <= REL_TOL, f"{bundle_name}: relative error {rel_err(got, ref):.2e}"
