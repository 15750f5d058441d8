"""Accuracy budget: leave the most sensitive layers unquantized until INT8 is good enough.

Sensitivity of a layer is the logits SQNR gained by leaving it (its input and
weight Q/DQ) out, measured on a subset of the evaluation data. Layers are then
left out greedily, most sensitive first, until the budget holds on the whole
evaluation set. Left-out layers run at FP16/FP32 on TensorRT; their MACs are
reported as the speed cost.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from edgeres.errors import CalibrationError


@dataclasses.dataclass(frozen=True)
class Budget:
    """``max_accuracy_drop`` in top-1 points, or ``min_agreement`` in percent (one or both)."""

    max_accuracy_drop: float | None = None
    min_agreement: float | None = None

    def __post_init__(self) -> None:
        if self.max_accuracy_drop is not None and not 0 <= self.max_accuracy_drop <= 100:
            raise CalibrationError(f"--max-accuracy-drop is in top-1 points, 0 to 100; received {self.max_accuracy_drop}")
        if self.min_agreement is not None and not 0 < self.min_agreement <= 100:
            raise CalibrationError(f"--min-agreement is a percentage in (0, 100]; received {self.min_agreement}")

    @property
    def active(self) -> bool:
        return self.max_accuracy_drop is not None or self.min_agreement is not None

    def describe(self) -> tuple[str, str]:
        parts_kind, parts_limit = [], []
        if self.max_accuracy_drop is not None:
            parts_kind.append("max_accuracy_drop_pts")
            parts_limit.append(f"{self.max_accuracy_drop:g}")
        if self.min_agreement is not None:
            parts_kind.append("min_agreement_pct")
            parts_limit.append(f"{self.min_agreement:g}")
        return "+".join(parts_kind), "+".join(parts_limit)

    def met(self, metrics: Mapping[str, Any]) -> bool:
        ok = True
        if self.max_accuracy_drop is not None:
            drop_pts = 100 * (metrics["accuracy_ref"] - metrics["accuracy"])
            ok &= drop_pts <= self.max_accuracy_drop + 1e-9
        if self.min_agreement is not None:
            ok &= 100 * metrics["top1_agreement"] >= self.min_agreement - 1e-9
        return bool(ok)

    def score(self, metrics: Mapping[str, Any]) -> float:
        """Higher is better: accuracy for a drop budget, else agreement (SQNR breaks ties)."""
        key = metrics["accuracy"] if self.max_accuracy_drop is not None else metrics["top1_agreement"]
        return float(key) + 1e-6 * float(min(metrics["sqnr_db"], 200.0))


@dataclasses.dataclass(frozen=True)
class BudgetOutcome:
    """What the budget search found: the layers left out, whether the budget holds, and how it got there.

    ``sensitivity`` ((layer, SQNR gain dB), most sensitive first) and ``trail``
    (metrics after each step) are empty when the all-INT8 model met the budget.
    """

    excluded: tuple[str, ...]
    met: bool
    sensitivity: tuple[tuple[str, float], ...] = ()
    trail: tuple[dict[str, Any], ...] = ()


def budget_report(budget: Budget, outcome: BudgetOutcome | None, macs: Mapping[str, int]) -> dict[str, Any] | None:
    """The report's ``budget`` section (None without a budget), with the MACs left at higher precision."""
    if outcome is None:
        return None
    kind, limit = budget.describe()
    total = sum(macs.values())
    left = sum(macs.get(n, 0) for n in outcome.excluded)
    return {
        "kind": kind,
        "limit": limit,
        "met": outcome.met,
        "excluded_layers": list(outcome.excluded),
        "sensitivity_db": [{"layer": n, "sqnr_gain_db": g} for n, g in outcome.sensitivity],
        "trail": list(outcome.trail),
        "excluded": [{"layer": n, "macs": macs.get(n, 0)} for n in outcome.excluded],
        "macs_left_at_higher_precision": left,
        "macs_left_pct": 100 * left / total if total else 0.0,
    }


def rank_by_sensitivity(
    layers: Sequence[str],
    logits_without: Callable[[Sequence[str]], np.ndarray],
    reference: np.ndarray,
) -> list[tuple[str, float]]:
    """(layer, SQNR gain in dB when left unquantized), most sensitive first; ties keep graph order."""
    from edgeres.evaluate import sqnr_db

    base = sqnr_db(reference, logits_without([]))
    gains = []
    for index, layer in enumerate(layers):
        gain = sqnr_db(reference, logits_without([layer])) - base
        gains.append((-min(gain, 1e9), index, layer, gain))
    gains.sort()
    return [(layer, float(gain)) for _, _, layer, gain in gains]


def search_exclusions(
    ranking: Sequence[str],
    evaluate: Callable[[Sequence[str]], dict[str, Any]],
    budget: Budget,
    first: dict[str, Any],
) -> tuple[list[str], dict[str, Any], bool, list[dict[str, Any]]]:
    """Greedy search; returns (excluded layers, their metrics, met, trail of every step)."""
    trail = [{"excluded": [], **_short(first)}]
    if budget.met(first):
        return [], first, True, trail
    best_excluded: list[str] = []
    best = first
    excluded: list[str] = []
    for layer in ranking:
        excluded = excluded + [layer]
        metrics = evaluate(excluded)
        trail.append({"excluded": list(excluded), **_short(metrics)})
        if budget.score(metrics) > budget.score(best):
            best, best_excluded = metrics, list(excluded)
        if budget.met(metrics):
            return list(excluded), metrics, True, trail
    return best_excluded, best, False, trail


def _short(metrics: Mapping[str, Any]) -> dict[str, Any]:
    return {k: metrics.get(k) for k in ("top1_agreement", "accuracy", "sqnr_db")}
