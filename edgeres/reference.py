"""The shipped reference model: CIFAR ResNet-20 trained on real handwritten digits.

``calib/reference/`` holds the FP32 weights, the calibration and test splits
(uint8 28x28 grayscale MNIST digits, disjoint from the training split and from
each other) and ``recipe.json``, which records how the model was trained and
its FP32 top-1 on the test split through PyTorch and through ONNX Runtime.
INT8 calibration, accuracy budgets and benchmarks use it as a real model on
real data that needs no download. ``benchmarks/train_reference.py`` regenerates it.

This module owns the shipped files (paths, splits, recipe, weights); it imports
no other data module. The splits as datasets are ``reference:calib`` /
``reference:test`` sources of :func:`edgeres.data.load_dataset` (or
:func:`edgeres.data.reference_dataset`); top-1 counts are in :mod:`edgeres.evaluate`.
It imports torch only inside the functions that build a model.
"""

from __future__ import annotations

import functools
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from edgeres.errors import DataError
from edgeres.recipe import Recipe
from edgeres.resources import shipped_file

if TYPE_CHECKING:
    from torch import nn

REFERENCE_ARCH = "resnet20"
REFERENCE_BUILDER_OPTIONS: dict[str, Any] = {"in_channels": 1, "num_classes": 10, "shortcut": "A"}
SPLITS = ("calib", "test")
WEIGHTS_NAME = "resnet20_digits.safetensors"
DATA_NAME = "digits.npz"
INFO_NAME = "recipe.json"
INFO_FORMAT = "edgeres-reference/1"
EVAL_BATCH_SIZE = 250  # batch size of the recorded accuracy evaluation (recipe.json "accuracy")


def reference_weights_path() -> Path:
    """Path of the FP32 state dict (safetensors)."""
    return shipped_file("calib", "reference", WEIGHTS_NAME)


def reference_data_path() -> Path:
    """Path of the ``.npz`` with the calibration and test splits (uint8 NHWC, labels, source indices)."""
    return shipped_file("calib", "reference", DATA_NAME)


@functools.lru_cache(maxsize=1)
def _info() -> dict[str, Any]:
    path = shipped_file("calib", "reference", INFO_NAME)
    info = json.loads(path.read_text(encoding="utf-8"))
    if info.get("format") != INFO_FORMAT:
        raise DataError(f"{path} has format {info.get('format')!r}, expected {INFO_FORMAT!r}; reinstall edgeres")
    return info


def reference_info() -> dict[str, Any]:
    """The recorded ``recipe.json``: architecture, recipe, splits, training and accuracy."""
    return json.loads(json.dumps(_info()))  # a deep copy, so callers cannot alter the cache


def reference_recipe() -> Recipe:
    """Preprocessing of the reference model (28x28 grayscale, mean/std of its training split)."""
    return Recipe.from_dict(_info()["recipe"])


def reference_model(weights: str | os.PathLike[str] | None = None) -> "nn.Module":
    """The reference ResNet-20 in eval mode, loaded strictly (the shipped weights if None)."""
    from edgeres.weights import model_from_weights

    path = reference_weights_path() if weights is None else Path(weights)
    return model_from_weights(REFERENCE_ARCH, path, **REFERENCE_BUILDER_OPTIONS).eval()


def check_split(split: str) -> str:
    """``split`` if it names a shipped split, else DataError."""
    if split not in SPLITS:
        raise DataError(f"unknown reference split {split!r}; expected one of {', '.join(SPLITS)}")
    return split


def reference_indices(split: str) -> np.ndarray:
    """Indices into the 5,000-image source of ``split`` (``train``, ``calib`` or ``test``)."""
    with np.load(reference_data_path(), allow_pickle=False) as archive:
        key = f"{split}_indices"
        if key not in archive.files:
            raise DataError(f"unknown reference split {split!r}; expected one of train, {', '.join(SPLITS)}")
        return archive[key]
