"""Small models and in-memory datasets for the calibration tests (no downloads)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgeres.export import realistic_inputs

SHAPE = (1, 28, 28)


class ArrayDataset:
    """The part of :class:`edgeres.data.Dataset` that calibration uses, over an in-memory array."""

    def __init__(self, images: np.ndarray, labels: np.ndarray | None = None) -> None:
        self.images = np.ascontiguousarray(images, dtype=np.float32)
        self.labels = labels

    def __len__(self) -> int:
        return len(self.images)

    def batches(self, batch_size: int):
        for start in range(0, len(self), batch_size):
            stop = start + batch_size
            yield self.images[start:stop], None if self.labels is None else self.labels[start:stop]

    def fingerprint(self) -> str:
        import hashlib

        return hashlib.sha256(self.images.tobytes()).hexdigest()


def export_tiny_resnet(path: Path, seed: int = 0) -> Path:
    """A BN-folded CIFAR ResNet-20 (1x28x28 input, 10 classes) with non-trivial BN, as ONNX."""
    import torch

    from edgeres.export import export_onnx
    from edgeres.fold import fold_batchnorm
    from edgeres.models import create_model
    from tests.conftest import randomize_batchnorm

    torch.manual_seed(seed)
    model = randomize_batchnorm(create_model("resnet20", in_channels=1, num_classes=10), seed)
    example = torch.from_numpy(realistic_inputs((4, *SHAPE), seed=seed))
    export_onnx(fold_batchnorm(model, example), path, (1, *SHAPE), check_inputs=example.numpy())
    return path


def tiny_dataset(n: int = 48, seed: int = 1, labels: bool = True) -> ArrayDataset:
    images = realistic_inputs((n, *SHAPE), seed=seed)
    y = np.random.default_rng(seed).integers(0, 10, n) if labels else None
    return ArrayDataset(images, y)


def export_resnet18(path: Path, side: int = 64) -> Path:
    """torchvision-layout ResNet-18, BN folded, as ONNX at ``side`` x ``side`` (the graph is the same as at 224)."""
    import torch

    from edgeres.export import export_onnx
    from edgeres.fold import fold_batchnorm
    from edgeres.models import create_model

    torch.manual_seed(0)
    example = torch.randn(2, 3, side, side)
    export_onnx(fold_batchnorm(create_model("resnet18").eval(), example), path, (1, 3, side, side), check_inputs=example.numpy())
    return path


def export_reference(path: Path) -> Path:
    """The shipped reference model (CIFAR ResNet-20, option-A shortcuts), BN folded, as ONNX."""
    from edgeres.pipeline import export_model

    export_model(None, None, path)  # the one front end: arch/weights None is the reference model
    return path
