"""Checks of the book's source text: citations resolve, parts exist, the theory chapters show
tables as HTML and number and caption their figures."""

import re
from pathlib import Path

import jupytext
import pytest

from companion.pipeline import text_notebooks
from tests.book.conftest import BOOK, PROJECT

PAGES = sorted(path for path in BOOK.rglob("*.md") if "_build" not in path.parts)
THEORY = sorted((BOOK / "theory").glob("*.md"))
NOTEBOOKS = text_notebooks(BOOK)
CITATION = re.compile(r"\{cite:[a-z]+\}`([^`]+)`")
BIB_KEY = re.compile(r"^@\w+\{([^,\s]+),", re.MULTILINE)


def _bib_keys() -> set[str]:
    return set(BIB_KEY.findall((BOOK / "references.bib").read_text()))


def test_every_cited_work_is_in_the_bibliography() -> None:
    keys = _bib_keys()
    missing = {
        f"{page.relative_to(PROJECT)}: {key.strip()}"
        for page in PAGES
        for cited in CITATION.findall(page.read_text())
        for key in cited.split(",")
        if key.strip() not in keys
    }
    assert not missing, sorted(missing)


def test_bibliography_keys_are_unique() -> None:
    keys = BIB_KEY.findall((BOOK / "references.bib").read_text())
    assert len(keys) == len(set(keys))


def test_works_named_in_the_theory_and_intro_are_cited() -> None:
    named = {  # a name in the text -> the key that must be cited on the same page
        "Larsen": "larsen2022degrees",
        "HiGHS": "huangfu2018parallelizing",
        "MNIST": "lecun1998gradient",
        "ALMT": "amelunxen2014living",
    }
    for page in [*THEORY, BOOK / "intro.md"]:
        text = page.read_text()
        for name, key in named.items():
            if name in text:
                cited = {k.strip() for c in CITATION.findall(text) for k in c.split(",")}
                assert key in cited, f"{page.name} names {name} without citing {key}"


def test_every_part_the_text_names_is_in_the_table_of_contents() -> None:
    parts = set(re.findall(r"Part ([IVX]+)\b", (PROJECT / "_toc.yml").read_text()))
    assert parts == {"I", "II", "III", "IV"}
    for page in PAGES:
        named = set(re.findall(r"\bPart ([IVX]+)\b", page.read_text()))
        assert named <= parts, f"{page.name} names Part {sorted(named - parts)}"


@pytest.mark.parametrize("page", THEORY, ids=lambda p: p.name)
def test_theory_tables_are_html_tables(page: Path) -> None:
    text = page.read_text()
    assert "text_table" not in text, f"{page.name}: use prunelimit.tables.table, not text_table"
    assert "format_report" not in text, f"{page.name}: show reports as a table"


@pytest.mark.parametrize("page", THEORY, ids=lambda p: p.name)
def test_theory_figures_are_numbered_and_captioned(page: Path) -> None:
    notebook = jupytext.read(page)
    names = []
    for cell in notebook.cells:
        if cell.cell_type != "code" or not re.search(r"^figure = ", cell.source, re.MULTILINE):
            continue
        figure = cell.metadata.get("mystnb", {}).get("figure", {})
        assert figure.get("caption", "").strip(), f"{page.name}: a figure cell has no caption"
        assert figure.get("name", "").startswith("fig-"), f"{page.name}: a figure has no name"
        names.append(figure["name"])
    assert len(names) == len(set(names))


@pytest.mark.parametrize("page", NOTEBOOKS, ids=lambda p: str(p.relative_to(BOOK)))
def test_code_lines_fit_the_code_column(page: Path) -> None:
    """At 1400 px the book's code blocks show about 90 characters without scrolling."""
    long = [
        line
        for cell in jupytext.read(page).cells
        if cell.cell_type == "code"
        for line in cell.source.splitlines()
        if len(line) > 88
    ]
    assert not long, f"{page.name}: {long}"


def test_figure_names_are_unique_across_the_book() -> None:
    names = [
        name
        for page in PAGES
        for name in re.findall(r"^\s+name: (fig-[\w-]+)$", page.read_text(), re.MULTILINE)
    ]
    assert len(names) == len(set(names)), sorted(n for n in names if names.count(n) > 1)


def test_the_digits_network_is_introduced_where_the_theory_uses_it() -> None:
    for page in THEORY:
        text = page.read_text()
        if "digits network" in text:
            first = text.index("digits network")
            introduction = text[first : first + 1200]
            for fact in ("MNIST", "hidden layer", "D = 1{,}416"):
                assert fact in introduction, f"{page.name}: the digits network lacks {fact!r}"
