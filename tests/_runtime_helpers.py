"""Shared fixtures of the runtime tests: a small exported ResNet-20 and its reference outputs.

Uses the shipped reference model (``edgeres.reference``) when it exists, else a
randomly initialised ``resnet20`` with the same 1x28x28 input and 10 classes:
the runtime's behaviour does not depend on the weights' quality.
"""

from __future__ import annotations

import functools
import importlib.util
from pathlib import Path

import numpy as np

INPUT_SHAPE = (1, 28, 28)
NUM_CLASSES = 10


@functools.lru_cache(maxsize=None)
def export_reference_onnx(folder: str) -> Path:
    """Fold BN and export the reference (or a random resnet20) to ``folder/model.onnx``; cached per folder."""
    import torch

    import edgeres

    path = Path(folder) / "model.onnx"
    model = None
    if importlib.util.find_spec("edgeres.reference") is not None:
        from edgeres import reference

        loader = getattr(reference, "load_reference_model", None) or getattr(reference, "reference_model", None)
        if loader is not None:
            model = loader()
    if model is None:
        torch.manual_seed(0)
        model = edgeres.create_model("resnet20", num_classes=NUM_CLASSES, in_channels=INPUT_SHAPE[0])
    model = model.eval()
    model = edgeres.fold_batchnorm(model, torch.zeros(1, *INPUT_SHAPE))
    edgeres.export_onnx(model, path, (1, *INPUT_SHAPE))
    return path


def sample_batch(batch: int, seed: int = 0) -> np.ndarray:
    """Deterministic image-like float32 inputs (N, 1, 28, 28)."""
    from edgeres.export import realistic_inputs

    return realistic_inputs((batch, *INPUT_SHAPE), seed=seed)


def resident_bytes() -> int:
    """Resident set size of this process now (Linux /proc/self/statm)."""
    import os

    with open("/proc/self/statm", encoding="ascii") as f:
        pages = int(f.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE")
