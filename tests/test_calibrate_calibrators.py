"""Calibrators on synthetic distributions whose optimal thresholds are known or brute-forced."""

from __future__ import annotations

import numpy as np
import pytest

from edgeres.calibrate.calibrators import (
    CALIBRATORS,
    Histogram,
    amax_entropy,
    amax_max,
    amax_mse,
    amax_percentile,
    compute_amax,
    kl_divergences,
    quantize_weight,
    scale_from_amax,
    weight_scales,
)
from edgeres.calibrate.stats import histograms_from_arrays, update_histogram
from edgeres.errors import CalibrationError


def _hist(values: np.ndarray, bins: int = 4096) -> Histogram:
    return histograms_from_arrays([{"t": values}], ["t"], bins)["t"]


def _kl_reference(counts: np.ndarray, i: int, levels: int = 128) -> float:
    """Literal loop version of TensorRT's published entropy search (no smoothing)."""
    p = counts[:i].astype(np.float64).copy()
    p[i - 1] += counts[i:].sum()
    sliced = counts[:i].astype(np.float64)
    m = i // levels
    q = np.zeros(i)
    for j in range(levels):
        start, end = j * m, (i if j == levels - 1 else (j + 1) * m)
        nonzero = p[start:end] > 0
        if nonzero.sum():
            q[start:end][nonzero] = sliced[start:end].sum() / nonzero.sum()
    p /= p.sum()
    if q.sum() == 0 or np.any((p > 0) & (q == 0)):
        return np.inf
    q /= q.sum()
    mask = p > 0
    return float(np.sum(p[mask] * np.log(p[mask] / q[mask])))


def test_kl_vectorized_matches_loop() -> None:
    rng = np.random.default_rng(1)
    for values in (rng.laplace(size=200_000), rng.normal(size=50_000), np.maximum(rng.normal(size=80_000), 0)):
        hist = _hist(values.astype(np.float32))
        used = hist.used_bins()
        thresholds = np.arange(128, used + 1, 37)
        fast = kl_divergences(hist.counts[:used], thresholds)
        slow = np.array([_kl_reference(hist.counts[:used], int(i)) for i in thresholds])
        finite = np.isfinite(slow)
        assert np.array_equal(np.isfinite(fast), finite), "vectorized KL disagrees on which thresholds are infinite"
        np.testing.assert_allclose(fast[finite], slow[finite], rtol=1e-7, atol=1e-10, err_msg="vectorized KL differs from the loop")


def test_max_is_exact_absmax() -> None:
    values = np.array([0.5, -3.25, 2.0, 1e-3], dtype=np.float32)
    assert amax_max(_hist(values)) == 3.25, "max calibrator must return the exact absolute maximum"


def test_percentile_matches_numpy_within_one_bin() -> None:
    rng = np.random.default_rng(2)
    values = rng.normal(size=400_000).astype(np.float32)
    hist = _hist(values)
    for pct in (99.0, 99.9, 99.99):
        expected = np.percentile(np.abs(values), pct)
        got = amax_percentile(hist, pct)
        assert abs(got - expected) <= hist.width + 1e-9, f"percentile {pct}: {got} vs numpy {expected} (bin {hist.width})"


def test_mse_near_bruteforce_optimum() -> None:
    rng = np.random.default_rng(3)
    for values in (rng.laplace(scale=1.0, size=300_000), rng.normal(size=300_000)):
        values = values.astype(np.float32)
        hist = _hist(values)

        def mse(t: float) -> float:
            s = t / 127
            return float(np.mean((np.clip(np.rint(values / s), -127, 127) * s - values) ** 2))

        grid = np.linspace(0.2, 1.0, 161) * np.abs(values).max()
        best = min(mse(t) for t in grid)
        got = amax_mse(hist)
        assert mse(got) <= 1.03 * best, f"MSE at calibrated {got:.3f} is {mse(got):.3e}, brute-force best {best:.3e}"
        assert got < 0.9 * np.abs(values).max(), "MSE calibrator should clip the long tail"


def test_entropy_clips_laplace_tail_and_keeps_uniform_range() -> None:
    rng = np.random.default_rng(4)
    laplace = rng.laplace(size=1_000_000).astype(np.float32)
    amax = amax_entropy(_hist(laplace))
    assert 4.0 < amax < 0.8 * np.abs(laplace).max(), f"entropy threshold {amax} for Laplace(1) should clip the tail"
    uniform = rng.uniform(-1, 1, size=500_000).astype(np.float32)
    amax_u = amax_entropy(_hist(uniform))
    assert amax_u > 0.97, f"entropy threshold {amax_u} for U(-1,1) should keep (nearly) the whole range"


def test_entropy_agrees_with_bruteforce_loop() -> None:
    rng = np.random.default_rng(5)
    values = np.maximum(rng.normal(size=300_000), 0).astype(np.float32) ** 1.5
    hist = _hist(values)
    used = hist.used_bins()
    counts = hist.counts[:used].copy()
    counts[0] = 0  # bin 0 (the exact zeros) is left out of the search
    slow = [_kl_reference(counts, i) for i in range(128, used + 1)]
    best_i = 128 + int(np.argmin(slow))
    expected = min(best_i * hist.width, hist.absmax) if best_i < used else hist.absmax
    assert amax_entropy(hist) == pytest.approx(expected), "vectorized entropy search picked another threshold than the loop"


def test_zero_tensor_and_unknown_method() -> None:
    hist = _hist(np.zeros(100, dtype=np.float32))
    for method in CALIBRATORS:
        assert compute_amax(hist, method) == 0.0, f"{method} of an all-zero tensor must be 0"
    assert scale_from_amax(0.0) == pytest.approx(1 / 127), "zero amax must still give a positive scale"
    with pytest.raises(CalibrationError, match="unknown calibration method"):
        compute_amax(hist, "minmax2")
    with pytest.raises(CalibrationError, match="percentile"):
        amax_percentile(hist, 0.0)


def test_nan_in_activation_names_tensor() -> None:
    hist = Histogram.empty()
    with pytest.raises(CalibrationError, match="layer1.conv"):
        update_histogram(hist, np.array([1.0, np.nan], dtype=np.float32), name="layer1.conv")


def test_weight_scales_per_channel() -> None:
    w = np.stack([np.full((2, 3, 3), 0.5), np.zeros((2, 3, 3)), np.linspace(-2, 1, 18).reshape(2, 3, 3)]).astype(np.float32)
    scales = weight_scales(w)
    np.testing.assert_allclose(scales, [0.5 / 127, 1 / 127, 2 / 127], rtol=1e-6, err_msg="per-channel absmax scales")
    q = quantize_weight(w, scales)
    assert q.dtype == np.int8 and q[0].max() == 127 and q[2].min() == -127, "absmax must map to +-127"


def test_entropy_ignores_relu_zero_spike() -> None:
    rng = np.random.default_rng(6)
    relu = np.maximum(rng.normal(size=400_000), 0).astype(np.float32)  # half exact zeros
    hist = _hist(relu)
    assert hist.counts[0] >= int(np.sum(relu == 0)), "exact zeros must land in bin 0"
    amax = amax_entropy(hist)
    assert amax > 0.5 * relu.max(), f"entropy threshold {amax:.3f} of ReLU(N(0,1)) collapsed (absmax {relu.max():.3f})"


def test_entropy_ignores_isolated_spike() -> None:
    rng = np.random.default_rng(7)
    smooth = rng.normal(size=300_000).astype(np.float32)
    spiky = np.concatenate([smooth, np.full(150_000, 0.42, np.float32)])  # a constant background value
    plain, with_spike = amax_entropy(_hist(smooth)), amax_entropy(_hist(spiky))
    assert abs(with_spike - plain) < 0.15 * plain, f"a repeated value moved the threshold from {plain:.3f} to {with_spike:.3f}"
    concentrated = rng.normal(scale=0.01, size=200_000).astype(np.float32)
    concentrated[0] = 1.0  # one far outlier: the bulk fills few bins but is smooth, not a spike
    hist = _hist(concentrated)
    from edgeres.calibrate.calibrators import spike_bins

    assert spike_bins(hist.counts[: hist.used_bins()]).size == 0, "a smooth narrow bulk must not count as spikes"


def test_compute_amax_many_equals_one_call_after_another(monkeypatch) -> None:
    import edgeres.calibrate.calibrators as calibrators

    monkeypatch.setattr("os.cpu_count", lambda: 4)
    rng = np.random.default_rng(5)
    hists = [_hist(rng.normal(scale=s, size=4000).astype(np.float32)) for s in (0.5, 1.0, 3.0, 10.0, 0.01)]
    for method in CALIBRATORS:
        expected = [compute_amax(h, method) for h in hists]
        assert calibrators.compute_amax_many(hists, method) == expected, f"{method}: threaded amax differs or reorders"
    with pytest.raises(CalibrationError, match="unknown calibration method"):
        calibrators.compute_amax_many(hists, "bogus")
