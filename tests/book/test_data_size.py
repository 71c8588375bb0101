"""The data-size study's figure and table draw stored points; its trend fits a power law."""

import math

import matplotlib.pyplot as plt
import numpy as np
import pytest

from companion.data_size import DataSizeConfig, findings, trend
from companion.data_size_figures import points_table, prediction_vs_size
from prunelimit.plotting import MIN_TEXT_PX, smallest_text_px


def points() -> dict[str, list[dict]]:
    """Stand-ins with the stored points' keys: G's midpoints follow 1e-5 N^0.8 exactly."""
    ggn = []
    for n in (1_000, 2_000, 5_000, 10_000):
        rho = 1e-5 * n**0.8
        ggn.append(
            {
                "N": n,
                "rho": rho,
                "low": 0.9 * rho,
                "high": 1.1 * rho,
                "rank_bound": 9 * n / 1.6e6,
                "num_steps": 100,
                "num_probes": 1,
                "num_products": 100,
                "seconds": 12.0,
            }
        )
    hessian = [
        {
            "N": n,
            "rho": 0.4,
            "low": 0.2,
            "high": 0.45,
            "num_steps": 128,
            "num_probes": 2,
            "seconds": 30.0,
        }
        for n in (1_000, 5_000)
    ]
    return {"G": ggn, "|H|": hessian}


def test_trend_recovers_an_exact_power_law():
    slope, intercept = trend(points()["G"])
    assert slope == pytest.approx(0.8)
    assert intercept == pytest.approx(math.log10(1e-5))


def test_figure_text_is_readable_and_table_has_a_row_per_point():
    figure = prediction_vs_size(points(), {"one-shot limit": 0.37}, extrapolate_to=60_000)
    assert smallest_text_px(figure) >= MIN_TEXT_PX
    plt.close(figure)
    assert len(points_table(points()).rows) == 6


def test_profiles_grow_towards_the_whole_training_set():
    smoke, cpu, full = (DataSizeConfig.for_profile(p) for p in ("smoke", "cpu", "full"))
    assert max(smoke.ggn_sizes) < max(cpu.ggn_sizes) < max(full.ggn_sizes) == 60_000
    assert np.all(np.diff(cpu.ggn_sizes) > 0)


def test_findings_state_the_stored_numbers():
    text = findings(points(), {"one-shot limit": 0.37, "retrained limit": 0.19}, 60_000)
    assert "N^0.80" in text and "Every interval stays at or below the rank bound" in text
    assert f"{1e-5 * 60_000**0.8:.3f}" in text  # the trend carried to the whole training set
    widest = 0.2 * 1e-5 * 10_000**0.8  # G's widest interval: 0.2 rho at the largest N
    assert f"at least {0.25 / widest:.0f} times wider" in text
