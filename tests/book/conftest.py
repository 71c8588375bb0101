"""Shared fixtures of the book's tests: every page is executed once per session with the smoke
profile (a template once per page)."""

from collections.abc import Callable
from pathlib import Path

import pytest

from companion.pipeline import NotebookError, Page, execute_notebook

PROJECT = Path(__file__).resolve().parents[2]
BOOK = PROJECT / "book"


@pytest.fixture(scope="session")
def smoke_results(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Stored results of the test session go to a scratch folder, never to results/."""
    folder = tmp_path_factory.mktemp("results")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PRUNELIMIT_RESULTS", str(folder))
        yield folder


@pytest.fixture(scope="session")
def executed_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("executed")


@pytest.fixture(scope="session")
def execute_smoke(smoke_results: Path, executed_dir: Path) -> Callable[[Page], Path]:
    """Execute a page of the book once (smoke profile, into the session's empty results folder,
    so everything is computed once); its executed path, ``executed_dir`` mirroring the project
    (a template's page runs into ``<template folder>/<page>.ipynb``, as the build stages it).

    Later requests for the same page (source and template value) reuse the result, or re-raise
    its error.
    """
    outcomes: dict[tuple[Path, str | None], Path | NotebookError] = {}

    def run(page: Page) -> Path:
        key = (page.source, page.value)
        if key not in outcomes:
            output = executed_dir / page.path.relative_to(PROJECT).with_suffix(".ipynb")
            try:
                execute_notebook(page.source, output, profile="smoke", value=page.value)
                outcomes[key] = output
            except NotebookError as error:
                outcomes[key] = error
        outcome = outcomes[key]
        if isinstance(outcome, NotebookError):
            raise outcome
        return outcome

    return run
