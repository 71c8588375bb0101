"""The typed reports of a study and the agreement counts over several studies."""

import dataclasses
from types import SimpleNamespace

import pytest

from prunelimit.report import (
    BudgetRecord,
    LimitReport,
    OneShotRecord,
    Prediction,
    RetrainedRecord,
    agreement,
)


def one_shot(limit: float) -> OneShotRecord:
    return OneShotRecord([limit], [0.1], [0.9], 0.1, 0.9, 0.05, limit, [limit], [0.1], [0.9])


def report(rho, bounds, spread, one_shot_limit, retrained, rule="abs") -> LimitReport:
    """A report with what the agreement counts read: the prediction with its bounds (the spread
    over Lanczos truncations and probes, or a certified interval), the kinematic bounds of an
    SLQ prediction, and the actual limits."""
    confidence = 0.99 if rule == "ggn" else None
    prediction = Prediction(rule, rho, spread[0], spread[1], 100, 80, 3, confidence)
    spectral = None
    if rule != "ggn":  # only the kinematic bounds are read
        spectral = SimpleNamespace(prediction=SimpleNamespace(lower=bounds[0], upper=bounds[1]))
    return LimitReport(
        curvature=rule,
        num_examples=100,
        prediction=prediction,
        training=None,
        dense=None,
        spectral=spectral,
        certified=None,
        one_shot=one_shot(one_shot_limit),
        retrained=None if retrained is None else RetrainedRecord(retrained, 0.15, []),
        folder=None,
        provenance={},
    )


def test_agreement_counts_tasks_by_hand() -> None:
    reports = [
        # one-shot inside the bounds and the spread; retrained 0.25 outside the spread
        report(0.5, (0.45, 0.55), (0.3, 0.6), 0.5, 0.25),
        # one-shot 0.6 outside both; the whole spread is below the retrained limit 0.4
        report(0.3, (0.29, 0.31), (0.25, 0.35), 0.6, 0.4),
        # the spread 0.1-0.8 holds both limits: it says neither conservative nor optimistic
        report(0.8, (0.79, 0.81), (0.1, 0.8), 0.4, 0.2),
        # the whole spread is above the one-shot limit: conservative at every step and probe
        report(0.5, (0.49, 0.51), (0.45, 0.55), 0.4, 0.1),
    ]
    counts = agreement(reports)
    assert counts.pop("predicted / actual one-shot") == pytest.approx([1.0, 0.5, 2.0, 1.25])
    assert counts.pop("predicted / actual retrained") == pytest.approx([2.0, 0.75, 4.0, 5.0])
    assert counts == {
        "tasks": 4,
        "one-shot limit inside the kinematic bounds": 1,
        "one-shot limit inside the spread": 2,
        "retrained limit inside the spread": 1,
        "whole spread above the one-shot limit (conservative)": 1,
        "whole spread below the retrained limit (too optimistic)": 1,
    }


def test_certified_predictions_are_counted_without_kinematic_bounds() -> None:
    """A Gauss-Newton study has a certified interval and no kinematic bounds; a study without
    retraining counts nowhere for the retrained limit."""
    reports = [
        report(0.5, (0, 0), (0.4, 0.6), 0.5, None, rule="ggn"),
        report(0.2, (0, 0), (0.1, 0.3), 0.5, 0.35, rule="ggn"),
    ]
    counts = agreement(reports)
    assert "one-shot limit inside the kinematic bounds" not in counts
    assert counts["predicted / actual retrained"][1] == pytest.approx(0.2 / 0.35)
    assert counts["one-shot limit inside the spread"] == 1
    assert counts["retrained limit inside the spread"] == 0
    assert counts["whole spread below the retrained limit (too optimistic)"] == 1


def test_the_retrained_limit_counted_is_the_largest_budget_s() -> None:
    """With the budget doubled (1 epoch: 0.25, 2 epochs: 0.5), the 2-epoch limit is compared,
    as the summary's verdicts compare it."""
    budget = BudgetRecord([1, 2], [0.25, 0.5], [0.2, 0.4], [[], []], converged=False)
    doubled = dataclasses.replace(report(0.5, (0.45, 0.55), (0.4, 0.6), 0.5, 0.25), budget=budget)
    counts = agreement([doubled])
    assert counts["predicted / actual retrained"] == pytest.approx([1.0])
    assert counts["retrained limit inside the spread"] == 1
    assert counts["whole spread below the retrained limit (too optimistic)"] == 0


def test_a_prediction_says_what_its_bounds_are() -> None:
    spread = Prediction("abs", 0.4, 0.3, 0.45, 5000, 80, 3, None)
    certified = Prediction("ggn", 0.4, 0.39, 0.41, 5000, 120, 4, 0.99)
    assert "spread over Lanczos truncations and probes" in str(spread)
    assert "N = 5,000" in str(spread) and "80 Lanczos steps x 3 probes" in str(spread)
    assert "certified, 99% confidence" in str(certified)
    assert "Gauss-Newton" in str(certified) and "|lambda|" in str(spread)
