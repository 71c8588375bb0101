"""Every page of the book runs with the smoke profile (one test per page; a template runs once
per page, with its parameter set)."""

from collections.abc import Callable
from pathlib import Path

import nbformat
import pytest

from companion.pipeline import Page, book_pages, read_template, text_notebooks
from tests.book.conftest import BOOK, PROJECT

NOTEBOOKS = text_notebooks(BOOK)
PAGES = book_pages(BOOK)


def test_the_book_has_notebooks() -> None:
    assert NOTEBOOKS, "no text notebook found under book/: the detection is broken"


def test_every_notebook_is_a_page_and_a_template_one_per_page() -> None:
    for source in NOTEBOOKS:
        template = read_template(source)
        values = sorted(page.value or "" for page in PAGES if page.source == source)
        assert values == ([""] if template is None else sorted(template.pages.values())), source


@pytest.mark.parametrize("page", PAGES, ids=lambda page: str(page.path.relative_to(PROJECT)))
def test_notebook_runs_with_smoke_profile(
    page: Page, execute_smoke: Callable[[Page], Path]
) -> None:
    executed = nbformat.read(execute_smoke(page), as_version=4)
    code_cells = [cell for cell in executed.cells if cell.cell_type == "code"]
    assert code_cells and all(cell.execution_count for cell in code_cells), (
        "a code cell did not run"
    )
    injected = [
        cell for cell in code_cells if "injected-parameters" in cell.metadata.get("tags", [])
    ]
    assert len(injected) == 1 and 'profile = "smoke"' in injected[0].source
    template = read_template(page.source)
    if template is not None:
        assert f"{template.parameter} = {page.value!r}" in injected[0].source.replace('"', "'")
        assert "{{" not in "".join(cell.source for cell in executed.cells), "a mark not filled in"
    assert "remove-cell" in injected[0].metadata.tags
    for cell in code_cells:
        outputs = cell.get("outputs", [])
        assert not any(o.output_type == "error" for o in outputs), "no traceback in the book"
        if any("image/png" in o.get("data", {}) for o in outputs):
            figure = cell.metadata.get("mystnb", {}).get("figure", {})
            assert figure.get("caption") and figure.get("name"), (
                f"a figure without a caption and name: {cell.source[:80]!r}"
            )
