"""The full profile's path end to end, on a synthetic CIFAR-10 archive in the official layout
(no network, no real data) with tiny epochs: the data read from the archive with augmentation,
3 x 32 x 32 inputs, the automatic chunk size, Lanczos without a stored basis, retraining, the
cost estimate, and the summary's task selection."""

import dataclasses
from pathlib import Path

import pytest

from companion.pipeline import read_template
from companion.tasks import TASKS_ENV, selected_tasks, task_config, task_study
from tests.unit.test_paper_data import write_cifar


def tiny_full_config(task: str):
    """The task's full-profile config with the paper's data, model, recipe shape and settings,
    shrunk in size only: one epoch, few examples, few Lanczos steps, one retraining halving."""
    config = task_config(task, "full")
    return dataclasses.replace(
        config,
        data=dataclasses.replace(config.data, fixed_size=256, hessian_size=16),
        recipe=dataclasses.replace(config.recipe, epochs=1, batch_size=32),
        hessian=dataclasses.replace(config.hessian, num_steps=6, num_probes=2, zero_rows=4),
        pruning=dataclasses.replace(config.pruning, retrain_epochs=1, retrain_halvings=1),
    )


def test_the_full_profile_runs_end_to_end_on_a_synthetic_cifar_archive(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = tmp_path / "data"
    data.mkdir()
    write_cifar(data, "cifar10", as_archive=True, count=64)  # 5 x 64 training images
    monkeypatch.setenv("PRUNELIMIT_DATA", str(data))
    config = tiny_full_config("fc5-cifar10")
    assert config.data.augment and config.data.download and config.data.image_size == 32
    assert config.hessian.chunk_size == "auto" and not config.hessian.reorthogonalize
    study = task_study(config, root=tmp_path / "results", progress=False)
    estimate = study.estimate(batches=1)
    names = [unit.name for unit in estimate.units]
    assert names == ["training epoch", "Hessian product", "retraining epoch", "evaluation"]
    report = study.run()
    assert report.dimension == 3 * 32 * 32 * 1000 + 1000 * 600 + 600 * 300 + 300 * 100 + 100 * 10
    assert report.num_examples == 16 and report.spectral is not None
    assert report.spectral.spectrum.num_probes == 2 and len(report.training.history) == 1
    assert report.retrained is not None and 0 < report.one_shot.limit <= 1
    assert (study.folder / "limit.json").is_file() and study.folder.parent.name == "fc5-cifar10"
    assert study.estimate(batches=1).units == (), "everything is stored"


def test_the_summary_reads_the_selected_tasks(monkeypatch: pytest.MonkeyPatch) -> None:
    assert len(selected_tasks()) == 8
    monkeypatch.setenv(TASKS_ENV, "vgg16-cifar10 fc5-cifar10")
    assert selected_tasks() == ["fc5-cifar10", "vgg16-cifar10"], "in the registry's order"
    monkeypatch.setenv(TASKS_ENV, "fc5-cifar10 nope")
    with pytest.raises(ValueError, match=r"unknown tasks \['nope'\]"):
        selected_tasks()


def test_the_task_template_prints_an_estimate_before_a_page_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PRUNELIMIT_RESULTS", str(tmp_path))
    template = read_template(Path(__file__).parents[2] / "book" / "experiments" / "task.md")
    assert template is not None
    text = template.cost("fc5-cifar10", "smoke", False)
    assert text.startswith("Estimated time on ") and "plain training epoch" in text
    assert "Hessian product" in text and "total at most" in text
