"""Runner + report: JSON schema (validated, documented), table, PNG."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from tests.bench_fixtures import FakeBackend
from edgeres.bench.backends.base import Phases
from edgeres.bench.inputs import InputSource
from edgeres.bench.report import SCHEMA, render_table, report_dict, validate_report, write_json
from edgeres.bench.runner import run_benchmark
from edgeres.bench.timing import TimingConfig
from edgeres.errors import BenchError, OutputPathError

FAST = TimingConfig(warmup_ms=0, min_warmup_iters=1, duration_s=0.005, min_iters=5, rounds=3)


def _result(tmp_path: Path, **kwargs):
    ref = FakeBackend("ref", phases=Phases(0.1, 1.0, 0.05))
    cand = FakeBackend("cand", phases=Phases(0.1, 0.5, 0.05), scale=1.01)
    return run_benchmark(cand, ref, batch_sizes=[1, 2], config=FAST, num_buffers=3, sysfs_root=str(tmp_path), **kwargs), ref, cand


def test_runner_result_and_agreement(tmp_path: Path) -> None:
    result, ref, cand = _result(tmp_path)
    assert ref.closed and cand.closed, "both backends closed after the run"
    assert [r.batch_size for r in result.results] == [1, 2], "one result per batch size"
    r = result.results[1]
    assert r.speedup is not None and r.speedup.rounds == 3, "three alternated rounds"
    assert r.agreement["top1_agreement"] == 1.0 and r.agreement["samples"] == 64, f"same argmax on 32 batches of 2: {r.agreement}"
    assert 0 < r.agreement["max_abs"] < 0.1, f"1% scaled logits differ a little: {r.agreement['max_abs']}"
    assert r.candidate.compute.median_ms == 0.5 and r.reference.compute.median_ms == 1.0, "device phases summarized"
    np.testing.assert_array_equal(ref.batches[0], cand.batches[0], err_msg="both sides receive the same input arrays")
    assert all(np.any(b) for b in ref.batches), "no all-zero input batch"
    assert r.candidate.energy is None and result.power_source is None, "no rails under the fake root: power n/a"


def test_runner_power_from_fake_rails(tmp_path: Path) -> None:
    hw = tmp_path / "sys/bus/i2c/drivers/ina3221/1-0040/hwmon/hwmon1"
    hw.mkdir(parents=True)
    (hw / "in1_label").write_text("VDD_IN\n")
    (hw / "in1_input").write_text("5000\n")
    (hw / "curr1_input").write_text("1200\n")
    slow = TimingConfig(warmup_ms=0, min_warmup_iters=1, duration_s=0.3, min_iters=5, rounds=1)
    result = run_benchmark(FakeBackend("c"), None, batch_sizes=[1], config=slow, num_buffers=2, sysfs_root=str(tmp_path))
    energy = result.results[0].candidate.energy
    assert energy is not None and energy.average_power_mw == 6000.0, f"5 V x 1.2 A = 6 W: {energy}"
    n = result.results[0].candidate.e2e.count
    expected = 6000.0 * result.results[0].candidate.samples.window_s / n
    assert energy.energy_per_inference_mj == pytest.approx(expected), "mJ per inference = mW x s / inferences"
    assert "VDD_IN" in result.power_source, f"power source named: {result.power_source}"


def test_batch_outside_range_refused_before_loading(tmp_path: Path) -> None:
    cand = FakeBackend("plan", batch_range=(1, 4))
    with pytest.raises(BenchError, match=r"batch size 8 is outside the candidate's static batch \[1, 4\]"):
        run_benchmark(cand, None, batch_sizes=[1, 8], config=FAST, sysfs_root=str(tmp_path))
    assert not cand.loaded, "nothing loaded for a refused sweep"


def test_input_shape_mismatch(tmp_path: Path) -> None:
    with pytest.raises(BenchError, match="different inputs"):
        run_benchmark(FakeBackend(shape=(3, 32, 32)), FakeBackend(), config=FAST, sysfs_root=str(tmp_path))


def test_json_schema_roundtrip(tmp_path: Path) -> None:
    result, _, _ = _result(tmp_path)
    path = write_json(result, tmp_path / "out.json")
    data = json.loads(path.read_text())
    assert validate_report(data) == [], f"written report conforms: {validate_report(data)}"
    assert data["schema_version"] == 1 and data["format"] == "edgeres-bench", "versioned format"
    side = data["results"][0]["candidate"]
    assert side["latency_ms"]["compute"]["median_ms"] == 0.5 and side["iterations"] >= 5, f"per-side numbers: {side}"
    assert data["config"]["batch_sizes"] == [1, 2] and data["config"]["rounds"] == 3, f"config: {data['config']}"
    assert not list(tmp_path.glob(".out.json.*")), "no temporary file left behind"


def test_validator_catches_violations(tmp_path: Path) -> None:
    result, _, _ = _result(tmp_path)
    data = report_dict(result)
    del data["results"][0]["candidate"]["latency_ms"]["end_to_end"]["p99_ms"]
    data["config"]["rounds"] = "three"
    data["schema_version"] = 1
    errors = validate_report(data)
    assert any("p99_ms: missing" in e for e in errors) and any("rounds: expected int" in e for e in errors), f"errors: {errors}"
    data = report_dict(result)
    data["schema_version"] = 2
    assert validate_report(data) and "version" in validate_report(data)[0], "another schema version is reported"


def _schema_keys(schema, out: set[str]) -> set[str]:
    if isinstance(schema, tuple) and schema and schema[-1] is None:
        schema = schema[0]
    if isinstance(schema, dict):
        for key, sub in schema.items():
            out.add(key)
            _schema_keys(sub, out)
    elif isinstance(schema, list):
        _schema_keys(schema[0], out)
    return out


def test_every_schema_key_is_documented() -> None:
    doc = (Path(__file__).resolve().parents[1] / "docs" / "bench_json.md").read_text()
    documented = {part for code in re.findall(r"`([^`]+)`", doc) for part in re.split(r"[^a-z0-9_]+", code)}
    missing = sorted(_schema_keys(SCHEMA, set()) - documented)
    assert not missing, f"keys in SCHEMA but not in docs/bench_json.md: {missing}"


def test_unwritable_json_path(tmp_path: Path) -> None:
    result, _, _ = _result(tmp_path)
    with pytest.raises(OutputPathError, match="does not exist"):
        write_json(result, tmp_path / "missing" / "out.json")


def test_table_mentions_settings_and_speedup(tmp_path: Path) -> None:
    from rich.console import Console

    result, _, _ = _result(tmp_path)
    console = Console(record=True, width=160)
    render_table(result, console)
    text = console.export_text()
    for needle in ("candidate: fake cand", "reference: fake ref", "speedup vs reference", "top-1 agreement", "compute", "power: n/a"):
        assert needle in text, f"table shows {needle!r}"


def test_plot_is_a_png(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib", reason="matplotlib (the plot extra) is not installed")
    from PIL import Image

    from edgeres.bench.plot import plot_result

    result, _, _ = _result(tmp_path)
    path = plot_result(result, tmp_path / "out.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", "PNG signature"
    with Image.open(path) as image:
        image.load()
        assert image.format == "PNG" and image.width > 600 and image.height > 300, f"a real figure: {image.size}"
        colors = image.convert("RGB").getcolors(maxcolors=1_000_000)
        assert colors is not None and len(colors) > 50, "the image has content, not a blank canvas"
    single = run_benchmark(FakeBackend("c"), None, batch_sizes=[1], config=FAST, sysfs_root=str(tmp_path))
    assert plot_result(single, tmp_path / "single.png").stat().st_size > 1000, "latency-only plot too"


def test_input_source_pool_and_labels() -> None:
    pool = np.arange(5 * 1 * 2 * 2, dtype=np.float32).reshape(5, 1, 2, 2) + 1
    source = InputSource(pool=pool, labels=np.arange(5), description="pool")
    batches = source.batches((1, 2, 2), 2, 3)
    assert [b.shape for b in batches] == [(2, 1, 2, 2)] * 3, "three buffers of batch 2"
    np.testing.assert_array_equal(batches[2][1], pool[0], err_msg="samples wrap around the pool")
    np.testing.assert_array_equal(source.batch_labels(2, 3), [0, 1, 2, 3, 4, 0], err_msg="labels follow the samples")
    with pytest.raises(BenchError, match="model expects"):
        source.batches((3, 2, 2), 1, 1)
    with pytest.raises(BenchError, match="all zeros"):
        InputSource(pool=np.zeros((2, 1, 2, 2), np.float32)).batches((1, 2, 2), 1, 1)
