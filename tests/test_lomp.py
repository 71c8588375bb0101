"""Part III's experiment runner: task configs under every profile (the full one down to reading
its data), stage caching, a killed run that resumes, and the actual limits' definitions."""

import json
import subprocess
import sys
import time
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch

from prunelimit import experiment_figures
from prunelimit.data import NUM_CLASSES, MissingDataError
from prunelimit.experiment_figures import agreement, prediction_spread
from prunelimit.experiments.lomp import (
    PLAIN_STAGES,
    STAGES,
    TASKS,
    Experiment,
    describe_run,
    describe_task,
    plain_variant,
    profile_differences,
    run,
    task_config,
)
from prunelimit.experiments.profiles import PROFILES
from prunelimit.lanczos import SLQResult
from prunelimit.limit import LanczosSpread, critical_distances, predict_limit
from prunelimit.models import build_model, count_parameters
from prunelimit.plotting import MIN_TEXT_PX, smallest_text_px


@pytest.mark.parametrize("profile", PROFILES)
def test_every_task_has_a_config_under_every_profile(profile: str) -> None:
    configs = [task_config(task, profile) for task in TASKS]
    assert len({c.hash for c in configs}) == len(TASKS), "tasks must not share results"
    assert all(c.profile == profile for c in configs)
    if profile != "full":
        assert all(not c.data.download for c in configs), "cpu and smoke never download"
    with pytest.raises(ValueError, match="unknown task"):
        task_config("lenet-mnist", profile)


def test_the_hash_is_stable_and_plain_training_differs_only_in_the_penalty() -> None:
    config = task_config("fc5-cifar10", "cpu")
    assert task_config("fc5-cifar10", "cpu").hash == config.hash
    plain = plain_variant(config)
    assert plain.hash != config.hash and plain.recipe.coefficient == 0.0
    assert profile_differences(plain, config) == [["recipe.coefficient", 0.0, 5e-5]]


@pytest.mark.parametrize("task", list(TASKS))
def test_full_profile_starts_up_to_reading_its_data(
    task: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The paper's setting: model at full width for the data's shape, the authors' recipe; it
    stops only at the missing data set, with instructions (no network in the tests)."""
    config = task_config(task, "full")
    side = 64 if config.data.name == "tinyimagenet" else 32
    assert config.data.image_size == side and config.width == 1.0 and config.data.augment
    assert config.recipe.epochs == 200 and config.recipe.momentum == 0.9
    assert config.recipe.batch_size == 128 and config.recipe.coefficient == TASKS[task].coefficient
    if config.model.startswith("resnet"):
        assert (config.recipe.lr, config.recipe.warmup_epochs) == (0.1, 5)
        assert config.recipe.schedule == "cosine"
    else:
        assert (config.recipe.lr, config.recipe.schedule) == (0.01, "constant")
    with torch.device("meta"):  # full-size models without allocating their weights
        model = build_model(config.model, 3, side, NUM_CLASSES[config.data.name], config.width)
    assert count_parameters(model)["prunable"] > 1_000_000
    monkeypatch.setenv("PRUNELIMIT_DATA", str(tmp_path / "data"))
    monkeypatch.setenv("PRUNELIMIT_RESULTS", str(tmp_path / "results"))
    no_download = config.__class__(**{**config.__dict__, "data": config.data.__class__(
        **{**config.data.__dict__, "download": False})})  # fmt: skip
    with pytest.raises(MissingDataError, match="PRUNELIMIT_DATA"):
        run(no_download, progress=False)


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, Path]:
    root = tmp_path_factory.mktemp("lomp")
    config = task_config("resnet18-tinyimagenet", "smoke")
    return run(config, root=root, progress=False), root


def test_a_run_stores_every_stage_and_reloads_it(smoke_run: tuple[dict, Path]) -> None:
    result, root = smoke_run
    config = task_config("resnet18-tinyimagenet", "smoke")
    folder = config.folder(root)
    for stage in STAGES:
        stored = json.loads((folder / f"{stage}.json").read_text())
        assert stored["result"] == result[stage]
    before = {p: p.stat().st_mtime_ns for p in folder.glob("*.json")}
    assert run(config, root=root, progress=False) == result
    assert {p: p.stat().st_mtime_ns for p in folder.glob("*.json")} == before


def test_the_one_shot_limit_is_where_the_fixed_loss_leaves_the_tolerance(smoke_run) -> None:
    result, _ = smoke_run
    dense, sweep = result["dense"], result["one_shot"]
    threshold = sweep["dense_loss"] + sweep["tolerance"]
    assert sweep["tolerance"] == dense["eps"] and sweep["dense_loss"] == dense["fixed_loss"]
    failing = [r for r, loss in zip(sweep["ratios"], sweep["losses"], strict=True)
               if loss > threshold]  # fmt: skip
    # the smoke model may be poorly trained and its curve not monotone: the limit is the smallest
    # evaluated ratio above every failing one, whatever passes below
    above_failing = [r for r in sweep["ratios"] if not failing or r > max(failing)]
    assert sweep["limit"] == min(above_failing)


def test_the_retrained_limit_is_a_passing_trial_at_or_below_one_shot(smoke_run) -> None:
    result, _ = smoke_run
    retrained = result["retrained"]
    assert retrained["limit"] <= result["one_shot"]["limit"]
    for trial in retrained["trials"]:
        assert trial["passed"] == (trial["loss"] <= retrained["threshold"])
        assert trial["nonzero"] <= trial["k"], "retraining must keep pruned weights at zero"
    passed = [t["ratio"] for t in retrained["trials"] if t["passed"]]
    if passed:
        assert retrained["limit"] == min(passed)


def test_the_stored_prediction_is_recomputable_from_the_stored_spectrum(smoke_run) -> None:
    result, _ = smoke_run
    limit, dense = result["limit"], result["dense"]
    spectrum = SLQResult.from_dict(limit["spectrum"])
    assert spectrum.dimension == dense["dimension"]
    prediction = limit["prediction"]
    assert prediction["lower"] <= prediction["rho"] <= prediction["upper"]
    # the theory's allowed distance at the predicted ratio is the measured R there
    allowed = critical_distances(
        spectrum,
        dense["dimension"],
        dense["eps"],
        np.array([prediction["rho"]]),
        zero_row_share=prediction["zero_row_share"],
    )
    assert allowed[0] == pytest.approx(prediction["R"], rel=1e-6)


def test_the_stored_spread_is_the_stored_predictions_over_steps_and_probes(smoke_run) -> None:
    """The prediction at every truncation, per probe and for the mean, is stored; the spread is
    their range from half the steps to all, around the stored prediction of either rule."""
    limit = smoke_run[0]["limit"]
    spectrum = SLQResult.from_dict(limit["spectrum"])
    num_steps = len(spectrum.tridiagonals[0].diagonal)
    by_steps, spread = limit["by_steps"], prediction_spread(limit)
    assert by_steps["steps"] == list(range(1, num_steps + 1))
    assert np.shape(by_steps["per_probe"]) == (spectrum.num_probes, num_steps)
    assert by_steps["rho"][-1] == limit["prediction"]["rho"] == spread.rho
    assert prediction_spread(limit, "flat").rho == limit["prediction_flat"]["rho"]
    assert (spread.num_steps, spread.from_steps) == (num_steps, num_steps // 2)
    late = [m >= spread.from_steps for m in by_steps["steps"]]
    values = np.concatenate([np.compress(late, by_steps["rho"]),
                             np.compress(late, by_steps["per_probe"], axis=1).ravel()])  # fmt: skip
    assert (spread.low, spread.high) == (values.min(), values.max())
    text = experiment_figures.prediction_text(limit)
    assert str(spread) in text and str(prediction_spread(limit, "flat")) in text


def stored_result(rho, bounds, spread, one_shot, retrained) -> dict:
    """The fields of a stored LOMP result that the agreement counts read."""
    prediction = {"rho": rho, "lower": bounds[0], "upper": bounds[1]}
    stored_spread = {"rho": rho, "low": spread[0], "high": spread[1], "num_steps": 80}
    stored_spread |= {"num_probes": 3, "from_steps": 40, "negative": "abs", "steps": []}
    stored_spread |= {"mean": [], "per_probe": []}
    return {
        "limit": {"prediction": prediction, "spread": stored_spread},
        "one_shot": {"limit": one_shot},
        "retrained": {"limit": retrained},
    }


def test_agreement_counts_tasks_by_hand() -> None:
    results = {
        # one-shot inside the bounds and the spread; retrained 0.25 outside the spread
        "a": stored_result(0.5, (0.45, 0.55), (0.3, 0.6), 0.5, 0.25),
        # one-shot 0.6 outside both; the whole spread is below the retrained limit 0.4
        "b": stored_result(0.3, (0.29, 0.31), (0.25, 0.35), 0.6, 0.4),
        # the spread 0.1-0.8 holds both limits: it says neither conservative nor optimistic
        "c": stored_result(0.8, (0.79, 0.81), (0.1, 0.8), 0.4, 0.2),
        # the whole spread is above the one-shot limit: conservative at every step and probe
        "d": stored_result(0.5, (0.49, 0.51), (0.45, 0.55), 0.4, 0.1),
    }
    counts = agreement(results)
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


def test_the_difference_to_an_actual_limit_is_given_over_the_spread() -> None:
    spread = LanczosSpread(0.5499, 0.10, 0.70, 80, 3, 40, "abs", [], [], [])
    assert experiment_figures._difference(spread, 0.5509) == "+0.00 (-0.45 to +0.15)"
    assert experiment_figures._difference(spread, 0.05) == "+0.50 (+0.05 to +0.65)"


def test_critical_distances_invert_the_threshold_equation() -> None:
    rng = np.random.default_rng(0)
    eigenvalues, weights = rng.exponential(1.0, 400), rng.normal(size=400)
    prediction = predict_limit(eigenvalues, weights, eps=0.5)
    allowed = critical_distances(eigenvalues, 400, 0.5, np.array([prediction.rho, 0.999, 1.0]))
    assert allowed[0] == pytest.approx(prediction.R, rel=1e-8)
    assert allowed[1] > allowed[0] and allowed[2] == np.inf


def test_plain_stages_skip_the_spectrum(tmp_path: Path) -> None:
    config = plain_variant(task_config("resnet18-tinyimagenet", "smoke"))
    result = run(config, PLAIN_STAGES, root=tmp_path, progress=False)
    assert set(result) == set(PLAIN_STAGES)
    assert not (config.folder(tmp_path) / "limit.json").exists()
    with pytest.raises(ValueError, match="unknown stages"):
        run(config, ("train", "prune"), root=tmp_path)


def wait_for(path: Path, process: subprocess.Popen, timeout: float = 300) -> None:
    start = time.monotonic()
    while not path.exists():
        if process.poll() is not None:
            pytest.fail(f"the run ended (exit {process.returncode}) before {path.name} appeared")
        if time.monotonic() - start > timeout:
            process.kill()
            pytest.fail(f"{path.name} did not appear within {timeout} s")
        time.sleep(0.01)


def test_a_killed_run_resumes_without_recomputing_or_corrupting(tmp_path: Path) -> None:
    """Kill -9 mid-training, then again after the first stage; the final run keeps both."""
    config = task_config("fc12-cifar10", "smoke")  # its SLQ takes seconds: room to kill in
    folder = config.folder(tmp_path)
    script = (
        "import sys; from prunelimit.experiments.lomp import run, task_config; "
        "run(task_config('fc12-cifar10', 'smoke'), root=__import__('pathlib').Path(sys.argv[1]),"
        " progress=False)"
    )

    def start() -> subprocess.Popen:
        return subprocess.Popen([sys.executable, "-c", script, str(tmp_path)])

    first = start()
    wait_for(folder / "model.pt", first)  # one epoch of two checkpointed
    first.kill()
    first.wait()
    assert not (folder / "train.json").exists()
    second = start()
    wait_for(folder / "train.json", second)
    second.kill()
    second.wait()
    kept = {p.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in folder.glob("*.json")}
    assert "train.json" in kept and "limit.json" not in kept, "killed before the spectrum"
    for _, payload in kept.values():
        json.loads(payload)  # every stored file is complete
    history = json.loads(kept["train.json"][1])["result"]["history"]
    assert [row["epoch"] for row in history] == [0, 1]
    result = run(config, root=tmp_path, progress=False)
    assert set(result) == set(STAGES)
    for name, (mtime, payload) in kept.items():
        path = folder / name
        assert path.stat().st_mtime_ns == mtime and path.read_bytes() == payload, name


def test_experiment_loads_nothing_for_stored_stages(smoke_run, monkeypatch) -> None:
    """Rendering the book from stored results needs neither the data nor the model."""
    _, root = smoke_run
    experiment = Experiment(task_config("resnet18-tinyimagenet", "smoke"), root=root)
    monkeypatch.setattr(
        "prunelimit.experiments.lomp.load_views",
        lambda spec: pytest.fail("data were read although every stage was stored"),
    )
    assert experiment.stage("limit")["prediction"]["rho"] > 0


def test_a_run_is_described_by_what_it_ran_with_d_as_measured(smoke_run) -> None:
    config = task_config("resnet18-tinyimagenet", "smoke")
    ours, paper = describe_run(config), describe_run(task_config(config.task, "full"))
    assert ours.dimension == smoke_run[0]["dense"]["dimension"]
    assert (ours.model, ours.width, ours.data, ours.classes) == ("ResNet18", "1/16", "MNIST-5k", 10)
    assert ours.image == "1 x 28 x 28 padded to 32 x 32" and ours.training_images == 600
    assert (paper.data, paper.image, paper.classes, paper.width) == (
        "TinyImageNet",
        "3 x 64 x 64",
        200,
        "",
    )
    text = describe_task(config)
    assert "**The paper:** ResNet18 on TinyImageNet" in text and "profile `smoke`" in text
    assert ours.label == "ResNet18 (1/16) on MNIST-5k"


@pytest.mark.parametrize("task", list(TASKS))
def test_each_task_page_title_names_the_papers_data_and_the_cpu_stand_in(task: str) -> None:
    page = Path(__file__).parents[1] / "book" / "experiments" / f"{task.replace('-', '_')}.md"
    title = next(line for line in page.read_text().splitlines() if line.startswith("# "))
    paper, cpu = (describe_run(task_config(task, p)) for p in ("full", "cpu"))
    assert f"{paper.data} in the paper" in title and f"{cpu.data} in the cpu profile" in title
    assert title.startswith(f"# {paper.model.split('-')[0]}:")


def test_part_three_figures_are_readable_and_show_the_limits_definition(smoke_run) -> None:
    result = smoke_run[0]
    config = task_config("resnet18-tinyimagenet", "smoke")
    one_shot = result["one_shot"]
    figures = [
        experiment_figures.training_plot(result["train"]),
        experiment_figures.spectrum_plot(result["limit"], result["dense"]["eps"], 1.0),
        experiment_figures.steps_plot(result["limit"]),
        experiment_figures.pruning_plot(result, one_shot),
        experiment_figures.distance_plot(result),
        experiment_figures.summary_plot({config.task: result}, {config.task: config}),
    ]
    for figure in figures:
        assert smallest_text_px(figure) >= MIN_TEXT_PX
    loss_axes = figures[3].axes[0]
    threshold = one_shot["dense_loss"] + one_shot["tolerance"]
    assert any(
        list(line.get_ydata()) == [threshold, threshold] for line in loss_axes.get_lines()
    ), "the loss tolerance is drawn"
    plotted = next(line for line in loss_axes.get_lines() if line.get_label() == "LOMP")
    assert list(plotted.get_xdata()) == one_shot["ratios"], "the fixed-view (training) loss"
    zoom = figures[3].axes[2]
    assert zoom.get_xlim()[0] < result["limit"]["prediction"]["lower"] < zoom.get_xlim()[1]
    spread = prediction_spread(result["limit"])
    labels = [text.get_text() for text in figures[3].legends[0].get_texts()]
    assert f"predicted {spread.describe(compact=True)}" in labels
    steps_axes = figures[2].axes[0]
    assert not steps_axes.containers, "no standard-error bars: probes and truncations are drawn"
    curves = [line for line in steps_axes.get_lines() if len(line.get_xdata()) > 1]
    assert len(curves) == spread.num_probes + 1, "each probe and their mean"
    assert spread.describe(compact=True) in steps_axes.get_title()
    (bars,) = figures[5].axes[0].containers[:1]  # the first task's prediction and its spread
    segment = bars.lines[2][0].get_segments()[0]
    assert [x for x, _ in segment] == pytest.approx([spread.low, spread.high])
    plt.close("all")


def test_the_comparison_counts_the_tasks_where_lomp_prunes_further(smoke_run) -> None:
    result, config = smoke_run[0], task_config("resnet18-tinyimagenet", "smoke")
    limit = result["one_shot"]["limit"]
    sparser = {**result, "one_shot": {**result["one_shot"], "limit": limit / 2}}
    table = experiment_figures.comparison_table(
        {config.task: sparser}, {config.task: result}, {config.task: config}
    )
    assert table.caption == "LOMP prunes further than plain pruning in 1 of 1 tasks"
    assert table.rows[0][-1] == "2.0x"
    swapped = experiment_figures.comparison_table(
        {config.task: result}, {config.task: sparser}, {config.task: config}
    )
    assert swapped.caption.endswith("in 0 of 1 tasks")
