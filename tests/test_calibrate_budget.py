"""Budget section of the calibration report, from a search outcome (pure data; the search runs in test_calibrate_api)."""

from __future__ import annotations

import pytest

from edgeres.calibrate.budget import Budget, BudgetOutcome, budget_report
from edgeres.errors import CalibrationError

MACS = {"a": 300, "b": 100, "c": 600}


def test_no_budget_no_section() -> None:
    assert budget_report(Budget(), None, MACS) is None, "no budget -> no report section"


def test_section_counts_the_macs_left_out() -> None:
    outcome = BudgetOutcome(excluded=("c", "b"), met=False, sensitivity=(("c", 3.0), ("b", 1.5), ("a", 0.0)),
                            trail=({"excluded": []}, {"excluded": ["c"]}, {"excluded": ["c", "b"]}))
    section = budget_report(Budget(max_accuracy_drop=0.5, min_agreement=99.0), outcome, MACS)
    assert (section["kind"], section["limit"]) == ("max_accuracy_drop_pts+min_agreement_pct", "0.5+99"), f"{section}"
    assert section["met"] is False and section["excluded_layers"] == ["c", "b"], f"{section}"
    assert section["sensitivity_db"][0] == {"layer": "c", "sqnr_gain_db": 3.0}, "most sensitive first"
    assert len(section["trail"]) == 3, "every search step is in the trail"
    assert section["excluded"] == [{"layer": "c", "macs": 600}, {"layer": "b", "macs": 100}], f"{section['excluded']}"
    assert section["macs_left_at_higher_precision"] == 700, "600 + 100 MACs left out"
    assert section["macs_left_pct"] == pytest.approx(70.0), "700 of 1000 MACs"


def test_met_at_once_has_empty_search() -> None:
    section = budget_report(Budget(min_agreement=90.0), BudgetOutcome(excluded=(), met=True), {})
    assert section["met"] and section["sensitivity_db"] == [] and section["trail"] == [], f"{section}"
    assert section["macs_left_pct"] == 0.0, "no MACs at all -> 0 %, not a division by zero"


def test_budget_limits_are_checked() -> None:
    with pytest.raises(CalibrationError, match="min-agreement"):
        Budget(min_agreement=0.0)
