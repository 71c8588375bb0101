"""Text notebook -> executed notebook -> static HTML book.

1. ``execute``: a MyST text notebook under ``book/`` is converted by jupytext and run by papermill
   with the parameters ``profile`` and ``recompute``; the executed ``.ipynb`` is written atomically.
   A template (front matter ``template:`` with a ``parameter``, a ``fields`` function and its
   ``pages``) is executed once per page: ``{{ field }}`` is filled in from ``fields(value)`` and
   the parameter is set to the page's value.
2. ``build``: a site folder is staged from ``_config.yml``, ``_toc.yml`` and ``book/``, with each
   text notebook replaced by its executed version, and Jupyter Book (execution off) renders it with
   ``-W --keep-going``, so any warning or missing output fails the build.

The Makefile calls this module per notebook (``python -m companion.pipeline execute ...``);
the tests call the same functions.
"""

import argparse
import contextlib
import dataclasses
import filecmp
import importlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import jupytext
import nbformat
import papermill
import yaml
from jupyter_client.manager import AsyncKernelManager
from papermill.execute import ERROR_MARKER_TAG
from traitlets import CaselessStrEnum, default

from companion import check_profile
from companion.environment import describe_provenance
from prunelimit.store import STORE_LOG_ENV

BOOK_FOLDER = "book"
_COMPANION = "_companion"  # the book's code, not a page
BOOK_CONFIG_FILES = ("_config.yml", "_toc.yml")
PARAMETERS_TAG = "parameters"
EXPECTED_ERROR_TAG = "raises-exception"
ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;]*m")


class LocalKernelManager(AsyncKernelManager):
    """Talks to the kernel over local sockets (IPC), not TCP ports: nothing listens on the network,
    and ipykernel does not warn about an unencrypted TCP transport on every notebook. Each kernel's
    socket files get a name of their own in the temporary folder (jupyter_client's default,
    ``kernel-ipc-<n>`` in the working folder, is shared by two notebooks of one folder run side by
    side, whose clients then talk to each other's kernels)."""

    transport = CaselessStrEnum(["tcp", "ipc"], default_value="ipc", config=True)

    @default("ip")
    def _own_socket_prefix(self) -> str:
        return os.path.join(tempfile.gettempdir(), f"prunelimit-kernel-{uuid.uuid4().hex[:16]}")


class NotebookError(RuntimeError):
    """A notebook could not be executed; the message names the notebook and the failing cell."""


def _front_matter(path: Path) -> list[str]:
    lines = path.read_text(encoding="utf-8").splitlines()
    if not lines or lines[0].strip() != "---":
        return []
    end = next((i for i, line in enumerate(lines[1:], 1) if line.strip() == "---"), 0)
    return lines[1:end]


def is_text_notebook(path: Path) -> bool:
    """A ``.md`` file whose YAML front matter names a kernel (jupytext's MyST notebook format)."""
    return path.suffix == ".md" and any(
        line.startswith("kernelspec:") for line in _front_matter(path)
    )


def text_notebooks(book_dir: Path) -> list[Path]:
    """All text notebooks below ``book_dir``, sorted (templates included)."""
    return sorted(path for path in book_dir.rglob("*.md") if is_text_notebook(path))


def _function(dotted: str) -> Callable:
    module, _, name = dotted.rpartition(".")
    return getattr(importlib.import_module(module), name)


@dataclasses.dataclass(frozen=True)
class Template:
    """A text notebook executed once per page: ``parameter`` set to each page's value, and the
    ``{{ field }}`` marks filled in from ``fields(value)`` (a dotted function name). ``estimate``
    (optional, a dotted function name): ``estimate(value, profile, recompute)`` says, before a
    page runs, what its computation will cost ("" when nothing is left to compute)."""

    parameter: str
    fields: str
    pages: dict[str, str]
    estimate: str | None = None

    def values(self, value: str) -> dict[str, str]:
        return _function(self.fields)(value)

    def cost(self, value: str, profile: str, recompute: bool | float) -> str:
        return "" if self.estimate is None else _function(self.estimate)(value, profile, recompute)


def read_template(path: Path) -> Template | None:
    """The ``template:`` entry of a text notebook's front matter, or None."""
    front = yaml.safe_load("\n".join(_front_matter(path))) or {}
    entry = front.get("template")
    return None if entry is None else Template(**entry)


@dataclasses.dataclass(frozen=True)
class Page:
    """A page of the book: the text notebook it is executed from, its own path (for a template's
    page: ``<template folder>/<page>.md``) and the template parameter's value (None: not one)."""

    source: Path
    path: Path
    value: str | None = None


def book_pages(book_dir: Path) -> list[Page]:
    """Every executed page below ``book_dir``: each text notebook, a template once per page."""
    pages = []
    for source in text_notebooks(book_dir):
        template = read_template(source)
        if template is None:
            pages.append(Page(source, source))
        else:
            pages += [
                Page(source, source.with_name(f"{name}.md"), value)
                for name, value in template.pages.items()
            ]
    return sorted(pages, key=lambda page: page.path)


def _filled(source: Path, value: str | None) -> str:
    """The text of ``source``, a template's marks filled in for ``value``."""
    text = source.read_text(encoding="utf-8")
    template = read_template(source)
    if template is None:
        return text
    if value not in template.pages.values():
        raise NotebookError(
            f"{source} is a template: name one of its pages ({', '.join(template.pages)})"
        )
    text = text.replace(text.split("---", 2)[1], "\n" + _without_template(text), 1)
    for field, filled in template.values(value).items():
        text = text.replace("{{ " + field + " }}", filled)
    return text


def _without_template(text: str) -> str:
    """The front matter of ``text`` without its ``template:`` entry."""
    front = yaml.safe_load(text.split("---", 2)[1])
    front.pop("template", None)
    return yaml.safe_dump(front, sort_keys=False)


def _hide_injected_parameters(notebook: nbformat.NotebookNode) -> None:
    """Papermill's injected cell repeats parameters the page prints anyway: hide it in HTML."""
    for cell in notebook.cells:
        tags = cell.metadata.setdefault("tags", [])
        if "injected-parameters" in tags and "remove-cell" not in tags:
            tags.append("remove-cell")


def _unexpected_errors(notebook: nbformat.NotebookNode) -> str:
    """The first error raised by a cell not tagged ``raises-exception``, as text ('' if none).

    Papermill raises on any error output, even in cells tagged to expect one (those are the
    book's demonstrations of error messages); nbclient, which runs the cells, honours the tag.
    """
    for cell in notebook.cells:
        if cell.cell_type != "code" or EXPECTED_ERROR_TAG in cell.metadata.get("tags", []):
            continue
        for output in cell.get("outputs", []):
            if output.output_type == "error":
                traceback = ANSI_ESCAPE.sub("", "\n".join(output.traceback))
                return f"In [{cell.execution_count}]:\n{cell.source}\n{traceback}"
        if cell.metadata.get("papermill", {}).get("exception"):  # e.g. the kernel died
            return f"In [{cell.execution_count}]:\n{cell.source}\nthe cell failed without output"
    return ""


@contextlib.contextmanager
def _environment_variable(name: str, value: str) -> Iterator[None]:
    """Set ``name`` for the block (kernels started inside inherit it), then restore it."""
    before = os.environ.get(name)
    os.environ[name] = value
    try:
        yield
    finally:
        if before is None:
            del os.environ[name]
        else:
            os.environ[name] = before


def _read_uses(log: Path) -> list[dict]:
    """The stored results a run used, one ``{"path", "action", "provenance"}`` per line."""
    if not log.is_file():
        return []
    return [json.loads(line) for line in log.read_text(encoding="utf-8").splitlines()]


def _shown_path(path: str) -> str:
    """A stored result's path from the results folder down (no machine-specific prefix)."""
    parts = Path(path).parts
    return "/".join(parts[parts.index("results") :]) if "results" in parts else Path(path).name


def uses_report(uses: list[dict]) -> str:
    """Lines for the build's output: each folder of stored results, reused or computed."""
    by_folder: dict[tuple[str, str], list[str]] = {}
    for use in uses:
        shown = _shown_path(use["path"])
        folder, _, name = shown.rpartition("/")
        by_folder.setdefault((use["action"], folder), []).append(name.removesuffix(".json"))
    return "\n".join(
        f"  {action:>8} {folder}/: {', '.join(sorted(set(names)))}"
        for (action, folder), names in sorted(by_folder.items())
    )


def provenance_note(uses: list[dict]) -> str:
    """A MyST note for the end of a page's introduction: how many stored results it shows, how
    many it reused or computed, and where and when they were computed."""
    reused = sum(use["action"] == "reused" for use in uses)
    folders = sorted({_shown_path(use["path"]).rpartition("/")[0] for use in uses})
    shown = ", ".join(f"`{f}/`" for f in folders[:3]) + (" and more" if len(folders) > 3 else "")
    records = {use["path"]: use["provenance"] for use in uses}  # one per stored file
    plural = "s" if len(records) != 1 else ""
    return (
        ":::{note}\n"
        f"This page shows {len(records)} stored result{plural} (read {reused} times from "
        f"{shown}; {len(uses) - reused} computed in this build): "
        f"{describe_provenance(list(records.values()))}.\n"
        ":::"
    )


def _insert_before_first_section(notebook: nbformat.NotebookNode, text: str) -> None:
    """Add a Markdown cell with ``text`` at the end of the page's introduction: before the first
    Markdown cell that opens a section (``## ``), else at the end."""
    first = next(
        (
            i
            for i, cell in enumerate(notebook.cells)
            if cell.cell_type == "markdown" and cell.source.lstrip().startswith("## ")
        ),
        len(notebook.cells),
    )
    notebook.cells.insert(first, nbformat.v4.new_markdown_cell(text))


def execute_notebook(
    source: Path,
    output: Path,
    profile: str,
    recompute: bool | float = False,
    progress: bool = False,
    value: str | None = None,
) -> list[dict]:
    """Run text notebook ``source`` with papermill in its own folder; write ``output`` atomically.

    A template is run for one of its pages: ``value`` is its parameter's value there.

    ``recompute`` is passed to the notebook: True recomputes its results, a Unix time recomputes
    those stored before it (see ``experiments.store.is_fresh``). The stored results the notebook
    used are returned (``{"path", "action", "provenance"}`` each), and a note at the end of the
    page's introduction says where and when they were computed.

    Raises NotebookError with the cell's error and traceback when a cell raises; ``output`` is
    then left untouched.
    """
    check_profile(profile)
    notebook = jupytext.reads(_filled(source, value), fmt="md:myst")
    template = read_template(source)
    parameters: dict[str, object] = {"profile": profile, "recompute": recompute}
    if template is not None:
        parameters[template.parameter] = value
    if not any(PARAMETERS_TAG in cell.metadata.get("tags", []) for cell in notebook.cells):
        raise NotebookError(
            f"{source}: no cell is tagged '{PARAMETERS_TAG}'. Add a code cell with "
            f':tags: [{PARAMETERS_TAG}] that sets profile = "cpu" and recompute = False.'
        )
    output.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=output.parent) as scratch:
        converted, executed = Path(scratch, "input.ipynb"), Path(scratch, "executed.ipynb")
        log = Path(scratch, "stored-results.jsonl")
        nbformat.write(notebook, converted)
        try:
            with _environment_variable(STORE_LOG_ENV, str(log.resolve())):
                papermill.execute_notebook(
                    str(converted),
                    str(executed),
                    cwd=str(source.parent),
                    progress_bar=progress,
                    parameters=parameters,
                    log_output=False,
                    kernel_manager_class=LocalKernelManager,
                )
        except papermill.PapermillExecutionError:
            unexpected = _unexpected_errors(nbformat.read(executed, as_version=4))
            if unexpected:
                raise NotebookError(
                    f"{source} failed with profile={profile}:\n{unexpected}"
                ) from None
        result = nbformat.read(executed, as_version=4)
        result.cells = [
            c for c in result.cells if ERROR_MARKER_TAG not in c.metadata.get("tags", [])
        ]
        _hide_injected_parameters(result)
        uses = _read_uses(log)
        if uses:
            _insert_before_first_section(result, provenance_note(uses))
        nbformat.write(result, executed)
        executed.replace(output)
    return uses


def _site_files(project: Path, executed_dir: Path) -> dict[Path, Path]:
    """Relative path in the site -> file to copy there."""
    files = {Path(name): project / name for name in BOOK_CONFIG_FILES}
    for path in sorted((project / BOOK_FOLDER).rglob("*")):
        # regular files only (no sockets, folders or links)
        if not path.is_file() or "_build" in path.parts or ".ipynb_checkpoints" in path.parts:
            continue
        if _COMPANION in path.parts or is_text_notebook(path):
            continue  # the book's code; text notebooks are staged executed, below
        files[path.relative_to(project)] = path
    for page in book_pages(project / BOOK_FOLDER):
        relative = page.path.relative_to(project).with_suffix(".ipynb")
        executed = executed_dir / relative
        if not executed.is_file():
            raise FileNotFoundError(f"{executed} is missing: execute {relative} first (make book)")
        files[relative] = executed
    return files


def stage_site(project: Path, executed_dir: Path, site: Path) -> Path:
    """Make ``site`` hold the book's config and pages, executed notebooks in place of text ones.

    ``executed_dir`` mirrors the project: ``book/x.md`` runs into ``executed_dir/book/x.ipynb``.
    Only files whose content changed are rewritten (and so get a new time), and files no longer in
    the book are removed: Sphinx, which compares times, then re-reads exactly what changed, also
    when the executed notebooks of another profile are older than the last build.
    """
    files = _site_files(project, executed_dir)
    for stale in [path for path in site.rglob("*") if path.is_file()] if site.exists() else []:
        if stale.relative_to(site) not in files:
            stale.unlink()
    for relative, source in files.items():
        target = site / relative
        if not (target.is_file() and filecmp.cmp(source, target, shallow=False)):
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source, target)
    return site


def build_html(site: Path, output_root: Path) -> Path:
    """Render ``site`` with Jupyter Book into ``output_root/_build/html``; the index page's path.

    Raises subprocess.CalledProcessError (its output holds Sphinx's warnings) when the build fails.
    """
    jupyter_book = Path(sys.executable).with_name("jupyter-book")
    command = [
        str(jupyter_book),
        "build",
        str(site),
        "--path-output",
        str(output_root),
        "--builder",
        "html",
        "-W",
        "--keep-going",
    ]
    subprocess.run(command, check=True)
    return output_root / "_build" / "html" / "index.html"


def _page_value(source: Path, page: str | None) -> str | None:
    """The template parameter's value on ``page`` of ``source`` (None when not a template)."""
    template = read_template(source)
    if template is None:
        return None
    if page not in template.pages:
        raise ValueError(f"{source} is a template: pass --page, one of {', '.join(template.pages)}")
    return template.pages[page]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m companion.pipeline")
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("execute", help="execute one text notebook with papermill")
    run.add_argument("source", type=Path)
    run.add_argument("output", type=Path)
    run.add_argument("--profile", required=True)
    run.add_argument("--page", default=None, help="a template's page (its name in the template)")
    run.add_argument(
        "--recompute-since",
        type=float,
        default=None,
        metavar="UNIX_TIME",
        help="recompute stored results written before this time (make execute's start)",
    )
    build = commands.add_parser("build", help="stage the site and build the HTML book")
    build.add_argument("--executed", type=Path, required=True, help="folder of executed notebooks")
    build.add_argument("--site", type=Path, default=Path("_build/site"))
    build.add_argument("--output-root", type=Path, default=Path("."))
    args = parser.parse_args(argv)
    try:
        if args.command == "execute":
            recompute = False if args.recompute_since is None else args.recompute_since
            print(f"executing {args.source} (profile {args.profile})", flush=True)
            value = _page_value(args.source, args.page)
            template = read_template(args.source)
            if template is not None and value is not None:
                cost = template.cost(value, args.profile, recompute)
                if cost:
                    print(cost, flush=True)
            uses = execute_notebook(args.source, args.output, args.profile, recompute, True, value)
            if uses:
                print(f"{args.source}: stored results\n{uses_report(uses)}", flush=True)
        else:
            site = stage_site(Path.cwd(), args.executed, args.site)
            print(f"built {build_html(site, args.output_root)}")
    except (NotebookError, FileNotFoundError, ValueError) as error:
        sys.exit(f"error: {error}")
    except subprocess.CalledProcessError as error:
        sys.exit(
            f"error: jupyter-book build failed (exit {error.returncode}); see its output above"
        )


if __name__ == "__main__":
    main()
