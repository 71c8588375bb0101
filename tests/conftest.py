"""Shared fixtures: every notebook is executed once per session with the smoke profile."""

from collections.abc import Callable
from pathlib import Path

import pytest

from prunelimit.book_pipeline import NotebookError, execute_notebook

PROJECT = Path(__file__).resolve().parents[1]
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
def execute_smoke(smoke_results: Path, executed_dir: Path) -> Callable[[Path], Path]:
    """Execute a text notebook of the book once (smoke profile, into the session's empty results
    folder, so everything is computed once); its executed path.

    Later requests for the same notebook reuse the result, or re-raise its error.
    """
    outcomes: dict[Path, Path | NotebookError] = {}

    def run(source: Path) -> Path:
        if source not in outcomes:
            output = executed_dir / source.relative_to(PROJECT).with_suffix(".ipynb")
            try:
                execute_notebook(source, output, profile="smoke")
                outcomes[source] = output
            except NotebookError as error:
                outcomes[source] = error
        outcome = outcomes[source]
        if isinstance(outcome, NotebookError):
            raise outcome
        return outcome

    return run
