"""compare_logits and sqnr_db on hand-made logits."""

from __future__ import annotations

import numpy as np
import pytest

from edgeres.errors import DataError
from edgeres.evaluate import compare_logits, sqnr_db


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
