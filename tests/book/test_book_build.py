"""The book builds with -W from the smoke-executed notebooks, and renders math from local files."""

import re
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlparse

import pytest

from companion.pipeline import Page, book_pages, build_html, read_template, stage_site
from companion.tasks import TASKS
from tests.book.conftest import BOOK, PROJECT

MATHJAX_SCRIPT = re.compile(r'<script[^>]*\bsrc="([^"]*mathjax[^"]*)"', re.IGNORECASE)
TASK_TEMPLATE = BOOK / "experiments" / "task.md"


def task_pages() -> dict[str, str]:
    """Part III's task pages: the task template's pages (page name -> task), one per task."""
    template = read_template(TASK_TEMPLATE)
    assert template is not None, f"{TASK_TEMPLATE} is no longer a template"
    assert sorted(template.pages.values()) == sorted(TASKS), template.pages
    return template.pages


@pytest.fixture(scope="module")
def html_root(
    tmp_path_factory: pytest.TempPathFactory,
    executed_dir: Path,
    execute_smoke: Callable[[Page], Path],
) -> Path:
    for page in book_pages(BOOK):
        execute_smoke(page)
    scratch = tmp_path_factory.mktemp("book")
    index = build_html(stage_site(PROJECT, executed_dir, scratch / "site"), scratch)
    assert index.is_file()
    return index.parent


def test_every_page_in_the_toc_is_built(html_root: Path) -> None:
    toc_files = re.findall(r"(?:root|file):\s*(\S+)", (PROJECT / "_toc.yml").read_text())
    assert toc_files
    for name in toc_files:
        assert (html_root / f"{name}.html").is_file(), name


def test_mathjax_is_loaded_from_a_local_file(html_root: Path) -> None:
    page = html_root / "book" / "intro.html"
    sources = MATHJAX_SCRIPT.findall(page.read_text())
    assert sources, "intro.html loads no MathJax script"
    for source in sources:
        assert not urlparse(source).scheme and not source.startswith("//"), (
            f"remote MathJax: {source}"
        )
        script = (page.parent / source).resolve()
        assert script.is_file() and script.is_relative_to(html_root.resolve()), source


REMOTE_ASSET = re.compile(r'<(?:script|link|img)\b[^>]*\b(?:src|href)="((?:https?:)?//[^"]+)"')


def test_no_page_loads_anything_from_the_network(html_root: Path) -> None:
    pages = list(html_root.rglob("*.html"))
    assert len(pages) >= 3
    remote = {page.name: REMOTE_ASSET.findall(page.read_text()) for page in pages}
    assert not any(remote.values()), remote


def test_executed_outputs_reach_the_html(html_root: Path) -> None:
    page = (html_root / "book" / "reproducibility.html").read_text()
    assert re.search(r"profile\s+smoke", page), "the printed environment is missing"
    assert re.search(r'<img[^>]+src="[^"]+\.png"', page), "the figure is missing"
    assert "injected-parameters" not in page


def test_every_figure_cell_renders_an_image(html_root: Path) -> None:
    """A notebook's cells that assign `figure = ...` each put at least one image on its page (on
    every page of a template)."""
    for page in book_pages(BOOK):
        expected = len(re.findall(r"^figure = ", page.source.read_text(), flags=re.MULTILINE))
        html = html_root / page.path.relative_to(PROJECT).with_suffix(".html")
        images = len(re.findall(r"<img[^>]+src=\"[^\"]+\.png\"", html.read_text()))
        assert images >= expected, f"{html.name}: {images} images for {expected} figure cells"


SCRIPT_BODY = re.compile(r"<script>(.*?)</script>", re.DOTALL)
DECLARATION = re.compile(r"(?:^|[;{}\s])(?:const|let|class)\s+([A-Za-z_$][\w$]*)")


def test_no_page_declares_a_script_name_twice(html_root: Path) -> None:
    """A second top-level `const X` on a page is a SyntaxError ("X has already been declared")
    that stops the script: every page once threw one for sphinx-thebe's THEBE_JS_URL."""
    for page in html_root.rglob("*.html"):
        names = [
            name
            for body in SCRIPT_BODY.findall(page.read_text())
            for name in DECLARATION.findall(body)
        ]
        twice = sorted({name for name in names if names.count(name) > 1})
        assert not twice, f"{page.relative_to(html_root)} declares {twice} twice"


def test_the_proof_index_lists_numbers_and_titles(html_root: Path) -> None:
    index = (html_root / "prf-prf.html").read_text()
    entries = re.findall(r'<code class="xref">([^<]*)</code>', index)
    assert "Theorem 1: Moreau decomposition" in entries, entries
    assert all(re.match(r"[A-Z][a-z]+ \d+(: \S.*)?$", entry) for entry in entries), entries


def test_every_theory_figure_is_numbered(html_root: Path) -> None:
    for source in sorted((BOOK / "theory").glob("*.md")):
        figure_cells = len(re.findall(r"^figure = ", source.read_text(), flags=re.MULTILINE))
        page = (html_root / source.relative_to(PROJECT).with_suffix(".html")).read_text()
        numbers = re.findall(r'<span class="caption-number">Fig\. (\d+) </span>', page)
        assert len(numbers) == figure_cells, f"{source.name}: {numbers} for {figure_cells} cells"


def test_part_three_pages_name_their_data_number_their_figures_and_show_html_tables(
    html_root: Path,
) -> None:
    experiments = html_root / "book" / "experiments"
    for name in task_pages():
        page = experiments / f"{name}.html"
        text = page.read_text()
        opening = re.sub(r"<[^>]+>", " ", text[text.index("<h1") :])[:1500]
        assert "The paper:" in opening and "This page, profile" in opening, page.name
        assert "Fashion-MNIST" in opening or "MNIST-5k" in opening, page.name
        figures = re.findall(r'<span class="caption-number">Fig\. \d+ </span>', text)
        assert len(figures) == 5, f"{page.name}: {len(figures)} numbered figures"
        assert "This page shows" in text and "stored result" in text, "provenance note"
    summary = (experiments / "summary.html").read_text()
    assert summary.count("<table") >= 3 and "actual one-shot" in summary
    assert re.search(r'caption-number">Fig\. \d+ </span>', summary)


def test_the_exact_spectra_and_data_size_pages_name_their_data_and_number_their_figures(
    html_root: Path,
) -> None:
    for name in ("exact_spectra", "data_size"):
        text = (html_root / "book" / "experiments" / f"{name}.html").read_text()
        opening = re.sub(r"<[^>]+>", " ", text[text.index("<h1") :])[:2500]
        assert "This page, profile" in opening and "Fashion-MNIST" in opening, name
        assert re.search(r'caption-number">Fig\. \d+ </span>', text), name
        assert "<table" in text, name


def test_no_page_shows_a_traceback_or_a_build_path(html_root: Path) -> None:
    for page in html_root.rglob("*.html"):
        text = page.read_text()
        assert "Traceback (most recent call last)" not in text, page.name
        assert str(PROJECT) not in text, f"{page.name} shows the build machine's paths"
