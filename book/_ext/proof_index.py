"""Sphinx extension of the book: the proof index page (``prf-prf.html``) lists every definition,
lemma, proposition and theorem by its number and title, with the chapter it is in.

sphinx-proof 0.4.0 builds that page from its table of labels alone, and never stores a
directive's title, so every entry showed a raw label such as ``thm-kinematic``. This extension
records each directive's title when its page is read, and replaces the index's ``generate``.
"""

import re
from collections import defaultdict
from typing import Any

from docutils import nodes
from sphinx.application import Sphinx
from sphinx.environment import BuildEnvironment
from sphinx_proof.domain import ProofIndex

# Enough LaTeX for math in a title to read as text where MathJax does not run (the index page).
_LATEX_WORDS = {
    r"\ell": "\N{SCRIPT SMALL L}",
    r"\epsilon": "\N{GREEK SMALL LETTER EPSILON}",
    r"\delta": "\N{GREEK SMALL LETTER DELTA}",
    r"\rho": "\N{GREEK SMALL LETTER RHO}",
    r"\lambda": "\N{GREEK SMALL LETTER LAMDA}",
}
_SUBSCRIPTS = str.maketrans("0123456789", "".join(chr(0x2080 + digit) for digit in range(10)))


def _math_as_text(latex: str) -> str:
    for word, symbol in _LATEX_WORDS.items():
        latex = re.sub(re.escape(word) + r"(?![A-Za-z])", symbol, latex)
    latex = re.sub(r"_\{?(\d+)\}?", lambda m: m.group(1).translate(_SUBSCRIPTS), latex)
    return re.sub(r"\\[A-Za-z]+|[{}\\]", "", latex).strip()


def _title_text(title: nodes.Node, title_format: str) -> str:
    """The directive's argument as plain text: math made readable, the configured
    ``proof_title_format`` (by default ``" (%t)"``) taken off again."""
    parts = [
        _math_as_text(node.astext()) if isinstance(node, nodes.math) else node.astext()
        for node in title.findall(lambda n: isinstance(n, nodes.math | nodes.Text))
        if not any(isinstance(parent, nodes.math) for parent in _ancestors(node))
    ]
    text = " ".join("".join(parts).split())
    before, _, after = title_format.partition("%t")
    before, after = before.strip(), after.strip()
    if before and text.startswith(before):
        text = text[len(before) :]
    if after and text.endswith(after):
        text = text[: -len(after)]
    return text.strip()


def _ancestors(node: nodes.Node):
    parent = node.parent
    while parent is not None:
        yield parent
        parent = parent.parent


def record_titles(app: Sphinx, doctree: nodes.document) -> None:
    """Store each sphinx-proof directive's title in its entry of ``env.proof_list``."""
    proofs = getattr(app.env, "proof_list", {})
    for node in doctree.findall(nodes.Element):
        label = node.get("label")
        if not node.get("realtype") or label not in proofs:
            continue
        titles = [child for child in node.children if isinstance(child, nodes.title)]
        text = _title_text(titles[0], app.config.proof_title_format) if titles else ""
        proofs[label]["title"] = text


def _number(env: BuildEnvironment, entry: dict[str, Any]) -> str:
    if entry.get("nonumber"):
        return ""
    numbers = env.toc_fignumbers.get(entry["docname"], {}).get(entry["countertype"], {})
    return ".".join(str(n) for n in numbers.get(entry["label"], ()))


def generate(self: ProofIndex, docnames=None) -> tuple[list, bool]:
    """One group per kind (Definition, Lemma, ...), entries in the order of their numbers:
    "Theorem 4: Approximate kinematic formula", linked, with the chapter's title beside it."""
    env = self.domain.env
    groups: dict[str, list] = defaultdict(list)
    for label, entry in getattr(env, "proof_list", {}).items():
        if docnames and entry["docname"] not in docnames:
            continue
        kind = entry["realtype"].title()
        number = _number(env, entry)
        heading = f"{kind} {number}".strip()
        title = entry.get("title", "")
        name = f"{heading}: {title}" if title else heading
        chapter = env.titles[entry["docname"]].astext() if entry["docname"] in env.titles else ""
        order = tuple(int(n) for n in number.split(".")) if number else (0,)
        groups[kind].append((order, (name, 0, entry["docname"], label, "", "", chapter)))
    content = [
        (kind, [row for _, row in sorted(rows, key=lambda item: item[0])])
        for kind, rows in sorted(groups.items())
    ]
    return content, True


def setup(app: Sphinx) -> dict[str, Any]:
    app.setup_extension("sphinx_proof")
    ProofIndex.generate = generate
    app.connect("doctree-read", record_titles)
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}
