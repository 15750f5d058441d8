"""Streaming statistics: bit-identical across batch sizes and orders, clear errors on bad data."""

from __future__ import annotations

import numpy as np
import onnx
import pytest

from edgeres.calibrate.calibrators import CALIBRATORS, compute_amax
from edgeres.calibrate.stats import collect_statistics, histograms_from_arrays, observed_tensors
from edgeres.errors import CalibrationError, DataError
from tests.calib_fixtures import ArrayDataset, export_tiny_resnet, tiny_dataset


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return onnx.load(str(export_tiny_resnet(tmp_path_factory.mktemp("m") / "m.onnx")))


def test_histograms_identical_across_batch_sizes_and_order(model) -> None:
    data = tiny_dataset(40)
    reference = collect_statistics(model, data, batch_size=40)
    shuffled = ArrayDataset(data.images[np.random.default_rng(0).permutation(40)])
    for dataset, batch_size in ((data, 1), (data, 7), (shuffled, 16)):
        hists = collect_statistics(model, dataset, batch_size=batch_size)
        for name, ref in reference.items():
            assert ref.exponent == hists[name].exponent, f"{name}: range differs at batch size {batch_size}"
            assert np.array_equal(ref.counts, hists[name].counts), f"{name}: counts differ at batch size {batch_size}"
            for method in CALIBRATORS:
                assert compute_amax(ref, method) == compute_amax(hists[name], method), f"{name}/{method} amax differs"


def test_range_growth_merges_bins_exactly() -> None:
    rng = np.random.default_rng(3)
    parts = [rng.normal(scale=s, size=5000).astype(np.float32) for s in (0.01, 1.0, 300.0)]
    whole = histograms_from_arrays([{"t": np.concatenate(parts)}], ["t"])["t"]
    streamed = histograms_from_arrays([{"t": p} for p in parts], ["t"])["t"]
    assert np.array_equal(whole.counts, streamed.counts), "growing the range batch by batch must equal one pass"


def test_observed_tensors_cover_conv_and_add_inputs(model) -> None:
    names = set(observed_tensors(model))
    for node in model.graph.node:
        if node.op_type in ("Conv", "Gemm"):
            assert node.input[0] in names, f"input of {node.name} is not observed"
        if node.op_type == "Add":
            assert set(node.input) <= names, f"an input of {node.name} is not observed"


def test_wrong_shape_and_nan_data(model) -> None:
    rgb = ArrayDataset(np.zeros((2, 3, 28, 28), np.float32))
    with pytest.raises(DataError, match=r"expects \(1, 28, 28\)"):
        collect_statistics(model, rgb)
    bad = tiny_dataset(4).images
    bad[2, 0, 3, 3] = np.inf
    with pytest.raises(DataError, match="NaN/Inf"):
        collect_statistics(model, ArrayDataset(bad), batch_size=2)
    with pytest.raises(CalibrationError, match="empty"):
        collect_statistics(model, ArrayDataset(np.zeros((0, 1, 28, 28), np.float32)))


def test_activation_overflow_names_tensor(model) -> None:
    huge = np.full((1, 1, 28, 28), 3e38, np.float32)  # finite input that overflows inside the net
    with pytest.raises(CalibrationError, match="tensor '.*' holds"):
        collect_statistics(model, ArrayDataset(huge))


def test_memory_cap_splits_batches_without_changing_results(model) -> None:
    data = tiny_dataset(12)
    whole = collect_statistics(model, data, batch_size=12)
    capped = collect_statistics(model, data, batch_size=12, max_activation_bytes=1)  # one sample per call
    for name in whole:
        assert np.array_equal(whole[name].counts, capped[name].counts), f"{name}: memory cap changed the histogram"


def _naive_histogram(values: np.ndarray, bins: int) -> tuple[int | None, np.ndarray]:
    """The definition the fast kernel must match: floor(|x| * bins / 2**e) with the smallest e above max |x|."""
    import math

    magnitudes = np.abs(values.astype(np.float64)).reshape(-1)
    counts = np.zeros(bins, dtype=np.int64)
    top = float(magnitudes.max()) if magnitudes.size else 0.0
    if top == 0:
        counts[0] = magnitudes.size
        return None, counts
    exponent = math.frexp(top)[1]
    np.add.at(counts, np.floor(magnitudes * bins / 2.0**exponent).astype(np.int64), 1)
    return exponent, counts


@pytest.mark.parametrize("nonnegative", [False, True])
def test_fast_kernel_matches_the_definition_and_halves_split_by_global_index(nonnegative: bool) -> None:
    from edgeres.calibrate.calibrators import Histogram
    from edgeres.calibrate.binning import SCRATCH_ELEMENTS, _Scratch, update_halves, update_histogram

    rng = np.random.default_rng(7)
    values = rng.normal(scale=3.0, size=(9, 4, 5, 5)).astype(np.float32)
    values[2] *= 40.0  # a later sample widens the range of one half only
    if nonnegative:
        values = np.maximum(values, 0)
    hist = Histogram.empty(256)
    update_histogram(hist, values.copy(), consume=True, nonnegative=nonnegative, scratch=_Scratch())
    exponent, counts = _naive_histogram(values, 256)
    assert hist.exponent == exponent and np.array_equal(hist.counts, counts), "fast kernel differs from floor(|x|*bins/2**e)"
    halves = (Histogram.empty(256), Histogram.empty(256))
    scratch = _Scratch()
    update_halves(halves, values[:3].copy(), 0, name="t", consume=True, nonnegative=nonnegative, scratch=scratch)
    update_halves(halves, values[3:].copy(), 3, name="t", nonnegative=nonnegative, scratch=scratch)
    for k, half in enumerate(halves):
        exponent, counts = _naive_histogram(values[k::2], 256)
        assert half.exponent == exponent, f"half {k}: range {half.exponent} != {exponent}"
        assert np.array_equal(half.counts, counts), f"half {k}: counts differ from the samples {k}, {k}+2, ..."
    assert SCRATCH_ELEMENTS >= 1024, "the index buffer must hold at least a few rows"


def test_rows_larger_than_the_scratch_block_are_binned_whole(monkeypatch) -> None:
    import edgeres.calibrate.binning as stats
    from edgeres.calibrate.calibrators import Histogram

    monkeypatch.setattr(stats, "SCRATCH_ELEMENTS", 7)  # forces one row per block, rows longer than the block
    values = np.random.default_rng(1).normal(size=(5, 30)).astype(np.float32)
    hist = Histogram.empty(256)
    stats.update_histogram(hist, values.copy())
    assert np.array_equal(hist.counts, _naive_histogram(values, 256)[1]), "blocked binning lost or doubled values"


def test_nonnegative_tensors_follow_relu_through_pooling(model) -> None:
    from edgeres.calibrate.stats import nonnegative_tensors

    found = nonnegative_tensors(model)
    relu_outputs = {n.output[0] for n in model.graph.node if n.op_type == "Relu"}
    assert relu_outputs <= found, "every Relu output is non-negative"
    conv_outputs = {n.output[0] for n in model.graph.node if n.op_type == "Conv"}
    assert not (conv_outputs & found), "a Conv output can be negative and must get its absolute value taken"
    pooled = {n.output[0] for n in model.graph.node if n.op_type in ("GlobalAveragePool", "MaxPool") and n.input[0] in relu_outputs}
    assert pooled <= found, "pooling a ReLU output stays non-negative"


def test_histogram_workers_do_not_change_the_result(model, monkeypatch) -> None:
    import edgeres.calibrate.stats as stats

    data = tiny_dataset(9)
    results = []
    for workers in (1, 3):
        monkeypatch.setattr(stats, "HISTOGRAM_WORKERS", workers)
        monkeypatch.setattr(stats.os, "cpu_count", lambda: 8)
        halves: tuple[dict, dict] = ({}, {})
        results.append((collect_statistics(model, data, batch_size=4, halves=halves), halves))
    (one, one_halves), (three, three_halves) = results
    for name in one:
        assert np.array_equal(one[name].counts, three[name].counts), f"{name}: worker count changed the histogram"
        for k in range(2):
            assert np.array_equal(one_halves[k][name].counts, three_halves[k][name].counts), f"{name}: half {k} differs"


def test_balanced_groups_cover_every_tensor_once() -> None:
    from edgeres.calibrate.stats import _balanced_groups

    sizes = [100, 1, 50, 50, 3, 0]
    groups = _balanced_groups(sizes, 2)
    assert sorted(i for g in groups for i in g) == list(range(len(sizes))), f"each index exactly once: {groups}"
    loads = sorted(sum(sizes[i] for i in g) for g in groups)
    assert loads == [101, 103], f"largest-first greedy split (each to the lighter group), got loads {loads}"
    assert _balanced_groups([5], 4) == [[0]], "no empty groups"


def test_worker_processes_give_the_in_process_histograms(model, monkeypatch) -> None:
    """The shared-memory process path (forced on with a threshold of 0) against the thread path, halves included."""
    import edgeres.calibrate.stats as stats

    monkeypatch.setattr(stats.os, "cpu_count", lambda: 2)  # two groups, so two worker processes
    data = tiny_dataset(11)
    threads_halves: tuple[dict, dict] = ({}, {})
    in_process = collect_statistics(model, data, batch_size=4, halves=threads_halves, process_min_values=None)
    processes_halves: tuple[dict, dict] = ({}, {})
    processes = collect_statistics(model, data, batch_size=4, halves=processes_halves, process_min_values=0)
    assert set(processes) == set(in_process), "the process path must observe the same tensors"
    for name in in_process:
        assert processes[name].exponent == in_process[name].exponent, f"{name}: range differs between the paths"
        assert np.array_equal(processes[name].counts, in_process[name].counts), f"{name}: counts differ between the paths"
        for k in range(2):
            assert np.array_equal(processes_halves[k][name].counts, threads_halves[k][name].counts), f"{name}: half {k} differs"
    plain = collect_statistics(model, data, batch_size=5, process_min_values=0)
    for name in in_process:
        assert np.array_equal(plain[name].counts, in_process[name].counts), f"{name}: no-halves process path differs"


def test_worker_process_errors_name_the_tensor(model, monkeypatch) -> None:
    import edgeres.calibrate.stats as stats

    monkeypatch.setattr(stats.os, "cpu_count", lambda: 2)
    images = tiny_dataset(3).images.copy()
    images[2] = 3e38  # finite, but overflows inside the net: only the third call (a worker's) sees it
    calls = []
    original = stats.ProcessBinning.bin
    monkeypatch.setattr(stats.ProcessBinning, "bin", lambda self, n, first: calls.append(first) or original(self, n, first))
    with pytest.raises(CalibrationError, match="tensor '.*' holds"):
        collect_statistics(model, ArrayDataset(images), batch_size=1, max_activation_bytes=1, process_min_values=0)
    assert calls == [1, 2], f"samples 1 and 2 must be binned by the worker processes, binned: {calls}"


def test_statistics_fall_back_to_threads_where_workers_cannot_start(model, monkeypatch) -> None:
    import edgeres.calibrate.stats as stats

    monkeypatch.setattr(stats.os, "cpu_count", lambda: 2)
    data = tiny_dataset(6)
    expected = collect_statistics(model, data, batch_size=3, process_min_values=None)

    def refuse(*args, **kwargs):
        raise OSError("no /dev/shm here")

    monkeypatch.setattr(stats, "ProcessBinning", refuse)
    fallback = collect_statistics(model, data, batch_size=3, process_min_values=0)
    for name in expected:
        assert np.array_equal(expected[name].counts, fallback[name].counts), f"{name}: thread fallback differs"


def test_a_worker_that_dies_at_start_leaves_the_pass_to_threads(model, monkeypatch) -> None:
    import edgeres.calibrate.stats as stats
    import edgeres.calibrate.workers as workers

    monkeypatch.setattr(stats.os, "cpu_count", lambda: 2)
    monkeypatch.setattr(workers, "_WORKER_COMMAND", "raise SystemExit(3)")  # as if edgeres were not importable there
    data = tiny_dataset(7)
    halves: tuple[dict, dict] = ({}, {})
    fallback = collect_statistics(model, data, batch_size=3, halves=halves, process_min_values=0)
    expected_halves: tuple[dict, dict] = ({}, {})
    expected = collect_statistics(model, data, batch_size=3, halves=expected_halves, process_min_values=None)
    for name in expected:
        assert np.array_equal(expected[name].counts, fallback[name].counts), f"{name}: fallback lost or doubled a call"
        for k in range(2):
            assert np.array_equal(expected_halves[k][name].counts, halves[k][name].counts), f"{name}: half {k} differs"
