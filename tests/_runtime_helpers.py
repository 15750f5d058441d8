"""Shared fixtures of the runtime tests: the shipped reference model exported to ONNX, and real digit inputs.

The reference (``edgeres.reference``) is a CIFAR ResNet-20 trained on real
MNIST digits, 1x28x28 input, 10 classes; its test split gives real inputs.
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np

INPUT_SHAPE = (1, 28, 28)
NUM_CLASSES = 10


@functools.lru_cache(maxsize=1)
def reference_onnx() -> Path:
    """The shipped reference model, BN folded, exported once per test process (checked against PyTorch).

    Tests that modify or move the model copy its bytes; this file stays read-only in spirit.
    """
    import atexit
    import shutil
    import tempfile

    import torch

    import edgeres
    from edgeres.reference import reference_model

    folder = Path(tempfile.mkdtemp(prefix="edgeres-runtime-tests-"))
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    path = folder / "model.onnx"
    model = edgeres.fold_batchnorm(reference_model(), torch.zeros(1, *INPUT_SHAPE))
    edgeres.export_onnx(model, path, (1, *INPUT_SHAPE), check_inputs=sample_batch(4))
    return path


@functools.lru_cache(maxsize=1)
def _test_split() -> tuple[np.ndarray, np.ndarray]:
    from edgeres.reference import reference_data_path

    with np.load(reference_data_path(), allow_pickle=False) as archive:
        return archive["test_images"], archive["test_labels"]


def digits(count: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``count`` real test-split digits as uint8 NHWC images and their labels (seeded choice)."""
    images, labels = _test_split()
    idx = np.random.default_rng(seed).choice(len(images), size=count, replace=False)
    return images[idx], labels[idx]


def sample_batch(batch: int, seed: int = 0) -> np.ndarray:
    """``batch`` real digits preprocessed with the reference recipe: float32 (N, 1, 28, 28)."""
    from edgeres.reference import reference_recipe

    images, _ = digits(batch, seed)
    return reference_recipe().normalize_uint8_nhwc(images)


def resident_bytes() -> int:
    """Resident set size of this process now (Linux /proc/self/statm)."""
    import os

    with open("/proc/self/statm", encoding="ascii") as f:
        pages = int(f.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE")
