"""Part III's tasks: task configs under every profile (the full one down to reading its data), the
task studies' stored stages, a killed run that resumes, the actual limits' definitions, and the
figures and tables drawn from the reports."""

import dataclasses
import json
import subprocess
import sys
import time
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch

from companion import experiment_figures
from companion.pipeline import read_template
from companion.profiles import PROFILES, RESULTS_ENV
from companion.tasks import (
    TASKS,
    PlainRun,
    describe_run,
    describe_task,
    plain_run,
    plain_variant,
    profile_differences,
    task_config,
    task_page,
    task_report,
    task_study,
)
from prunelimit.data import NUM_CLASSES, MissingDataError
from prunelimit.lanczos import SLQResult
from prunelimit.limit import critical_distances
from prunelimit.models import build_model, count_parameters
from prunelimit.plotting import MIN_TEXT_PX, smallest_text_px
from prunelimit.report import (
    DenseRecord,
    LimitReport,
    OneShotRecord,
    RetrainedRecord,
    SpectralPrediction,
    TrainingRecord,
    verdict,
)
from prunelimit.store import config_hash
from prunelimit.study import LimitStudy
from tests.book.conftest import BOOK, PROJECT

STAGES = ("train", "dense", "limit", "one_shot", "retrained")
PLAIN_STAGES = ("train", "dense", "one_shot")
SMOKE_TASK = "resnet18-tinyimagenet"


@pytest.mark.parametrize("profile", PROFILES)
def test_every_task_has_a_config_under_every_profile(profile: str) -> None:
    configs = [task_config(task, profile) for task in TASKS]
    assert len({config_hash(c) for c in configs}) == len(TASKS), "tasks must not share results"
    assert all(c.profile == profile for c in configs)
    if profile != "full":
        assert all(not c.data.download for c in configs), "cpu and smoke never download"
    with pytest.raises(ValueError, match="unknown task"):
        task_config("lenet-mnist", profile)


def test_the_hash_is_stable_and_plain_training_differs_only_in_the_penalty() -> None:
    config = task_config("fc5-cifar10", "cpu")
    assert config_hash(task_config("fc5-cifar10", "cpu")) == config_hash(config)
    plain = plain_variant(config)
    assert config_hash(plain) != config_hash(config) and plain.recipe.coefficient == 0.0
    assert profile_differences(plain, config) == [["recipe.coefficient", 0.0, 5e-5]]
    rows = profile_differences(
        dataclasses.replace(task_config("vgg16-cifar10", "cpu"), certified=None),
        task_config("vgg16-cifar10", "full"),
    )
    differing = {row[0]: row[1:] for row in rows}
    assert differing["certified"] == [None, "-"], "a config without certified bounds"
    assert differing["certified.max_products"] == ["-", 2000]


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
    no_download = dataclasses.replace(config, data=dataclasses.replace(config.data, download=False))
    with pytest.raises(MissingDataError, match="PRUNELIMIT_DATA"):
        task_study(no_download, root=tmp_path / "results", progress=False)


@dataclasses.dataclass(frozen=True)
class SmokeRun:
    report: LimitReport
    study: LimitStudy
    root: Path


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory: pytest.TempPathFactory) -> SmokeRun:
    """The smoke task run once through ``task_report``, into a scratch results folder."""
    root = tmp_path_factory.mktemp("tasks")
    config = task_config(SMOKE_TASK, "smoke")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(RESULTS_ENV, str(root))
        report = task_report(config, progress=False)
    study = task_study(config, root=root, progress=False)
    return SmokeRun(report, study, root)


def test_a_study_stores_every_stage_in_its_folder_and_reloads_it(smoke_run: SmokeRun) -> None:
    report, root = smoke_run.report, smoke_run.root
    folder = smoke_run.study.folder
    assert folder == root / "smoke" / "experiments" / SMOKE_TASK / smoke_run.study.key
    assert report.folder == folder and len(folder.name) == 16
    stored = {stage: json.loads((folder / f"{stage}.json").read_text()) for stage in STAGES}
    assert TrainingRecord.from_dict(stored["train"]["result"]) == report.training
    assert DenseRecord.from_dict(stored["dense"]["result"]) == report.dense
    assert OneShotRecord.from_dict(stored["one_shot"]["result"]) == report.one_shot
    assert RetrainedRecord.from_dict(stored["retrained"]["result"]) == report.retrained
    spectral = SpectralPrediction.from_dict(stored["limit"]["result"])
    assert report.spectral is not None and spectral.prediction == report.spectral.prediction
    assert spectral.spread == report.spectral.spread
    for stage in STAGES:
        assert stored[stage]["provenance"]["profile"] == "smoke", stage
    assert set(STAGES) <= set(report.provenance), "each stage's provenance is reported"
    trials = [p.stem for p in folder.glob("retrain-*.json") if "-e" not in p.stem]
    assert sorted(int(name.split("-")[1]) for name in trials) == sorted(
        trial["k"] for trial in report.retrained.trials
    ), "every retraining trial of the study's budget is a stored stage"
    assert report.budget is not None
    doubled = [trial["k"] for trial in report.budget.trials[1]]
    assert all((folder / f"retrain-{k}-e2.json").is_file() for k in doubled)
    before = {p: p.stat().st_mtime_ns for p in folder.glob("*.json")}
    again = smoke_run.study.run()
    assert (again.prediction, again.one_shot, again.retrained) == (
        report.prediction,
        report.one_shot,
        report.retrained,
    )
    assert {p: p.stat().st_mtime_ns for p in folder.glob("*.json")} == before


def test_the_one_shot_limit_is_where_the_fixed_loss_leaves_the_tolerance(
    smoke_run: SmokeRun,
) -> None:
    dense, sweep = smoke_run.report.dense, smoke_run.report.one_shot
    threshold = sweep.dense_loss + sweep.tolerance
    assert sweep.tolerance == dense.eps and sweep.dense_loss == dense.fixed_loss
    failing = [r for r, loss in zip(sweep.ratios, sweep.losses, strict=True) if loss > threshold]
    # the smoke model may be poorly trained and its curve not monotone: the limit is the smallest
    # evaluated ratio above every failing one, whatever passes below
    above_failing = [r for r in sweep.ratios if not failing or r > max(failing)]
    assert sweep.limit == min(above_failing)


def test_the_retrained_limit_is_a_passing_trial_at_or_below_one_shot(smoke_run: SmokeRun) -> None:
    report = smoke_run.report
    retrained = report.retrained
    assert retrained is not None
    assert retrained.limit <= report.one_shot.limit
    for trial in retrained.trials:
        assert trial["passed"] == (trial["loss"] <= retrained.threshold)
        assert trial["nonzero"] <= trial["k"], "retraining must keep pruned weights at zero"
    passed = [t["ratio"] for t in retrained.trials if t["passed"]]
    if passed:
        assert retrained.limit == min(passed)


def test_the_stored_prediction_is_recomputable_from_the_stored_spectrum(
    smoke_run: SmokeRun,
) -> None:
    report = smoke_run.report
    spectral, dense = report.spectral, report.dense
    assert spectral is not None
    assert spectral.spectrum.dimension == dense.dimension
    prediction = spectral.prediction
    assert prediction.lower <= prediction.rho <= prediction.upper
    # the theory's allowed distance at the predicted ratio is the measured R there
    allowed = critical_distances(
        spectral.spectrum,
        dense.dimension,
        dense.eps,
        np.array([prediction.rho]),
        zero_row_share=prediction.zero_row_share,
    )
    assert allowed[0] == pytest.approx(prediction.R, rel=1e-6)
    assert spectral.allowed_distances(np.array([prediction.rho]))[0] == allowed[0]


def test_the_stored_spread_is_the_stored_predictions_over_steps_and_probes(
    smoke_run: SmokeRun,
) -> None:
    """The prediction at every truncation, per probe and for the mean, is stored; the spread is
    their range from half the steps to all, around the stored prediction of either rule; the
    report's prediction is the |lambda| rule's with that spread as its bounds."""
    report = smoke_run.report
    spectral = report.spectral
    assert spectral is not None
    spectrum: SLQResult = spectral.spectrum
    num_steps = len(spectrum.tridiagonals[0].diagonal)
    spread = spectral.spread
    assert spectral.steps == list(range(1, num_steps + 1))
    assert np.shape(spectral.per_probe_by_steps) == (spectrum.num_probes, num_steps)
    assert spectral.rho_by_steps[-1] == spectral.prediction.rho == spread.rho
    assert spectral.spread_flat.rho == spectral.prediction_flat.rho
    assert (spread.num_steps, spread.from_steps) == (num_steps, num_steps // 2)
    late = [m >= spread.from_steps for m in spectral.steps]
    per_probe = np.compress(late, spectral.per_probe_by_steps, axis=1).ravel()
    values = np.concatenate([np.compress(late, spectral.rho_by_steps), per_probe])
    assert (spread.low, spread.high) == (values.min(), values.max())
    prediction = report.prediction
    assert (prediction.rule, prediction.confidence) == ("abs", None)
    bounds = (prediction.rho, prediction.low, prediction.high)
    assert bounds == (spread.rho, spread.low, spread.high)
    assert prediction.num_examples == report.num_examples == 100
    text = experiment_figures.prediction_text(report)
    assert str(spread) in text and str(spectral.spread_flat) in text
    assert "N = 100" in text


def test_plain_runs_skip_the_spectrum_and_retraining(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(RESULTS_ENV, str(tmp_path))
    config = task_config(SMOKE_TASK, "smoke")
    plain = plain_run(config, progress=False)
    assert isinstance(plain, PlainRun) and plain.training.history
    assert plain.one_shot.tolerance == plain.dense.eps
    folder = task_study(plain_variant(config), root=tmp_path, progress=False).folder
    assert {p.stem for p in folder.glob("*.json")} == set(PLAIN_STAGES)
    assert task_study(config, root=tmp_path, progress=False).folder != folder


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
    folder = task_study(config, root=tmp_path, progress=False).folder
    assert folder is not None
    script = (
        "import sys; from pathlib import Path; from companion.tasks import task_config, "
        "task_study; task_study(task_config('fc12-cifar10', 'smoke'), root=Path(sys.argv[1]),"
        " progress=False).run()"
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
    task_study(config, root=tmp_path, progress=False).run()
    assert {f"{stage}.json" for stage in STAGES} <= {p.name for p in folder.glob("*.json")}
    for name, (mtime, payload) in kept.items():
        path = folder / name
        assert path.stat().st_mtime_ns == mtime and path.read_bytes() == payload, name


def computing_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make every computation of a study fail: training, evaluation, SLQ, pruning sweeps."""
    for name in ("train", "evaluate", "slq", "one_shot_sweep", "certified_limit"):
        monkeypatch.setattr(
            f"prunelimit.study.{name}",
            lambda *args, _name=name, **kwargs: pytest.fail(f"{_name} ran for a stored stage"),
        )


def test_a_study_computes_nothing_for_stored_stages(
    smoke_run: SmokeRun, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Rendering the book from stored results trains, evaluates and prunes nothing (the data are
    read: the study's key hashes them)."""
    computing_fails(monkeypatch)
    config = task_config(SMOKE_TASK, "smoke")
    report = task_study(config, root=smoke_run.root, progress=False).run()
    assert report.prediction == smoke_run.report.prediction and report.prediction.rho > 0


@pytest.mark.parametrize("task", list(TASKS))
def test_the_committed_cpu_results_are_found_and_loaded_without_computing(
    task: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The book's cpu pages render from the committed results: each task's study (and its plain
    twin) finds its folder under results/ by its key, and loads every stage from it."""
    computing_fails(monkeypatch)
    config = task_config(task, "cpu")
    report = task_study(config, root=PROJECT / "results", progress=False).run()
    assert report.folder is not None and report.folder.is_relative_to(PROJECT / "results")
    assert report.retrained is not None and set(STAGES) <= set(report.provenance)
    plain = task_study(plain_variant(config), root=PROJECT / "results", progress=False)
    assert plain.one_shot().limit > 0


def test_a_run_is_described_by_what_it_ran_with_d_as_measured(smoke_run: SmokeRun) -> None:
    config = task_config(SMOKE_TASK, "smoke")
    ours, paper = describe_run(config), describe_run(task_config(config.task, "full"))
    assert ours.dimension == smoke_run.report.dimension
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


def test_the_task_template_has_one_page_per_task_titled_by_the_registry() -> None:
    source = BOOK / "experiments" / "task.md"
    template = read_template(source)
    assert template is not None and template.fields == "companion.tasks.task_page"
    assert sorted(template.pages.values()) == sorted(TASKS)
    assert all(name == task.replace("-", "_") for name, task in template.pages.items())
    body = source.read_text().split("---", 2)[2]  # after the front matter
    title = next(line for line in body.splitlines() if line.startswith("# "))
    assert title == "# {{ title }}"
    with pytest.raises(ValueError, match="unknown task"):
        task_page("lenet-mnist")


@pytest.mark.parametrize("task", list(TASKS))
def test_each_task_page_title_names_the_papers_data_and_the_cpu_stand_in(task: str) -> None:
    fields = task_page(task)
    paper, cpu = (describe_run(task_config(task, p)) for p in ("full", "cpu"))
    title = fields["title"]
    assert f"{paper.data} in the paper" in title and f"{cpu.data} in the cpu profile" in title
    assert title.startswith(f"{paper.model}:"), "named as in the tables (VGG16-BN, not VGG16)"
    assert fields["task"] == task and fields["introduction"] == TASKS[task].about


def test_part_three_figures_are_readable_and_show_the_limits_definition(
    smoke_run: SmokeRun,
) -> None:
    report = smoke_run.report
    config = task_config(SMOKE_TASK, "smoke")
    one_shot, spectral = report.one_shot, report.spectral
    assert spectral is not None
    figures = [
        experiment_figures.training_plot(report.training, report.training),
        experiment_figures.spectrum_plot(report),
        experiment_figures.steps_plot(report),
        experiment_figures.pruning_plot(report, one_shot),
        experiment_figures.distance_plot(report),
        experiment_figures.summary_plot({config.task: report}, {config.task: config}),
    ]
    for figure in figures:
        assert smallest_text_px(figure) >= MIN_TEXT_PX
    loss_axes = figures[3].axes[0]
    threshold = one_shot.dense_loss + one_shot.tolerance
    assert any(
        list(line.get_ydata()) == [threshold, threshold] for line in loss_axes.get_lines()
    ), "the loss tolerance is drawn"
    plotted = next(line for line in loss_axes.get_lines() if line.get_label() == "LOMP")
    assert list(plotted.get_xdata()) == one_shot.ratios, "the fixed-view (training) loss"
    zoom = figures[3].axes[2]
    assert zoom.get_xlim()[0] < spectral.prediction.lower < zoom.get_xlim()[1]
    spread = spectral.spread
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
    certified = report.certified
    assert certified is not None
    drawn = [list(line.get_xdata()) for line in figures[5].axes[0].get_lines()]
    low = max(certified.low, experiment_figures.LOG_FLOOR)
    assert [low, certified.high] in drawn, "the certified interval"
    plt.close("all")


def test_the_tables_of_part_three_show_the_reports(smoke_run: SmokeRun) -> None:
    report, config = smoke_run.report, task_config(SMOKE_TASK, "smoke")
    plain = PlainRun(report.training, report.dense, report.one_shot)
    (row,) = experiment_figures.training_table(report, plain).rows
    assert f"{report.dimension:,}" in row and f"{report.eps:.4g}" in row
    (summary,) = experiment_figures.summary_rows({config.task: report}, {config.task: config})
    assert summary["actual one-shot"] == f"{report.one_shot.limit:.4f}"
    assert summary["N"] == "100" and summary["ran on"] == describe_run(config).label
    certified, budget = report.certified, report.budget
    assert certified is not None and budget is not None
    assert summary["G certified (99%)"] == f"{certified.low:.4f}-{certified.high:.4f}"
    assert summary["actual retrained (budgets)"].startswith(f"{budget.limit:.4f} (1 -> 2 epochs")
    (verdict_row,) = experiment_figures.verdict_table(
        {config.task: report}, {config.task: config}
    ).rows
    assert verdict_row[-1] == verdict(report) and "coincides" in verdict_row[-2]
    budget_rows = experiment_figures.budget_table(report).rows
    assert [row[0] for row in budget_rows] == ["1", "2"]
    assert budget_rows[-1][1] == f"{budget.limit:.4f}"
    text = experiment_figures.certified_text(report)
    assert f"{certified.low:.4f}-{certified.high:.4f}" in text and "N = 100" in text
    counts = experiment_figures.agreement_table({config.task: report}).rows
    assert ("tasks", "1") in counts


def test_the_glance_counts_the_verdicts(smoke_run: SmokeRun) -> None:
    report = smoke_run.report
    text = experiment_figures.glance({"a": report, "b": report}, "smoke")
    word = verdict(report).split(":")[0]
    counts = {w: 2 if w == word else 0 for w in ("Holds", "Does not hold", "Undecided")}
    assert text.startswith(":::{admonition} Results at a glance (profile `smoke`)")
    assert f"holds on {counts['Holds']}, does not hold on {counts['Does not hold']}" in text
    assert f"undecided on {counts['Undecided']}" in text and text.endswith(":::")


def test_the_comparison_counts_the_tasks_where_lomp_prunes_further(smoke_run: SmokeRun) -> None:
    report, config = smoke_run.report, task_config(SMOKE_TASK, "smoke")
    limit = report.one_shot.limit
    sparser = dataclasses.replace(
        report, one_shot=dataclasses.replace(report.one_shot, limit=limit / 2)
    )
    plain = PlainRun(report.training, report.dense, report.one_shot)
    table = experiment_figures.comparison_table(
        {config.task: sparser}, {config.task: plain}, {config.task: config}
    )
    assert table.caption == "LOMP prunes further than plain pruning in 1 of 1 tasks"
    assert table.rows[0][-1] == "2.0x"
    sparser_plain = PlainRun(report.training, report.dense, sparser.one_shot)
    swapped = experiment_figures.comparison_table(
        {config.task: report}, {config.task: sparser_plain}, {config.task: config}
    )
    assert swapped.caption.endswith("in 0 of 1 tasks")
