"""Issue 13: isolated per-layer SQNR, stability from half histograms, --check-data, warnings, progress lines."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
from click.testing import CliRunner

from edgeres.calibrate import calibrate
from edgeres.calibrate.calibrators import Histogram
from edgeres.calibrate.stats import collect_statistics, merge_histograms, update_histogram
from edgeres.cli import cli
from tests.calib_fixtures import ArrayDataset, export_tiny_resnet, tiny_dataset


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
    return export_tiny_resnet(tmp_path_factory.mktemp("sens") / "model.onnx")


@pytest.fixture(scope="module")
def result(model_path, tmp_path_factory):
    return calibrate(model_path, tiny_dataset(24), tmp_path_factory.mktemp("sens-out") / "o", progress=False)


def test_every_layer_has_isolated_and_accumulated_sqnr(result) -> None:
    layers = result.report["layers"]
    assert all(isinstance(row["isolated_sqnr_db"], (float, str)) for row in layers), "isolated SQNR per layer"
    first = layers[0]
    # the first conv reads the graph input: quantized alone or in the model, it sees the same FP32 input
    assert abs(float(first["isolated_sqnr_db"]) - float(first["sqnr_db"])) <= 0.006, f"first layer (0.01 dB rounding): {first}"
    deepest = min(float(r["sqnr_db"]) for r in layers if r["precision"] == "int8")
    worst_alone = float(result.report["sensitivity"]["worst_isolated"][0]["isolated_sqnr_db"])
    assert worst_alone >= deepest - 1e-6, "isolated errors cannot be worse than the accumulated worst here"
    assert "fix" in result.report["sensitivity"] and "FP16" in result.report["sensitivity"]["fix"], "says what the budget would do"
    assert "worst layers alone" in result.table, "summary ranks the worst layers"


def test_isolated_sqnr_names_the_layer_with_a_bad_range(model_path) -> None:
    import onnx

    from edgeres.calibrate.api import _Subset, joint_evaluation_from_qdq
    from edgeres.calibrate.qdq import qdq_model, weighted_nodes
    from edgeres.calibrate.stats import observed_tensors

    model = onnx.load(str(model_path))
    data = tiny_dataset(8)
    hists = collect_statistics(model, data)
    scales = {n: max(h.absmax, 1e-6) / 127 for n, h in hists.items()}
    users: dict[str, list[str]] = {}
    for node in weighted_nodes(model):
        users.setdefault(node.input[0], []).append(node.name)
    target_input, [target] = next((t, u) for t, u in list(users.items())[3:] if len(u) == 1 and t in scales)
    scales[target_input] *= 40  # a range 40x too wide: that layer's own error jumps
    joint = joint_evaluation_from_qdq(model, qdq_model(model, scales), scales, _Subset(data, 8), 4)
    worst = min((v, n) for n, v in joint.isolated_sqnr.items() if v is not None)[1]
    assert worst == target, f"isolated SQNR should blame {target}, blamed {worst}"
    assert observed_tensors(model), "model has observed tensors"


def test_merged_half_histograms_equal_the_whole() -> None:
    rng = np.random.default_rng(0)
    a_vals, b_vals = rng.normal(0, 1, 5000).astype(np.float32), rng.normal(0, 7, 3000).astype(np.float32)
    a, b, whole = Histogram.empty(), Histogram.empty(), Histogram.empty()
    update_histogram(a, a_vals.copy())
    update_histogram(b, b_vals.copy())
    update_histogram(whole, np.concatenate([a_vals, b_vals]))
    merged = merge_histograms(a, b)
    assert merged.exponent == whole.exponent and np.array_equal(merged.counts, whole.counts), "exact merge"
    assert merged.absmax == whole.absmax, "absmax of the merge"


def test_half_histograms_leave_the_statistics_unchanged(model_path) -> None:
    import onnx

    model = onnx.load(str(model_path))
    plain = collect_statistics(model, tiny_dataset(10), batch_size=3)
    halves = ({}, {})
    split = collect_statistics(model, tiny_dataset(10), batch_size=4, halves=halves)
    for name, hist in plain.items():
        assert np.array_equal(hist.counts, split[name].counts) and hist.exponent == split[name].exponent, name
    assert sum(h.total for h in halves[0].values()) > 0 and sum(h.total for h in halves[1].values()) > 0, "both halves filled"


def test_report_has_stability_evaluation_and_warnings(result) -> None:
    report = json.loads(result.report_path.read_text())
    stab = report["stability"]
    assert {"max_rel_change", "median_rel_change", "stable", "verdict", "worst"} <= set(stab), f"stability keys: {stab}"
    assert "more images" in stab["verdict"], "one line whether more images would change the result"
    from edgeres.calibrate.api import EVAL_SAMPLES

    assert report["evaluation"]["samples"] == min(24, EVAL_SAMPLES) and report["evaluation"]["data"] == "calibration data", (
        report["evaluation"])
    warnings = " | ".join(report["warnings"])
    assert "smaller than the recommended" in warnings, f"small calibration set warns: {warnings}"
    assert "no --eval-data" in warnings, f"evaluation on the calibration data warns: {warnings}"


def test_eval_size_bounds_and_explicit_eval_data_has_no_fallback_warning(model_path, tmp_path) -> None:
    bounded = calibrate(model_path, tiny_dataset(24), tmp_path / "b", progress=False, eval_size=5)
    assert bounded.report["model"]["samples"] == 5 and bounded.report["evaluation"]["of"] == 24, bounded.report["evaluation"]
    with_eval = calibrate(model_path, tiny_dataset(24), tmp_path / "e", progress=False, eval_dataset=tiny_dataset(12, seed=7))
    assert with_eval.report["model"]["samples"] == 12, "explicit evaluation data is used whole"
    assert not any("no --eval-data" in w for w in with_eval.report["warnings"]), "no fallback warning with eval data"


def test_check_data_flags_saturation_well_above_the_calibration_set(model_path, tmp_path) -> None:
    calib = tiny_dataset(16)
    same = calibrate(model_path, calib, tmp_path / "s", progress=False, check_dataset=tiny_dataset(16, seed=3))
    bright = ArrayDataset(tiny_dataset(16, seed=3).images * 6.0, None)
    drift = calibrate(model_path, calib, tmp_path / "d", progress=False, check_dataset=bright)
    assert drift.report["check_data"]["flagged"], "6x brighter deployment images saturate well above calibration"
    assert any("--check-data" in w for w in drift.report["warnings"]), "and a warning says so"
    assert len(same.report["check_data"]["flagged"]) < len(drift.report["check_data"]["flagged"]), "similar images flag fewer"
    row = drift.report["check_data"]["tensors"][0]
    assert {"calibration_saturated_pct", "check_saturated_pct"} <= set(row), f"per-tensor shares: {row}"


def test_front_end_warnings_random_weights_and_class_folders() -> None:
    from edgeres.pipeline import ModelSource, front_end_warnings
    from edgeres.recipe import Recipe

    recipe = Recipe(input_size=(28, 28), in_channels=1, resize=None, mean=(0.5,), std=(0.5,), num_classes=10)

    class Folder:
        source, classes = "photos/", ["cat", "dog", "fish"]

    random = ModelSource(None, recipe, {"arch": "resnet18", "weights": None, "weights_sha256": None})
    warnings = " | ".join(front_end_warnings(random, [Folder()]))
    assert "random weights" in warnings, f"no --weights warns: {warnings}"
    assert "3 class folders" in warnings and "10 classes" in warnings, f"class-folder mismatch warns: {warnings}"
    trained = ModelSource(None, recipe, {"arch": "resnet18", "weights": "w.pt", "weights_sha256": "x"})
    assert front_end_warnings(trained, []) == [], "weights and no folders: no warning"


def test_progress_lines_one_per_phase() -> None:
    from edgeres._progress import PhaseProgress, progress_mode

    assert progress_mode(False, io.StringIO()) == "lines", "non-TTY stderr: lines"
    assert progress_mode(True) == "lines", "--quiet: lines"
    stream = io.StringIO()
    with PhaseProgress("lines", stream) as shown:
        with shown.phase("statistics", 4) as advance:
            advance(4)
        with shown.phase("evaluation", 2) as advance:
            advance(2)
    lines = stream.getvalue().splitlines()
    assert len(lines) == 2 and lines[0].startswith("phase statistics: 4 samples in"), lines
    rich_stream = io.StringIO()
    with PhaseProgress("rich", rich_stream) as shown:
        with shown.phase("statistics", 4) as advance:
            advance(4)
        with shown.phase("export ONNX"):
            pass
    text = rich_stream.getvalue()
    assert "statistics" in text and "export ONNX" in text and "ETA" in text, f"one rich display with every phase: {text!r}"


def test_cli_non_tty_prints_one_line_per_phase_and_fits_width(tmp_path) -> None:
    rgb = np.repeat(tiny_dataset(16, seed=4).images, 3, axis=1)
    rgb = np.pad(rgb, ((0, 0), (0, 0), (2, 2), (2, 2)))
    np.savez(tmp_path / "rgb.npz", images=rgb, labels=np.arange(16) % 10)
    result = CliRunner().invoke(cli, ["calibrate", "--arch", "resnet20", "--calib-data", str(tmp_path / "rgb.npz"),
                                      "--eval-size", "8", "-o", str(tmp_path / "o")], env={"COLUMNS": "70"})
    assert result.exit_code == 0, result.output
    for phase in ("model (fold)", "data loading", "export ONNX", "statistics", "evaluation + per-layer", "serialize"):
        assert f"phase {phase}:" in result.stderr, f"no line for phase {phase}: {result.stderr}"
    assert "warning: resnet20 has random weights" in result.stderr, "random weights warn in calibrate as in build"
    table = result.stdout.split("\nwrote ")[0]
    too_wide = [ln for ln in table.splitlines() if len(ln) > 70]
    assert not too_wide, f"summary lines wider than the terminal: {too_wide[:3]}"
    assert "top-1 agreement INT8 vs FP32:" in table and "alone" in table, "labelled numbers, isolated column"
