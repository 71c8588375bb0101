"""LimitStudy: objects in, a typed report out, stages stored and reloaded, checked against
independent computations (dense float64 G and eigvalsh, the limit functions called directly)."""

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from prunelimit import study as study_module
from prunelimit.curvature import dense_ggn
from prunelimit.errors import NonFiniteLossError
from prunelimit.lanczos import SLQResult
from prunelimit.limit import flat_weights, predict_limit, prediction_spread
from prunelimit.models import prunable_parameters
from prunelimit.report import LimitReport, placement, verdict
from prunelimit.study import HessianSpec, LimitStudy, PruningSpec, StudyData
from prunelimit.training import Recipe

CLASSES = 3


def _data(seed: int = 0, size: int = 384) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    centres = torch.randn(CLASSES, 6, generator=generator) * 2
    labels = torch.randint(0, CLASSES, (size,), generator=generator)
    return centres[labels] + torch.randn(size, 6, generator=generator), labels


def _model(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(6, 12), nn.Tanh(), nn.Linear(12, CLASSES))


def _study_data() -> StudyData:
    train, test = _data(0), _data(1, 128)
    return StudyData(train=train, fixed=train, curvature=(train[0][:64], train[1][:64]), test=test)


SMALL = {
    "hessian": HessianSpec(num_steps=12, num_probes=2, zero_rows=8, chunk_size=64),
    "pruning": PruningSpec(grid=(0.05, 0.1, 0.2, 0.4, 0.7, 1.0), resolution=1e-2),
    "retrain_epochs": 1,
    "progress": False,
    "device": "cpu",
}


def _study(tmp_path: Path | None, **changes: object) -> LimitStudy:
    options = {"recipe": Recipe(3, 0.1, coefficient=1e-4), "curvature": "abs"} | SMALL
    return LimitStudy(_model(), _study_data(), store=tmp_path, **(options | changes))


@pytest.fixture(scope="module")
def stored(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, LimitReport]:
    folder = tmp_path_factory.mktemp("study")
    return folder, _study(folder).run()


def test_the_report_is_typed_and_holds_every_stage(stored) -> None:
    _, report = stored
    assert isinstance(report, LimitReport)
    assert report.dimension == 6 * 12 + 12 * CLASSES and report.num_examples == 64
    assert report.prediction.rule == "abs" and report.spectral is not None
    assert report.prediction.low <= report.prediction.rho <= report.prediction.high
    assert report.retrained is not None and report.retrained.limit <= report.one_shot.limit
    assert len(report.training.history) == 3 and report.eps > 0
    assert set(report.provenance) >= {"train", "dense", "limit", "one_shot", "retrained"}
    assert "N = 64" in str(report.prediction) and "predicted limit" in str(report)


def test_the_prediction_equals_the_limit_functions_called_directly(stored) -> None:
    folder, report = stored
    study = _study(folder)
    weights = flat_weights(study.weights)
    spectrum = report.spectral.spectrum
    zero = report.spectral.zero_rows.share
    direct = predict_limit(spectrum, weights, report.eps, zero_row_share=zero)
    spread = prediction_spread(spectrum, weights, report.eps, zero_row_share=zero)
    assert report.spectral.prediction == direct
    assert (report.prediction.low, report.prediction.high) == (spread.low, spread.high)
    assert isinstance(spectrum, SLQResult) and spectrum.dimension == report.dimension


def test_a_rerun_loads_every_stage_without_training(stored, monkeypatch) -> None:
    folder, report = stored

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("a stored study must not train again")

    monkeypatch.setattr(study_module, "train", refuse)
    monkeypatch.setattr(study_module, "slq", refuse)
    again = _study(folder).run()
    assert again.prediction == report.prediction and again.one_shot == report.one_shot
    assert again.retrained == report.retrained


def test_stages_are_stored_under_a_key_of_settings_model_and_data(stored) -> None:
    folder, _ = stored
    study = _study(folder)
    assert study.folder == folder / study.key
    stored_dense = json.loads((study.folder / "dense.json").read_text())
    assert set(stored_dense) == {"config", "result", "provenance"}
    assert stored_dense["config"]["curvature"] == "abs"
    other_settings = _study(folder, recipe=Recipe(3, 0.05, coefficient=1e-4))
    other_model = LimitStudy(_model(seed=1), _study_data(), store=folder, **SMALL)
    assert len({study.key, other_settings.key, other_model.key}) == 3
    chunked = _study(folder, hessian=dataclasses.replace(SMALL["hessian"], chunk_size=16))
    assert chunked.key == study.key, "the chunk size cannot change a result"


def test_the_certified_rule_brackets_the_exact_prediction_of_g(tmp_path: Path) -> None:
    report = _study(tmp_path, curvature="ggn").run()
    assert report.certified is not None and report.prediction.confidence == 0.99
    trained = _study(tmp_path, curvature="ggn")  # loads the trained model from its checkpoint
    data = trained.data
    weights = prunable_parameters(trained.model)
    exact = np.linalg.eigvalsh(
        dense_ggn(trained.model, nn.CrossEntropyLoss(), data.curvature, weights).numpy()
    )
    rho = predict_limit(exact, flat_weights(weights), report.eps).rho
    assert report.prediction.low - 1e-9 <= rho <= report.prediction.high + 1e-9
    assert report.prediction.high - report.prediction.low <= 0.01 or not report.certified.converged


def test_a_trained_model_without_training_data_and_without_retraining(tmp_path: Path) -> None:
    data = dataclasses.replace(_study_data(), train=None)
    options = SMALL | {"retrain_epochs": 0}
    report = LimitStudy(_model(), data, curvature="abs", store=tmp_path, **options).run()
    assert report.retrained is None and report.training.history == []
    with pytest.raises(ValueError, match=r"data\.train is None"):
        LimitStudy(_model(), data, recipe=Recipe(1, 0.1), **SMALL)


def test_bad_settings_get_clear_errors() -> None:
    with pytest.raises(ValueError, match="unknown curvature rule 'hessian'"):
        LimitStudy(_model(), _study_data(), curvature="hessian", **SMALL)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"curvature_examples must be in 1\.\.64"):
        LimitStudy(_model(), _study_data(), curvature_examples=65, **SMALL)
    with pytest.raises(ValueError, match="eps must be positive"):
        LimitStudy(_model(), _study_data(), eps=0.0, **SMALL)


def test_without_a_store_nothing_is_written(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    report = _study(None, retrain_epochs=0).run()
    assert report.folder is None and report.provenance == {} and not any(tmp_path.iterdir())


def test_without_test_data_the_test_metrics_are_none_and_stored(tmp_path: Path) -> None:
    data = dataclasses.replace(_study_data(), test=None)
    report = LimitStudy(_model(), data, recipe=Recipe(1, 0.1), store=tmp_path, **SMALL).run()
    assert report.dense.test_loss is None and report.dense.test_accuracy is None
    assert report.one_shot.test_ratios == [] and "test_loss" not in report.training.history[0]
    assert report.retrained is not None and report.retrained.trials[0]["test_loss"] is None
    assert "not measured" in str(report)


def test_data_loaders_give_the_same_tensors_study_and_report_as_tensors() -> None:
    tensors = _study_data()

    def loader(batch: tuple[torch.Tensor, torch.Tensor] | None) -> DataLoader:
        assert batch is not None
        return DataLoader(TensorDataset(*batch), batch_size=50, shuffle=False)

    loaded = StudyData.from_batches(
        loader(tensors.train),
        loader(tensors.fixed),
        list(loader(tensors.curvature)),  # a list of batches works as well
        loader(tensors.test),
    )
    for name in ("train", "fixed", "curvature", "test"):
        ours, reference = getattr(loaded, name), getattr(tensors, name)
        assert isinstance(ours, tuple)
        assert all(torch.equal(a, b) for a, b in zip(ours, reference, strict=True)), name
    options = SMALL | {"retrain_epochs": 0}
    from_tensors = LimitStudy(_model(), tensors, curvature="abs", **options)
    from_loaders = LimitStudy(_model(), loaded, curvature="abs", **options)
    assert from_loaders.key == from_tensors.key
    assert from_loaders.run().prediction == from_tensors.run().prediction


def test_data_that_is_not_a_tensor_pair_gets_a_clear_error() -> None:
    train = _data(0)
    with pytest.raises(TypeError, match=r"StudyData\.fixed must be a tensor pair.*from_batches"):
        StudyData(train=train, fixed=DataLoader(TensorDataset(*train), batch_size=32))
    with pytest.raises(TypeError, match=r"fixed must be a tensor pair .* or an iterable"):
        StudyData.from_batches(None, [train[0], train[1], train[0]])
    with pytest.raises(TypeError, match="at least one batch"):
        StudyData.from_batches(None, [])
    with pytest.raises(ValueError, match=r"fixed: inputs and targets differ in length \(384 and"):
        StudyData.from_batches(None, [(train[0], train[1][:10])])


def test_the_estimate_counts_the_work_that_run_does(tmp_path: Path, monkeypatch) -> None:
    """Before a run: one unit per kind of work, with the counts the run then needs (products
    counted as vector columns through the operator, trials as retrained masks); after it,
    nothing is left. The estimate leaves the study's model as it was."""
    study = _study(tmp_path)
    before = {name: t.clone() for name, t in study._model.state_dict().items()}
    estimate = study.estimate(batches=2)
    assert all(torch.equal(before[n], t) for n, t in study._model.state_dict().items())
    units = {unit.name: unit for unit in estimate.units}
    assert set(units) == {"training epoch", "Hessian product", "retraining epoch", "evaluation"}
    assert all(unit.seconds > 0 for unit in estimate.units) and estimate.seconds > 0
    columns = []
    original = study_module.HessianOperator.matmat

    def counted(operator, vectors: torch.Tensor) -> torch.Tensor:
        columns.append(vectors.shape[1])
        return original(operator, vectors)

    monkeypatch.setattr(study_module.HessianOperator, "matmat", counted)
    report = study.run()
    assert units["training epoch"].count == len(report.training.history) == 3
    assert units["Hessian product"].count == sum(columns) == 12 * 2 + 8
    assert report.retrained is not None
    assert len(report.retrained.trials) <= units["retraining epoch"].count
    assert "total at most" in str(estimate) and "Hessian product" in str(estimate)
    assert _study(tmp_path).estimate(batches=1).units == (), "nothing left: nothing timed"


def test_an_estimate_with_the_certified_bounds_and_the_doubled_budget(tmp_path: Path) -> None:
    estimate = _study(tmp_path).estimate(batches=1, certified=True, budget_doublings=2)
    units = {unit.name: unit for unit in estimate.units}
    assert units["Gauss-Newton product"].count == 2_000, "the whole certified budget"
    assert units["doubled-budget epoch"].count == (5 + 2) * (2 + 4), "every trial at 2 and 4"
    _study(tmp_path).run(certified=True, budget_doublings=2)
    assert _study(tmp_path).estimate(certified=True, budget_doublings=2).units == ()


def test_an_estimate_of_some_stages(tmp_path: Path) -> None:
    estimate = _study(tmp_path).estimate(batches=1, stages=("train", "one_shot"))
    assert [unit.name for unit in estimate.units] == ["training epoch", "evaluation"]
    with pytest.raises(ValueError, match="unknown stages"):
        _study(tmp_path).estimate(stages=("limit",))


def _retraining_rule(study: LimitStudy, needed: dict[int, float]):
    """A stand-in for retraining: the mask keeping k weights passes with a budget of e epochs
    exactly when k / D >= needed[e] (losses 0 and 1e9)."""

    def retrain_at(k: int, epochs: int, rule: str = "magnitude", seed: int = 0) -> dict:
        passed = k / study.dense().dimension >= needed[epochs]
        loss = 0.0 if passed else 1e9
        return {"k": k, "loss": loss, "accuracy": 1.0, "test_loss": loss, "test_accuracy": 1.0}

    return retrain_at


@pytest.mark.parametrize(
    ("needed", "converged"),
    [
        ({1: 0.5, 2: 0.2, 4: 0.2}, True),
        ({1: 0.3, 2: 0.15, 4: 0.15}, True),
        ({1: 0.5, 2: 0.25, 4: 0.125}, False),
        ({1: 0.2, 2: 0.4, 4: 0.4}, True),  # more budget made it worse: searched from the top
    ],
    ids=["stops-moving", "stops-moving-off-grid", "still-moving", "moves-up"],
)
def test_the_retraining_budget_doubles_until_the_limit_stops_moving(
    tmp_path: Path, monkeypatch, needed: dict[int, float], converged: bool
) -> None:
    study = _study(tmp_path, recipe=None, pruning=PruningSpec(grid=(0.9, 1.0), resolution=1e-2))
    monkeypatch.setattr(study, "one_shot", lambda: type("OneShot", (), {"limit": 1.0})())
    monkeypatch.setattr(study, "_retrain_at", _retraining_rule(study, needed))
    budget = study.retraining_budget(doublings=2)
    assert budget is not None and budget.converged is converged
    assert budget.epochs == [1, 2, 4]
    for epochs, limit, failed, trials in zip(
        budget.epochs, budget.limits, budget.failed_below, budget.trials, strict=True
    ):
        assert all(t["passed"] == (t["ratio"] >= needed[epochs]) for t in trials)
        assert failed is not None and failed < needed[epochs] <= limit, (epochs, failed, limit)
    if converged:
        assert budget.limits[2] == budget.limits[1] != budget.limits[0]
        assert len(budget.trials[2]) == 2, "the check retries only the bracket"
    else:
        assert budget.limits[0] > budget.limits[1] > budget.limits[2]
    if needed[2] < needed[1]:  # moved down: the search went on below the old bracket
        size = study.dense().dimension
        run = [int(f.name.split("-")[1]) for f in study.folder.glob("retrain-*-e2.json")]
        assert sorted(run) == [t["k"] for t in budget.trials[1]], "every trial run is listed"
        above = [k for k in run if k / size > budget.failed_below[0]]
        assert len(above) == 1, "above the old bracket only its upper end was retried"
    first = budget.trials[0][0]["k"]
    assert (study.folder / f"retrain-{first}.json").is_file()
    assert (study.folder / f"retrain-{budget.trials[1][0]['k']}-e2.json").is_file()
    assert (
        budget.progress
        == "1 -> 2 -> 4 epochs: " + ("stopped" if converged else "still") + " moving"
    )


def test_a_report_with_both_predictions_and_the_budget(tmp_path: Path) -> None:
    report = _study(tmp_path).run(certified=True, budget_doublings=1)
    assert report.prediction.rule == "abs" and report.certified is not None
    assert report.budget is not None and report.budget.epochs == [1, 2]
    assert report.retrained is not None and report.budget.limits[0] == report.retrained.limit
    assert {"certified", "budget-1"} <= set(report.provenance)


def test_placement_says_where_an_interval_lies_against_a_limit() -> None:
    assert placement(0.1, 0.3, 0.2) == "contains" and placement(0.2, 0.2, 0.2) == "contains"
    assert placement(0.001, 0.006, 0.186) == "31x below" and placement(0, 0, 0.1) == "below"
    assert placement(0.5, 0.6, 0.2) == "2.5x above" and placement(0.1, 0.7, 0.8) == "1.1x below"


def test_the_verdict_follows_the_g_interval_and_the_budget(tmp_path: Path) -> None:
    report = _study(tmp_path).run(certified=True, budget_doublings=1)
    assert report.certified is not None and report.budget is not None
    limit = report.budget.limit

    def judged(low: float, high: float, converged: bool) -> str:
        certified = dataclasses.replace(report.certified, low=low, high=high)
        budget = dataclasses.replace(report.budget, converged=converged)
        return verdict(dataclasses.replace(report, certified=certified, budget=budget))

    holds = judged(limit / 2, limit * 2, True)
    assert holds.startswith("Holds: retrained limit") and "1 -> 2 epochs: stopped moving" in holds
    assert "G over N = 64" in holds and "contains it" in holds and "|H| spread" in holds
    assert judged(limit / 20, limit / 10, True).startswith("Does not hold")
    assert judged(limit / 20, limit / 10, False).startswith("Undecided"), "it may come down"
    assert judged(limit * 2, limit * 3, False).startswith("Does not hold"), "above stays above"
    assert judged(limit / 2, limit * 2, False).startswith("Undecided")


def test_a_study_without_the_certified_prediction_is_not_judged(tmp_path: Path) -> None:
    report = _study(tmp_path).run()
    assert report.certified is None and report.budget is None
    text = verdict(report)
    assert text.startswith("Not judged: retrained limit") and "one budget, not checked" in text


@pytest.mark.parametrize("rule", ["layerwise", "random", "smart-ratio"])
def test_a_baseline_searches_its_own_masks_down_from_the_dense_network(
    stored, tmp_path: Path, rule: str
) -> None:
    """Every trial retrains the rule's mask (as many nonzero weights as it keeps, at most); the
    limit is the smallest passing trial and lies above every failing one found."""
    folder, report = stored
    study = _study(folder)
    record = study.baseline(rule, seed=1)
    size = report.dimension
    assert size // 2 in [t["k"] for t in record.trials], "the first halving from the dense network"
    for trial in record.trials:
        assert trial["nonzero"] <= trial["k"]
        assert trial["passed"] == (trial["loss"] <= record.threshold)
    passing = [t["ratio"] for t in record.trials if t["passed"]]
    failing = [t["ratio"] for t in record.trials if not t["passed"]]
    assert record.limit == min(passing, default=1.0)
    assert all(ratio < record.limit for ratio in failing)
    assert (folder / study.key / f"baseline-{rule}-s1.json").is_file()
    assert any(folder.glob(f"{study.key}/retrain-{rule}-s1-*.json"))
    with pytest.raises(ValueError, match="unknown mask rule"):
        study.baseline("snip")


def test_imp_rounds_follow_the_schedule_until_one_fails(stored) -> None:
    folder, report = stored
    study = _study(folder)
    record = study.imp(fraction=0.5, rewind_epoch=1)
    counts = [trial["k"] for trial in record.trials]
    size = report.dimension
    assert counts == [round(size * 0.5**t) for t in range(1, len(counts) + 1)]
    assert all(trial["passed"] for trial in record.trials[:-1])
    assert all(trial["nonzero"] <= trial["k"] for trial in record.trials)
    passed = [trial["k"] for trial in record.trials if trial["passed"]]
    assert record.limit == min(passed, default=size) / size
    with pytest.raises(ValueError, match="rewind_epoch"):
        study.imp(rewind_epoch=3)
    with pytest.raises(ValueError, match="recipe"):
        _study(None, recipe=None).imp()


def test_a_baseline_that_never_fails_is_censored_at_the_common_floor(
    tmp_path: Path, monkeypatch
) -> None:
    """Every rule searches down to the same floor (one-shot limit / 2^halvings); a search in
    which no trial failed says its limit is only an upper bound."""
    study = _study(tmp_path, recipe=None, pruning=PruningSpec(grid=(0.9, 1.0), resolution=1e-2))
    monkeypatch.setattr(study, "one_shot", lambda: type("OneShot", (), {"limit": 0.5})())
    monkeypatch.setattr(study, "_retrain_at", _retraining_rule(study, {1: 0.0}))
    size = study.dense().dimension
    floor = max(1, round(0.5 * size) >> study.settings.pruning.retrain_halvings)
    record = study.baseline("random", seed=2)
    assert record.censored and all(t["passed"] for t in record.trials)
    assert min(t["k"] for t in record.trials) >= floor > min(t["k"] for t in record.trials) // 2
    # the magnitude rule with another seed is its own trial, not the study's own retrain-<k>
    study.baseline("magnitude", seed=1)
    assert any(tmp_path.glob(f"{study.key}/retrain-magnitude-s1-*.json"))


def test_a_retraining_that_diverges_is_a_failed_trial(tmp_path: Path, monkeypatch) -> None:
    """A mask whose retraining turns the loss non-finite fails instead of stopping the study."""
    study = _study(tmp_path)
    study.dense()

    def diverging(*args, **kwargs) -> None:
        raise NonFiniteLossError("training loss is nan in epoch 0")

    monkeypatch.setattr(study, "_train_copy", diverging)
    trial = study._trial(study.dense().dimension // 2, epochs=1)
    assert trial["loss"] is None and "nan" in trial["diverged"] and trial["passed"] is False
