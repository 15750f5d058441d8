"""EngineSettings checks that need no TensorRT."""

from __future__ import annotations

from pathlib import Path

import pytest

from edgeres.errors import BuildError
from edgeres.trt.settings import EngineSettings, check_settings


def settings(tmp_path: Path, **kw) -> EngineSettings:
    base = dict(onnx_path=tmp_path / "m.onnx", plan_path=tmp_path / "model.plan", precision="fp32", input_shape=(3, 8, 8))
    return EngineSettings(**{**base, **kw})


@pytest.mark.parametrize("kw, match", [
    ({"precision": "int4"}, "precision must be one of"),
    ({"int8_mode": "ptq"}, "int8_mode must be one of"),
    ({"min_batch": 4, "opt_batch": 2, "max_batch": 8}, "min <= opt <= max"),
    ({"input_shape": (3, 0, 8)}, "three positive sizes"),
    ({"dla_core": 0, "precision": "fp32"}, "DLA runs only FP16 or INT8"),
    ({"precision": "int8", "int8_mode": "calibrator"}, "needs calibration data or an existing calibration cache"),
    ({"workspace_bytes": 1000}, "at least 1 MiB"),
    ({"concurrent_contexts": 0}, r"concurrent_contexts must be 1\.\.16, received 0"),
    ({"concurrent_contexts": 17}, r"concurrent_contexts must be 1\.\.16, received 17"),
])
def test_check_settings_refuses(tmp_path, kw, match):
    with pytest.raises(BuildError, match=match):
        check_settings(settings(tmp_path, **kw))


def test_check_settings_accepts_calibrator_with_cache_only(tmp_path):
    cache = tmp_path / "calib.cache"
    cache.write_bytes(b"TRT-calibration-cache")
    check_settings(settings(tmp_path, precision="int8", int8_mode="calibrator", calib_cache=cache))
    assert settings(tmp_path, min_batch=2).shape(8) == (8, 3, 8, 8), "shape(batch) must be N, C, H, W"
