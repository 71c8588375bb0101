"""Part IV's gradual-pruning page: its table and its sentences from the stored steps."""

from companion.gradual import findings, steps_table


def _step(ratio: float, passed: bool, high: float) -> dict:
    return {
        "ratio": ratio,
        "loss": 0.3,
        "passed": passed,
        "low": 0.0,
        "high": high,
        "one_shot": ratio / 2,
        "eps": 0.01,
    }


def test_findings_follow_the_prediction_step_by_step() -> None:
    falling = [_step(1.0, True, 0.2), _step(0.5, True, 0.1), _step(0.25, False, 0.05)]
    text = findings(falling)
    assert "down to 0.5000 of the weights in 1 step (the next step, to 0.2500, failed)" in text
    assert "falls step by step" in text and "as the paper says" in text
    level = [_step(1.0, True, 0.0056), _step(0.5, True, 0.0056)]
    text = findings(level)
    assert "stays level" in text and "(every step run passed)" in text
    assert "is not seen here" in text
    rising = [_step(1.0, True, 0.1), _step(0.5, True, 0.6)]
    text = findings(rising)
    assert "does not fall at every step" in text and "not below the ratio reached" in text


def test_the_table_has_a_row_per_step() -> None:
    shown = steps_table([_step(1.0, True, 0.2), _step(0.5, False, 0.1)])
    assert [row[0] for row in shown.rows] == ["0", "1"] and shown.rows[1][3] == "no"
