"""Part IV's scaling page: scaled networks change, rescaled ones compute the same function."""

from pathlib import Path

import pytest
import torch

from companion.baselines import BaselinesConfig
from companion.scaling import ScalingConfig, first_pair_rescaled, run, scaled_copy, variants_table
from prunelimit.models import fc5, prunable_parameters


def test_scaling_multiplies_every_weight_and_rescaling_keeps_the_outputs() -> None:
    torch.manual_seed(0)
    model = fc5(32, 10).double()
    inputs = torch.randn(16, 32, dtype=torch.float64)
    scaled = scaled_copy(model, 3.0)
    for before, after in zip(prunable_parameters(model), prunable_parameters(scaled), strict=True):
        assert torch.equal(after, before * 3.0)
    same = first_pair_rescaled(model, 4.0)
    with torch.no_grad():
        assert float((same(inputs) - model(inputs)).abs().max()) <= 1e-12
    ours, theirs = prunable_parameters(same), prunable_parameters(model)
    assert torch.equal(ours[0], theirs[0] * 4.0) and torch.allclose(ours[1], theirs[1] / 4.0)
    assert torch.equal(ours[2], theirs[2])


def test_smoke_variants_keep_eps_when_rescaled_and_scale_r_when_scaled(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PRUNELIMIT_RESULTS", str(tmp_path))
    variants = run(
        ScalingConfig.for_profile("smoke"), BaselinesConfig.for_profile("smoke"), "smoke"
    )
    base = next(v.report for v in variants if v.change == "scaled" and v.factor == 1.0)
    for variant in variants:
        dense = variant.report.dense
        if variant.change == "rescaled":
            assert dense.fixed_loss == pytest.approx(base.dense.fixed_loss, rel=1e-5)
            assert dense.eps == pytest.approx(base.dense.eps, rel=1e-4)
            assert dense.distance_R[0] != pytest.approx(base.dense.distance_R[0], rel=1e-3)
        else:
            expected = variant.factor * base.dense.distance_R[0]
            assert dense.distance_R[0] == pytest.approx(expected, rel=1e-5)
    assert len(variants_table(variants).rows) == len(variants)
