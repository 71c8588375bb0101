"""Every text notebook of the book runs with the smoke profile (one test per notebook)."""

from collections.abc import Callable
from pathlib import Path

import nbformat
import pytest

from prunelimit.book_pipeline import text_notebooks
from tests.conftest import BOOK, PROJECT

NOTEBOOKS = text_notebooks(BOOK)


def test_the_book_has_notebooks() -> None:
    assert NOTEBOOKS, "no text notebook found under book/: the detection is broken"


@pytest.mark.parametrize("source", NOTEBOOKS, ids=lambda path: str(path.relative_to(PROJECT)))
def test_notebook_runs_with_smoke_profile(
    source: Path, execute_smoke: Callable[[Path], Path]
) -> None:
    executed = nbformat.read(execute_smoke(source), as_version=4)
    code_cells = [cell for cell in executed.cells if cell.cell_type == "code"]
    assert code_cells and all(cell.execution_count for cell in code_cells), (
        "a code cell did not run"
    )
    injected = [
        cell for cell in code_cells if "injected-parameters" in cell.metadata.get("tags", [])
    ]
    assert len(injected) == 1 and 'profile = "smoke"' in injected[0].source
    assert "remove-cell" in injected[0].metadata.tags
    for cell in code_cells:
        outputs = cell.get("outputs", [])
        assert not any(o.output_type == "error" for o in outputs), "no traceback in the book"
        if any("image/png" in o.get("data", {}) for o in outputs):
            figure = cell.metadata.get("mystnb", {}).get("figure", {})
            assert figure.get("caption") and figure.get("name"), (
                f"a figure without a caption and name: {cell.source[:80]!r}"
            )
