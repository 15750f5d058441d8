"""TensorRT calibration cache: format, version codes, round trip, malformed and foreign caches."""

from __future__ import annotations

import struct

import numpy as np
import onnx
import pytest

from edgeres.calibrate import (
    parse_calibration_cache,
    qdq_model_from_cache,
    read_calibration_cache,
    trt_version_code,
    write_calibration_cache,
)
from edgeres.calibrate.cache import calibration_cache_text, version_from_code
from edgeres.errors import CalibrationError
from tests.calib_fixtures import export_tiny_resnet


@pytest.mark.parametrize("version,code", [("8.5.2", 8502), ("8.6.1", 8601), ("10.3.0", 100300), ("10.0.1", 100001), ("10.13.2", 101302)])
def test_version_codes(version: str, code: int) -> None:
    assert trt_version_code(version) == code, f"{version} must encode as {code}"
    assert version_from_code(code) == version, f"{code} must decode to {version}"


@pytest.mark.parametrize("version", ["7.2.3", "8.4.1", "11.0.0", "abc", "8.x"])
def test_unsupported_versions(version: str) -> None:
    with pytest.raises(CalibrationError, match="TensorRT version"):
        trt_version_code(version)


def test_format_and_round_trip(tmp_path) -> None:
    scales = {"input": 0.0255, "/layer1/Relu_output_0": 1.5e-3, "logits": 12.0}
    path = write_calibration_cache(tmp_path / "calib.cache", scales, "8.5.2")
    lines = path.read_text().splitlines()
    assert lines[0] == "TRT-8502-EntropyCalibration2", f"header is {lines[0]!r}"
    assert lines[1] == f"input: {struct.pack('>f', 0.0255).hex()}", f"line 2 is {lines[1]!r}"
    assert lines[3] == "logits: 41400000", "12.0 must be written as big-endian float32 bits 41400000"
    back = read_calibration_cache(path)
    assert list(back) == list(scales), "tensor order must survive the round trip"
    for name, scale in scales.items():
        assert back[name] == float(np.float32(scale)), f"{name}: scale must round-trip exactly as float32"


@pytest.mark.parametrize(
    "text,match",
    [
        ("", "empty"),
        ("hello\ninput: 3c000000\n", "line 1"),
        ("TRT-8502-EntropyCalibration2\ninput 3c000000\n", "line 2"),
        ("TRT-8502-EntropyCalibration2\ninput: 3c00zz00\n", "line 2"),
        ("TRT-8502-EntropyCalibration2\ninput: 7fc00000\n", "finite and positive"),
        ("TRT-8502-EntropyCalibration2\ninput: 3c000000\ninput: 3c000000\n", "twice"),
        ("TRT-7103-EntropyCalibration2\ninput: 3c000000\n", "unsupported TensorRT version"),
        ("TRT-8502-EntropyCalibration2\n", "no tensor scales"),
    ],
)
def test_malformed_caches(text: str, match: str) -> None:
    with pytest.raises(CalibrationError, match=match):
        parse_calibration_cache(text)


def test_binary_and_missing_files(tmp_path) -> None:
    blob = tmp_path / "engine.plan"
    blob.write_bytes(b"\xff\xfe\x00\x80" * 8)
    with pytest.raises(CalibrationError, match="not a text calibration cache"):
        read_calibration_cache(blob)
    with pytest.raises(CalibrationError, match="does not exist"):
        read_calibration_cache(tmp_path / "nope.cache")


def test_cache_to_qdq_and_foreign_cache(tmp_path) -> None:
    model = onnx.load(str(export_tiny_resnet(tmp_path / "m.onnx")))
    from edgeres.calibrate.stats import observed_tensors

    scales = {name: 0.01 * (i + 1) for i, name in enumerate(observed_tensors(model))}
    cache = write_calibration_cache(tmp_path / "c.cache", scales)
    from edgeres.calibrate.qdq import qdq_model

    migrated = qdq_model_from_cache(model, cache)
    assert migrated.SerializeToString() == qdq_model(model, read_calibration_cache(cache)).SerializeToString(), (
        "a Q/DQ model from a cache must equal one built from the same scales"
    )
    foreign = tmp_path / "other.cache"
    foreign.write_text(calibration_cache_text({"some/other/net:0": 0.1, "input": 0.02}))
    with pytest.raises(CalibrationError, match="does not fit this model"):
        qdq_model_from_cache(model, foreign)


@pytest.fixture(scope="module", params=["resnet18", "reference"])
def fp32_model(request, tmp_path_factory):
    from tests.calib_fixtures import export_reference, export_resnet18

    export = export_resnet18 if request.param == "resnet18" else export_reference
    return onnx.load(str(export(tmp_path_factory.mktemp(request.param) / "m.onnx")))


def test_cache_covers_every_tensor(fp32_model) -> None:
    from edgeres.calibrate.cache import cache_scales
    from edgeres.calibrate.qdq import quantized_activations
    from edgeres.calibrate.stats import observed_tensors

    model = fp32_model
    observed = observed_tensors(model)
    scales = {name: 0.001 * (i + 1) for i, name in enumerate(observed)}
    quantized = quantized_activations(model)
    cached = cache_scales(model, scales, quantized)
    every = {model.graph.input[0].name} | {o for n in model.graph.node for o in n.output}
    assert set(cached) == every, f"cache must list the input and every node output; differs by {sorted(set(cached) ^ every)[:5]}"
    assert len(cached) > len(observed), "tensors read only by a ReLU are in the cache too"
    consumers: dict[str, list] = {}
    for node in model.graph.node:
        for i in node.input:
            consumers.setdefault(i, []).append(node)
    for name in quantized:
        assert cached[name] == scales[name], f"{name}: a Q/DQ tensor keeps its Q/DQ scale in the cache"
    for name, users in consumers.items():
        if name in cached and users and all(u.op_type == "Relu" for u in users):
            assert cached[name] == cached[users[0].output[0]], f"{name}: read only by a ReLU, so it takes the ReLU output's scale"
    pools = [n for n in model.graph.node if n.op_type == "MaxPool"]
    for pool in pools:
        assert cached[pool.input[0]] == cached[pool.output[0]], "MaxPool input takes the MaxPool output's (Q/DQ) scale"
    with pytest.raises(CalibrationError, match="no scale for tensor"):
        cache_scales(model, {k: v for k, v in scales.items() if k != observed[-1]}, quantized)


def test_tensorrt_written_cache_is_read_with_warnings(tmp_path) -> None:
    from click.testing import CliRunner

    from edgeres.cli import cli
    from edgeres.calibrate.stats import observed_tensors

    onnx_path = export_tiny_resnet(tmp_path / "m.onnx")
    model = onnx.load(str(onnx_path))
    scales = {name: 0.01 * (i + 1) for i, name in enumerate(observed_tensors(model))}
    lines = calibration_cache_text(scales, "8.5.2").splitlines()
    # as TensorRT writes them: its own unnamed layers, and 0 (unpadded hex) for tensors it never quantizes
    lines[2:2] = ["(Unnamed Layer* 8) [Constant]_output: 39137939", "(Unnamed Layer* 9) [Shuffle]_output: 0",
                  "(Unnamed ITensor* 38): 3c3604b4", f"{model.graph.output[0].name}_extra: 0"]
    text = "\n".join(lines) + "\n"
    seen: list[str] = []
    version, _, parsed = parse_calibration_cache(text, "trt.cache", warn=seen.append)
    assert version == "8.5.2" and parsed == pytest.approx(scales), "skipped entries must not change the real scales"
    assert len(seen) == 2 and "unnamed layers" in seen[0] and "3 entries" in seen[0] and "scale 0" in seen[1], (
        f"one warning line per kind expected, got {seen}"
    )
    cache = tmp_path / "trt.cache"
    cache.write_text(text)
    result = CliRunner().invoke(cli, ["calibrate", "--from-cache", str(cache), "--onnx", str(onnx_path), "-o", str(tmp_path / "o")])
    assert result.exit_code == 0, f"a TensorRT-written cache must be accepted: {result.output}"
    warnings_seen = [ln for ln in result.output.splitlines() if ln.startswith("warning:")]
    assert len(warnings_seen) == 2, f"one warning per skipped kind on stderr: {warnings_seen}"
    assert (tmp_path / "o" / "model.qdq.onnx").is_file(), "the Q/DQ model is written"


# ---- issue 14: a hostile cache is one line ----------------------------------------------------------

@pytest.mark.parametrize("text, needle", [
    ("TRT-" + "9" * 5000 + "-EntropyCalibration2\ninput: 3c010a14\n", "line 1"),
    ("TRT-100300-EntropyCalibration2\n" + "x" * 5000 + ": 3c010a14\n", "line 2"),
    ("TRT-100300-EntropyCalibration2\nin\x1bput: 3c010a14\n", "line 2"),
    ("TRT-100300-EntropyCalibration2\ninput: 7fc00000\n", "finite and positive"),
    ("TRT-999999-EntropyCalibration2\ninput: 3c010a14\n", "unsupported TensorRT"),
])
def test_hostile_cache_text_is_one_error(text: str, needle: str) -> None:
    with pytest.raises(CalibrationError, match=needle) as info:
        parse_calibration_cache(text, "calib.cache")
    assert len(str(info.value)) < 500, f"short: {str(info.value)[:600]}"


def test_fifo_cache_is_refused(tmp_path) -> None:
    import os

    if not hasattr(os, "mkfifo"):
        pytest.skip("no FIFOs")
    os.mkfifo(tmp_path / "calib.cache")
    with pytest.raises(CalibrationError, match="FIFO"):
        read_calibration_cache(tmp_path / "calib.cache")


def test_empty_and_invalid_onnx_for_migration_say_what_they_are(tmp_path) -> None:
    from edgeres.calibrate.cache import qdq_file_from_cache

    cache = tmp_path / "calib.cache"
    cache.write_text("TRT-100300-EntropyCalibration2\ninput: 3c010a14\n")
    empty = tmp_path / "model.onnx"
    empty.write_bytes(b"")
    with pytest.raises(CalibrationError, match=r"is empty \(0 bytes\)"):
        qdq_file_from_cache(empty, cache, tmp_path / "out" / "model.qdq.onnx")
    bad = tmp_path / "bad.onnx"
    onnx.save(onnx.helper.make_model(onnx.helper.make_graph(
        [onnx.helper.make_node("Relu", ["x"], ["y"])], "g", [], [])), str(bad))
    with pytest.raises(CalibrationError, match="not a valid ONNX model"):
        qdq_file_from_cache(bad, cache, tmp_path / "out" / "model.qdq.onnx")
