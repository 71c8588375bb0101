"""Part IV's l2 page: R at fixed ratios, the shrinkage sentence, and the findings' verdicts."""

import math
from types import SimpleNamespace

import pytest

from companion.regularisation import RegularisationConfig, Trained, distance_at, findings


def _report(r10: float, low: float, high: float, one_shot: float) -> SimpleNamespace:
    dense = SimpleNamespace(dimension=1000, distance_k=[0, 100, 500], distance_R=[9.0, r10, 1.0])
    return SimpleNamespace(
        dense=dense,
        certified=SimpleNamespace(low=low, high=high),
        one_shot=SimpleNamespace(limit=one_shot),
        retrained=SimpleNamespace(limit=one_shot / 2),
    )


def _networks(with_l2: SimpleNamespace) -> list[Trained]:
    base = _report(5.0, 0.010, 0.020, 0.30)
    return [
        Trained("l1", 5e-5, 0.0, base),  # type: ignore[arg-type]
        Trained("l1 + l2", 5e-5, 0.05, with_l2),  # type: ignore[arg-type]
        Trained("none", 0.0, 0.0, base),  # type: ignore[arg-type]
        Trained("l2", 0.0, 0.05, with_l2),  # type: ignore[arg-type]
    ]


def test_distance_at_the_nearest_stored_k() -> None:
    report = _report(5.0, 0.0, 0.1, 0.3)
    assert distance_at(report, 0.1) == 5.0 and distance_at(report, 0.4) == 1.0  # type: ignore[arg-type]


def test_shrinkage_is_exp_of_minus_lr_l2_steps() -> None:
    assert RegularisationConfig(l2=0.05).shrinkage(0.01, 632) == pytest.approx(math.exp(-0.316))
    paper = RegularisationConfig(l2=5e-4).shrinkage(0.01, 78_200, momentum=0.9)
    assert paper == pytest.approx(math.exp(-3.91))  # 200 CIFAR-10 epochs of 391 steps


def test_findings_name_what_fell_and_what_did_not() -> None:
    text = findings(_networks(_report(4.0, 0.001, 0.005, 0.20)))
    assert text.count("all fall, as the paper says") == 2
    text = findings(_networks(_report(4.0, 0.015, 0.025, 0.35)))
    assert (
        "R fell; the certified prediction (the two intervals overlap) and the one-shot limit "
        "did not, so the paper's reading holds only in part here" in text
    )
    text = findings(_networks(_report(6.0, 0.015, 0.025, 0.35)))
    assert "none of them fell" in text and "it does not hold here" in text
    text = findings(_networks(_report(4.0, 0.025, 0.030, 0.35)))  # the interval rose
    assert "did not, so the paper's reading holds only in part" in text
