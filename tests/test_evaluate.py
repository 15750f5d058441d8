"""compare_logits, sqnr_db and the top-1 counts on hand-made logits and models."""

from __future__ import annotations

import numpy as np
import pytest

from edgeres.errors import DataError
from edgeres.evaluate import compare_logits, sqnr_db, top1_correct, top1_correct_onnxruntime, top1_correct_torch


def test_compare_logits_known_values() -> None:
    ref = np.array([[2.0, 1.0], [0.0, 3.0], [1.0, 0.0], [0.0, 1.0]], np.float32)
    out = ref.copy()
    out[3] = [2.0, 1.0]  # flips the top-1 of the last sample
    labels = np.array([0, 1, 1, 1])
    m = compare_logits(ref, out, labels)
    assert m["top1_agreement"] == pytest.approx(0.75), "3 of 4 samples agree"
    assert m["accuracy_ref"] == pytest.approx(0.75) and m["accuracy"] == pytest.approx(0.5), "accuracies"
    noise = np.sum((ref - out) ** 2)
    assert m["sqnr_db"] == pytest.approx(10 * np.log10(np.sum(ref**2) / noise)), "SQNR formula"
    assert m["max_abs"] == pytest.approx(2.0), "max abs difference"
    assert compare_logits(ref, ref)["accuracy"] is None, "no labels -> no accuracy"
    assert sqnr_db(ref, ref) == float("inf"), "identical outputs have infinite SQNR"


def test_compare_logits_shape_errors() -> None:
    with pytest.raises(DataError, match="shapes differ"):
        compare_logits(np.zeros((2, 3)), np.zeros((3, 3)))
    with pytest.raises(DataError, match="labels"):
        compare_logits(np.zeros((2, 3)), np.zeros((2, 3)), np.zeros(3))


class _Arrays:
    """A labelled dataset stand-in: ``batches``, ``labels`` and ``source`` like edgeres.data.Dataset."""

    def __init__(self, images: np.ndarray, labels: np.ndarray | None) -> None:
        self.images, self.labels, self.source = images, labels, "hand-made"

    def batches(self, batch_size: int):
        for start in range(0, len(self.images), batch_size):
            stop = start + batch_size
            yield self.images[start:stop], None if self.labels is None else self.labels[start:stop]


def test_top1_counts_agree_across_backends_and_batch_sizes(tmp_path) -> None:
    import torch

    from edgeres.export import export_onnx

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 4)).eval()
    images = np.random.default_rng(0).standard_normal((10, 3, 2, 2)).astype(np.float32)
    with torch.no_grad():
        predicted = model(torch.from_numpy(images)).numpy().argmax(1)
    labels = predicted.copy()
    labels[[1, 4, 7]] = (labels[[1, 4, 7]] + 1) % 4  # three wrong labels
    data = _Arrays(images, labels)
    assert top1_correct(np.eye(3), np.array([0, 2, 2])) == 2, "argmax of rows vs labels"
    assert top1_correct_torch(model, data, batch_size=3) == 7, "PyTorch: 7 of 10 labels match the argmax"
    path = tmp_path / "m.onnx"
    export_onnx(model, path, (1, 3, 2, 2))
    assert top1_correct_onnxruntime(path, data, batch_size=4) == 7, "ONNX Runtime counts the same 7"
    with pytest.raises(DataError, match="no labels"):
        top1_correct_torch(model, _Arrays(images, None))
    with pytest.raises(DataError, match="no labels"):
        top1_correct_onnxruntime(path, _Arrays(images, None))


def test_labels_beyond_the_logits_classes_are_refused() -> None:
    """compare_logits checks labels against the logits' class count before any accuracy is computed."""
    logits = np.eye(3, dtype=np.float32)
    cases = [
        (np.array([0, 1, 3]), r"labels range over \[0, 3\], expected class indices 0 to 2"),
        (np.array([0, 1, 2**64 - 1], np.uint64), r"\[0, 18446744073709551615\]"),
        (np.array([-1, 0, 1]), r"\[-1, 1\]"),
        (np.array([0.0, 1.0, 2.0]), "expected integer class labels"),
    ]
    for labels, pattern in cases:
        with pytest.raises(DataError, match=pattern):
            compare_logits(logits, logits, labels)
    assert compare_logits(logits, logits, np.array([0, 1, 2], np.uint8))["accuracy"] == 1.0, "valid uint8 labels are fine"
