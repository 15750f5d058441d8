"""Report rows of a calibration: tensor and layer tables from plain data."""

from __future__ import annotations

import numpy as np
import pytest

from edgeres.calibrate.calibrators import Histogram
from edgeres.calibrate.report import json_safe, layer_rows, tensor_rows


def test_tensor_rows_saturation_and_qdq_flag() -> None:
    hist = Histogram(counts=np.array([5, 3, 2, 0], dtype=np.int64), exponent=2, absmax=3.0)  # bins of width 1 over [0, 4)
    rows = tensor_rows(["x", "y"], "max", {"x": 3.0, "y": 1.0}, {"x": 3.0 / 127, "y": 1.0 / 127},
                       {"x": hist, "y": hist}, quantized={"y"})
    assert [r["name"] for r in rows] == ["x", "y"], "rows keep the given order"
    assert rows[0]["saturated_pct"] == pytest.approx(100 * hist.saturated_fraction(3.0)), "saturation from the histogram"
    assert rows[0]["saturated_pct"] == 0.0, "amax 3: no bin lies wholly above it"
    assert rows[1]["saturated_pct"] == pytest.approx(50.0), "amax 1: the 5 of 10 values in bins [1, 4) are clipped"
    assert [r["in_qdq_model"] for r in rows] == [False, True], "only tensors of the Q/DQ model are flagged"
    assert rows[0]["absmax"] == 3.0 and rows[0]["method"] == "max", f"{rows[0]}"


def test_layer_rows_precision_and_missing_macs() -> None:
    rows = layer_rows([("conv", "Conv"), ("fc", "Gemm")], {"conv": 1000}, {"conv": 30.0, "fc": float("inf")}, excluded={"fc"})
    assert rows[0] == {"name": "conv", "op": "Conv", "macs": 1000, "sqnr_db": 30.0, "precision": "int8"}, f"{rows[0]}"
    assert rows[1]["macs"] == 0 and rows[1]["precision"] == "fp16/fp32", f"{rows[1]}"
    assert json_safe(rows)[1]["sqnr_db"] == "inf", "inf becomes a string for strict JSON"
