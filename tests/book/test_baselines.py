"""Part IV's baselines page: the summary over seeds and its sentences from stored limits."""

import math

import pytest

from companion.baselines import (
    METHODS,
    BaselinesConfig,
    findings,
    limits_table,
    mean_and_error,
    page_introduction,
    seed_config,
    summary_table,
)


def per_seed() -> list[dict[str, float]]:
    """Three seeds of stand-in limits: LOMP retrained at 0.10-0.12, random at 0.5."""
    values = {
        "LOMP (one-shot)": [0.30, 0.32, 0.31],
        "LOMP (retrained)": [0.10, 0.12, 0.11],
        "IMP with rewinding": [0.107, 0.134, 0.107],
        "Smart-Ratio": [0.40, 0.45, 0.42],
        "random": [0.50, 0.50, 0.50],
        "layerwise magnitude": [0.20, 0.21, 0.22],
    }
    bounds = {"G low": 0.0, "G high": 0.005, "random censored": 1.0}
    return [{m: v[i] for m, v in values.items()} | bounds | {"seed": 4 + i} for i in range(3)]


def test_mean_and_its_standard_error_against_the_formula() -> None:
    mean, error = mean_and_error([0.1, 0.2, 0.6])
    assert mean == pytest.approx(0.3)
    assert error == pytest.approx(math.sqrt(((0.2**2 + 0.1**2 + 0.3**2) / 2) / 3))
    assert mean_and_error([0.4]) == (0.4, 0.0)


def test_the_table_has_a_row_per_method_and_the_prediction() -> None:
    shown = limits_table(per_seed())
    assert [row[0] for row in shown.rows] == [*METHODS, "predicted (certified G)"]
    assert shown.columns == ("method", "seed 4", "seed 5", "seed 6", "mean ± s.e.")
    assert shown.rows[1][-1] == "0.1100 ± 0.0058"
    assert shown.rows[METHODS.index("random")][1] == "≤ 0.5000", "censored: an upper bound"


def test_findings_rank_the_methods_and_compare_them_with_lomp() -> None:
    text = findings(per_seed(), 0.2)
    assert text.startswith("From sparsest to densest over 3 seeds: LOMP (retrained); IMP")
    assert "level with IMP with rewinding (0.116)" in text  # 0.006 apart, errors 0.006 and 0.009
    assert "sparser than random (0.500)" in text and "sparser than Smart-Ratio" in text
    assert "keeps 22.0 times as many weights" in text  # 0.110 / 0.005


def test_imp_is_apart_from_lomp_only_beyond_its_step() -> None:
    seeds = [limits | {"IMP with rewinding": 0.0625} for limits in per_seed()]  # s.e. 0
    assert "denser than IMP with rewinding" in findings(seeds, 0.2)  # 0.11 > 1.25 x 0.0625
    coarse = findings(seeds, 0.5)  # 0.11 < 2 x 0.0625: within IMP's step
    assert "level with IMP with rewinding" in coarse and "its step, 2x" in coarse


def test_the_seed_configs_differ_only_in_seed_and_the_training_set() -> None:
    config = BaselinesConfig.for_profile("cpu")
    first, second = (seed_config(config, "cpu", s) for s in config.seeds[:2])
    assert len(config.seeds) >= 3 and (first.seed, second.seed) == (0, 1)
    assert first.data.train_limit == 10_000 and first.recipe == second.recipe
    assert seed_config(BaselinesConfig.for_profile("full"), "full", 0).data.train_limit is None


def test_the_summary_has_a_column_per_network_and_marks_censored_means() -> None:
    other = [limits | {"random censored": 0.0, "G high": 0.01} for limits in per_seed()]
    shown = summary_table({"fc5-cifar10": per_seed(), "alexnet-cifar10": other}, "cpu")
    assert shown.columns == ("method", "FC5 on Fashion-MNIST", "AlexNet (1/8) on Fashion-MNIST")
    assert shown.rows[1] == ("LOMP (retrained)", "0.110 ± 0.006", "0.110 ± 0.006")
    assert shown.rows[METHODS.index("random")][1:] == ("≤ 0.500 ± 0.000", "0.500 ± 0.000")
    assert shown.rows[-1] == ("predicted (certified G)", "0.0000-0.0050", "0.0000-0.0100")


def test_the_baselines_cover_a_fully_connected_and_a_convolutional_network() -> None:
    config = BaselinesConfig.for_profile("cpu")
    models = [seed_config(config, "cpu", 0, task).model for task in config.tasks]
    assert models == ["fc5", "alexnet"] and config.task == "fc5-cifar10"
    alexnet = seed_config(config, "cpu", 2, "alexnet-cifar10")
    assert alexnet.seed == 2 and alexnet.data.train_limit == 10_000


def test_the_page_introduction_names_the_networks_seeds_and_imp_fraction() -> None:
    config = BaselinesConfig.for_profile("cpu")
    text = page_introduction(config, "cpu")
    assert text.count("**This page, profile `cpu`:**") == len(config.tasks) == 2
    assert "Seeds 0, 1, 2: each seed trains its own network." in text
    assert "IMP prunes 50% of the weights left a round." in text
    full = page_introduction(BaselinesConfig.for_profile("full"), "full")
    assert "IMP prunes 20% of the weights left a round." in full
