"""Tests for edgeres.reference: the shipped ResNet-20 digits model, its splits (as datasets) and recorded accuracy."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import edgeres
from edgeres import reference
from edgeres.data import load_dataset, reference_dataset
from edgeres.errors import DataError
from edgeres.evaluate import top1_correct_onnxruntime, top1_correct_torch
from edgeres.models import create_model
from edgeres.weights import load_weights, read_state_dict


@pytest.fixture(scope="module")
def info() -> dict:
    return reference.reference_info()


@pytest.fixture(scope="module")
def test_split():
    return reference_dataset("test")


@pytest.fixture(scope="module")
def model():
    return reference.reference_model()


def test_checkpoint_loads_strictly(info: dict) -> None:
    state = read_state_dict(reference.reference_weights_path())
    built = create_model(info["arch"], **info["builder_options"])
    assert set(state) == set(built.state_dict()), "shipped state dict keys must equal the model's exactly"
    load_weights(built, state, info["arch"])  # raises WeightsError on any key/shape mismatch
    assert all(v.dtype in (torch.float32, torch.int64) for v in state.values()), "weights must be FP32 (+ BN counters)"
    assert info["arch"] == reference.REFERENCE_ARCH and info["builder_options"] == reference.REFERENCE_BUILDER_OPTIONS, (
        f"recipe.json arch/options {info['arch']} {info['builder_options']} disagree with edgeres.reference"
    )


def test_model_is_eval_mode_and_recipe_matches(model, info: dict) -> None:
    assert not model.training, "reference_model() must be in eval mode"
    recipe = reference.reference_recipe()
    assert recipe.to_dict() == info["recipe"], "reference_recipe() must be the recorded recipe"
    assert recipe.input_shape == (1, 28, 28) and recipe.num_classes == 10, f"recipe shape {recipe.input_shape}"


def test_splits_are_disjoint_and_match_recorded_sizes(info: dict) -> None:
    indices = {name: reference.reference_indices(name) for name in ("train", "calib", "test")}
    for name, idx in indices.items():
        assert len(np.unique(idx)) == len(idx), f"{name} indices repeat"
        assert len(idx) == info["splits"]["sizes"][name], f"{name}: {len(idx)} vs recorded {info['splits']['sizes'][name]}"
        assert idx.min() >= 0 and idx.max() < 5000, f"{name} indices outside the 5,000-image source"
    for a, b in (("train", "calib"), ("train", "test"), ("calib", "test")):
        overlap = np.intersect1d(indices[a], indices[b])
        assert overlap.size == 0, f"{a} and {b} share source indices {overlap[:5]}"
    for split in reference.SPLITS:
        ds = reference_dataset(split)
        assert len(ds) == len(indices[split]), f"{split}: {len(ds)} images vs {len(indices[split])} indices"
        assert np.bincount(ds.labels, minlength=10).min() > 0, f"{split} must hold every digit"


def test_recorded_fingerprints_match_shipped_data(info: dict, test_split) -> None:
    assert test_split.fingerprint() == info["test_fingerprint"], "test split differs from the one measured"
    calib = load_dataset("reference:calib", None, require_labels=True)
    assert calib.fingerprint() == info["calib_fingerprint"], "calib split differs from the one recorded"
    assert calib.source == "reference:calib" and len(calib) == 200, f"{calib!r}"


def test_fp32_torch_accuracy_equals_recorded(model, test_split, info: dict) -> None:
    correct = top1_correct_torch(model, test_split, batch_size=reference.EVAL_BATCH_SIZE)
    recorded = info["accuracy"]["fp32_torch_correct"]
    assert correct == recorded, f"recomputed {correct}/{len(test_split)} correct, recorded {recorded}"
    assert correct / len(test_split) == info["accuracy"]["fp32_torch_top1"], "recorded top-1 is correct/count"
    assert correct / len(test_split) > 0.97, f"reference model is too weak: {correct / len(test_split):.4f}"


def test_folded_onnx_gives_same_top1(model, test_split, info: dict, tmp_path: Path) -> None:
    folded = edgeres.fold_batchnorm(model)
    path = tmp_path / "ref.onnx"
    edgeres.export_onnx(folded, path, (1, *reference.reference_recipe().input_shape))
    onnx_correct = top1_correct_onnxruntime(path, test_split, batch_size=reference.EVAL_BATCH_SIZE)
    assert onnx_correct == info["accuracy"]["fp32_torch_correct"], (
        f"ONNX Runtime {onnx_correct} correct vs PyTorch {info['accuracy']['fp32_torch_correct']}"
    )
    assert onnx_correct == info["accuracy"]["fp32_onnxruntime_correct"], "ONNX top-1 differs from the recorded one"


def test_reference_sources_and_bad_split() -> None:
    with pytest.raises(DataError, match="unknown reference split 'train'"):
        load_dataset("reference:train", None)
    with pytest.raises(DataError, match="unknown reference split"):
        reference_dataset("validation")
    sub = reference_dataset("calib", size=32, seed=1)
    assert len(sub) == 32 and sub.labels is not None, "reference splits honour size/seed"
    x = sub.array()
    assert x.shape == (32, 1, 28, 28) and x.dtype == np.float32, f"{x.shape} {x.dtype}"


def test_reference_info_is_a_copy() -> None:
    first = reference.reference_info()
    first["accuracy"]["fp32_torch_correct"] = -1
    assert reference.reference_info()["accuracy"]["fp32_torch_correct"] != -1, "callers must not alter the cache"


def test_importing_reference_does_not_import_torch() -> None:
    code = "import sys, edgeres.reference; assert 'torch' not in sys.modules, 'torch imported'"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, f"edgeres.reference imported torch: {result.stderr}"
