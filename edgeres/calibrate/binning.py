"""The histogram kernel: ``|x|`` into a power-of-two-range histogram, exactly, with numpy only.

Each value's bin is ``floor(|x| * bins / 2**exponent)``; when a batch exceeds the range, the range
doubles as often as needed and pairs of bins merge exactly (:func:`_widen`), so the counts do not
depend on batching or order (see :mod:`edgeres.calibrate.stats`). The binning is numpy's cheapest
exact route: a power-of-two multiply straight into a reused intp buffer, then ``np.bincount``
(about 2.4 ns per value on the 2-core CI machine; ``np.bincount`` holds the GIL, which is why
:mod:`edgeres.calibrate.workers` bins in processes), and no absolute value on tensors that cannot
be negative.
"""

from __future__ import annotations

import math
from typing import Iterator

import numpy as np

from edgeres.calibrate.calibrators import Histogram
from edgeres.errors import CalibrationError

SCRATCH_ELEMENTS = 1 << 18  # values binned at once: a 2 MiB intp index buffer per worker, reused


class _Scratch:
    """One reusable intp buffer for bin indices: no fresh allocation (and page faults) per tensor."""

    def __init__(self) -> None:
        self.buffer = np.empty(0, dtype=np.intp)

    def take(self, size: int) -> np.ndarray:
        if self.buffer.size < size:
            self.buffer = np.empty(size, dtype=np.intp)
        return self.buffer[:size]


def _range_from_max(hist: Histogram, batch_max: float, *, name: str, values: np.ndarray) -> None:
    """Grow ``hist``'s absmax and power-of-two range to cover ``batch_max`` (the max of ``|values|``)."""
    if not math.isfinite(batch_max):
        bad = int(np.count_nonzero(~np.isfinite(values)))
        raise CalibrationError(
            f"tensor {name!r} holds {bad} NaN/Inf value(s) during calibration; "
            "check the input data (NaN/Inf pixels?) or the weights (overflow?)"
        )
    hist.absmax = max(hist.absmax, batch_max)
    if batch_max > 0:
        exponent = math.frexp(batch_max)[1]  # batch_max < 2**exponent
        if hist.exponent is None:
            hist.exponent = exponent
        elif exponent > hist.exponent:
            _widen(hist, exponent)


def _count_bins(hist: Histogram, magnitudes: np.ndarray, scratch: _Scratch) -> None:
    """Add ``magnitudes`` (``|x|``, all below ``2**hist.exponent``; any layout) to ``hist.counts``.

    Each value's bin is ``floor(|x| * bins / 2**exponent)``: the multiply by a power of two is exact
    in float32 and numpy writes it straight into a reused intp buffer (``casting="unsafe"``
    truncates, which is floor for these non-negative values), piece by piece of at most
    :data:`SCRATCH_ELEMENTS` values, so no float copy and no fresh index array is made.
    """
    size = magnitudes.size
    if size == 0:
        return
    if hist.exponent is None:  # only zeros so far: they belong in bin 0 at any range
        hist.counts[0] += size
        return
    factor = np.float32(math.ldexp(1.0, -hist.exponent) * hist.bins)
    for piece in _pieces(magnitudes, SCRATCH_ELEMENTS):
        index = scratch.take(piece.size).reshape(piece.shape)
        np.multiply(piece, factor, out=index, casting="unsafe")
        hist.counts += np.bincount(index.reshape(-1), minlength=hist.bins)


def _pieces(values: np.ndarray, block: int) -> Iterator[np.ndarray]:
    """``values`` (samples along axis 0, each contiguous) in views of at most about ``block`` values."""
    rows = values.reshape(len(values), -1) if values.ndim > 1 else values.reshape(1, -1)
    per_row = rows.shape[1]
    if per_row >= block:
        for row in rows:
            for first in range(0, per_row, block):
                yield row[first:first + block]
        return
    group = block // per_row
    for first in range(0, len(rows), group):
        yield rows[first:first + group]


def update_histogram(hist: Histogram, values: np.ndarray, *, name: str = "tensor", consume: bool = False,
                     nonnegative: bool = False, scratch: _Scratch | None = None) -> None:
    """Add ``|values|`` to ``hist`` in place (see module docstring for exactness).

    Args:
        hist: the histogram to update.
        values: activations of any shape.
        name: tensor name for error messages.
        consume: allow overwriting ``values`` (a float32 array the caller no
            longer needs) instead of copying it; saves one pass and one allocation.
        nonnegative: ``values`` cannot be negative (a ReLU's output: ONNX ``Relu`` is
            ``max(0, x)``), so ``|values|`` is ``values`` and no absolute value is taken.
        scratch: index buffer to reuse (a statistics pass keeps one per worker).

    Raises:
        CalibrationError: ``values`` holds NaN or Inf (the message names the tensor).
    """
    magnitudes = _magnitudes(np.asarray(values), consume=consume, nonnegative=nonnegative)
    if magnitudes.size == 0:
        return
    _range_from_max(hist, float(magnitudes.max()), name=name, values=magnitudes)
    _count_bins(hist, magnitudes, scratch or _Scratch())


def _magnitudes(values: np.ndarray, *, consume: bool, nonnegative: bool) -> np.ndarray:
    """``|values|`` as float32: ``values`` itself when non-negative, in place when it may be consumed."""
    if values.dtype != np.float32:
        values = values.astype(np.float32)
        consume = True
    if nonnegative:
        return values
    if consume and values.flags.writeable and values.flags.c_contiguous:
        return np.abs(values, out=values)
    return np.abs(values)


def update_halves(halves: tuple[Histogram, Histogram], values: np.ndarray, first: int, *, name: str,
                  consume: bool = False, nonnegative: bool = False, scratch: _Scratch | None = None) -> None:
    """Add sample ``i`` of ``values`` (global index ``first + i``) to ``halves[(first + i) % 2]``.

    The halves are strided views of the samples (no copy); each keeps its own range, as if it
    had been histogrammed alone.
    """
    magnitudes = _magnitudes(np.asarray(values), consume=consume, nonnegative=nonnegative)
    if magnitudes.size == 0:
        return
    even = first % 2
    for hist, part in ((halves[0], magnitudes[even::2]), (halves[1], magnitudes[1 - even::2])):
        if part.size == 0:
            continue
        _range_from_max(hist, float(part.max()), name=name, values=part)
        _count_bins(hist, part, scratch or _Scratch())


def _widen(hist: Histogram, exponent: int) -> None:
    shift = exponent - hist.exponent
    bins = hist.bins
    merged = np.zeros_like(hist.counts)
    if shift >= int(math.log2(bins)):
        merged[0] = hist.counts.sum()
    else:
        group = 1 << shift
        merged[: bins // group] = hist.counts.reshape(bins // group, group).sum(axis=1)
    hist.counts = merged
    hist.exponent = exponent


def merge_histograms(a: Histogram, b: Histogram) -> Histogram:
    """The exact histogram of the values of ``a`` and ``b`` together (power-of-two ranges merge exactly)."""
    if a.bins != b.bins:
        raise CalibrationError(f"cannot merge histograms of {a.bins} and {b.bins} bins")
    out = Histogram.empty(a.bins)
    out.absmax = max(a.absmax, b.absmax)
    exponents = [h.exponent for h in (a, b) if h.exponent is not None]
    if not exponents:
        out.counts = a.counts + b.counts  # zeros only: bin 0
        return out
    out.exponent = max(exponents)
    for h in (a, b):
        part = Histogram(h.counts.copy(), h.exponent, h.absmax)
        if part.exponent is None:
            out.counts += part.counts  # zeros belong in bin 0 at any range
            continue
        if part.exponent < out.exponent:
            _widen(part, out.exponent)
        out.counts += part.counts
    return out
