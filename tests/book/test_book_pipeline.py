"""The pipeline's failure paths: a raising cell, a missing parameters cell, a missing output."""

import os
from pathlib import Path

import nbformat
import pytest

from companion.pipeline import (
    LocalKernelManager,
    NotebookError,
    Page,
    book_pages,
    execute_notebook,
    is_text_notebook,
    stage_site,
    uses_report,
)

FRONT_MATTER = """---
jupytext:
  text_representation:
    extension: .md
    format_name: myst
kernelspec:
  display_name: Python 3
  language: python
  name: python3
---
"""
PARAMETERS = """
```{code-cell} ipython3
:tags: [parameters]

profile = "cpu"
recompute = False
```
"""


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_text_notebooks_are_told_from_plain_pages(tmp_path: Path) -> None:
    assert is_text_notebook(write(tmp_path / "nb.md", FRONT_MATTER + "# Title\n"))
    assert not is_text_notebook(write(tmp_path / "page.md", "# Title\nkernelspec: in the body\n"))
    assert not is_text_notebook(write(tmp_path / "meta.md", "---\ntitle: x\n---\nkernelspec: no\n"))


def test_a_raising_cell_fails_with_its_error_and_writes_nothing(tmp_path: Path) -> None:
    body = (
        PARAMETERS
        + '\n```{code-cell} ipython3\nraise RuntimeError(f"cell failed under {profile}")\n```\n'
    )
    source = write(tmp_path / "broken.md", FRONT_MATTER + body)
    output = tmp_path / "out" / "broken.ipynb"
    with pytest.raises(NotebookError, match="cell failed under smoke") as raised:
        execute_notebook(source, output, profile="smoke")
    assert "RuntimeError" in str(raised.value) and "broken.md" in str(raised.value)
    assert not output.exists()
    assert list(output.parent.iterdir()) == [], "a scratch file was left behind"


def test_cells_tagged_raises_exception_may_fail(tmp_path: Path) -> None:
    """The book shows error messages in cells tagged to expect them; the run goes on past them."""
    expected = (
        '\n```{code-cell} ipython3\n:tags: [raises-exception]\n\nraise ValueError("shown")\n```\n'
    )
    after = '\n```{code-cell} ipython3\nprint("ran after", profile)\n```\n'
    source = write(tmp_path / "demo.md", FRONT_MATTER + PARAMETERS + expected + after)
    output = tmp_path / "demo.ipynb"
    execute_notebook(source, output, profile="smoke")
    cells = nbformat.read(output, as_version=4).cells
    assert not any("papermill-error-cell-tag" in c.metadata.get("tags", []) for c in cells)
    assert cells[-2].outputs[0].output_type == "error" and cells[-2].outputs[0].evalue == "shown"
    assert cells[-1].outputs[0].text.strip() == "ran after smoke"

    untagged = write(
        tmp_path / "bad.md", FRONT_MATTER + PARAMETERS + expected + after.replace("print", "prin")
    )
    with pytest.raises(NotebookError, match="NameError"):
        execute_notebook(untagged, tmp_path / "bad.ipynb", profile="smoke")


def test_a_notebook_without_parameters_cell_is_refused(tmp_path: Path) -> None:
    source = write(tmp_path / "plain.md", FRONT_MATTER + "```{code-cell} ipython3\n1 + 1\n```\n")
    with pytest.raises(NotebookError, match="tagged 'parameters'"):
        execute_notebook(source, tmp_path / "plain.ipynb", profile="smoke")


def test_an_unknown_profile_is_refused_before_running(tmp_path: Path) -> None:
    source = write(tmp_path / "nb.md", FRONT_MATTER + PARAMETERS)
    with pytest.raises(ValueError, match=r"unknown profile 'gpu'.*smoke, cpu, full"):
        execute_notebook(source, tmp_path / "nb.ipynb", profile="gpu")


def test_staging_replaces_text_notebooks_by_executed_ones(tmp_path: Path) -> None:
    project = tmp_path / "project"
    for name in ("_config.yml", "_toc.yml"):
        write(project / name, "x: 1\n")
    write(project / "book" / "intro.md", "# Intro\n")
    write(project / "book" / "part" / "nb.md", FRONT_MATTER + PARAMETERS)
    executed = tmp_path / "executed"
    with pytest.raises(FileNotFoundError, match=r"nb\.ipynb is missing"):
        stage_site(project, executed, tmp_path / "site")
    write(executed / "book" / "part" / "nb.ipynb", "{}")
    os.mkfifo(project / "book" / "part" / "kernel-ipc-1")  # not a regular file, like a socket
    site = stage_site(project, executed, tmp_path / "site")
    assert staged_files(site) == ["_config.yml", "_toc.yml", "book/intro.md", "book/part/nb.ipynb"]
    assert (site / "book" / "part" / "nb.ipynb").read_text() == "{}"


TEMPLATE = """---
jupytext:
  text_representation:
    extension: .md
    format_name: myst
kernelspec:
  display_name: Python 3
  language: python
  name: python3
template:
  parameter: animal
  fields: fields_for_test.fields
  pages:
    cat_page: cat
    dog_page: dog
---

# {{ title }}

```{code-cell} ipython3
:tags: [parameters]

profile = "cpu"
recompute = False
animal = "{{ animal }}"
```

```{code-cell} ipython3
print("page of", animal, "under", profile)
```
"""
FIELDS = """def fields(value):
    return {"title": f"The {value} page", "animal": value}
"""


def test_a_template_is_executed_once_per_page_with_its_fields_filled_in(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write(tmp_path / "modules" / "fields_for_test.py", FIELDS)
    monkeypatch.syspath_prepend(str(tmp_path / "modules"))
    project = tmp_path / "project"
    for name in ("_config.yml", "_toc.yml"):
        write(project / name, "x: 1\n")
    source = write(project / "book" / "part" / "animal.md", TEMPLATE)
    part = project / "book" / "part"
    assert book_pages(project / "book") == [
        Page(source, part / "cat_page.md", "cat"),
        Page(source, part / "dog_page.md", "dog"),
    ]
    executed = tmp_path / "executed"
    output = executed / "book" / "part" / "dog_page.ipynb"
    execute_notebook(source, output, profile="smoke", value="dog")
    cells = nbformat.read(output, as_version=4).cells
    assert cells[0].source.strip() == "# The dog page"
    assert cells[-1].outputs[0].text.strip() == "page of dog under smoke"
    assert not any("{{" in cell.source for cell in cells), "a mark was not filled in"
    for value in (None, "cow"):
        with pytest.raises(NotebookError, match="is a template: name one of its pages"):
            execute_notebook(source, tmp_path / "other.ipynb", profile="smoke", value=value)
    with pytest.raises(FileNotFoundError, match=r"cat_page\.ipynb is missing"):
        stage_site(project, executed, tmp_path / "site")
    write(executed / "book" / "part" / "cat_page.ipynb", "{}")
    site = stage_site(project, executed, tmp_path / "site")
    assert staged_files(site) == [
        "_config.yml",
        "_toc.yml",
        "book/part/cat_page.ipynb",
        "book/part/dog_page.ipynb",
    ], "each page is staged, the template itself is not"


def staged_files(site: Path) -> list[str]:
    return sorted(str(path.relative_to(site)) for path in site.rglob("*") if path.is_file())


def test_restaging_rewrites_exactly_the_changed_files(tmp_path: Path) -> None:
    project, executed, site = tmp_path / "project", tmp_path / "executed", tmp_path / "site"
    for name in ("_config.yml", "_toc.yml", "book/intro.md", "book/old.md"):
        write(project / name, f"{name}\n")
    write(project / "book" / "nb.md", FRONT_MATTER + PARAMETERS)
    notebook = write(executed / "book" / "nb.ipynb", '{"profile": "cpu"}')
    stage_site(project, executed, site)
    past = 1_000_000_000  # 2001: older than any real build
    for path in site.rglob("*"):
        os.utime(path, (past, past))

    (project / "book" / "old.md").unlink()
    os.utime(notebook, (past - 10, past - 10))  # another profile's output, older than the site
    notebook.write_text('{"profile": "smoke"}')
    os.utime(notebook, (past - 10, past - 10))
    stage_site(project, executed, site)

    assert "book/old.md" not in staged_files(site)
    assert (site / "book" / "nb.ipynb").read_text() == '{"profile": "smoke"}'
    assert (site / "book" / "nb.ipynb").stat().st_mtime > past, "Sphinx would not see the change"
    assert (site / "book" / "intro.md").stat().st_mtime == past, "an unchanged page was rewritten"


def test_a_page_says_which_stored_results_it_used_and_where_they_came_from(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PRUNELIMIT_RESULTS", str(tmp_path / "results"))
    body = (
        "\n# A page\n\nIntroduction.\n"
        + PARAMETERS
        + "\n```{code-cell} ipython3\nfrom companion import ResultsStore\n\n"
        'ResultsStore("demo", profile).load_or_compute({"n": 1}, lambda: {"x": 1.0})\n```\n'
        "\n## A section\n"
    )
    source = write(tmp_path / "page.md", FRONT_MATTER + body)
    first = execute_notebook(source, tmp_path / "out" / "first.ipynb", profile="smoke")
    again = execute_notebook(source, tmp_path / "out" / "again.ipynb", profile="smoke")
    assert [use["action"] for use in first + again] == ["computed", "reused"]
    assert uses_report(again).split() == [
        "reused",
        "results/smoke/demo/:",
        first[0]["path"][-21:-5],
    ]
    cells = nbformat.read(tmp_path / "out" / "again.ipynb", as_version=4).cells
    notes = [i for i, c in enumerate(cells) if c.source.startswith(":::{note}")]
    assert len(notes) == 1 and cells[notes[0] + 1].source.startswith("## A section")
    note = cells[notes[0]].source
    assert "1 stored result (read 1 times from `results/smoke/demo/`; 0 computed" in note
    assert "with torch" in note and "profile smoke" in note and str(tmp_path) not in note


def test_kernels_started_side_by_side_get_socket_files_of_their_own(tmp_path) -> None:
    """Two notebooks of one folder run at once (make execute's jobs) must not share sockets."""
    first, second = LocalKernelManager(), LocalKernelManager()
    assert first.transport == "ipc" and first.ip != second.ip
    assert os.path.isabs(first.ip) and not first.ip.startswith(os.getcwd())
