"""Tables for notebook output: HTML that fits the book's text column, plain text in a terminal."""

import dataclasses
import html
from collections.abc import Iterable, Sequence

# Small type, cells that wrap, and a width of the column: no horizontal scrolling in the book.
_TABLE_STYLE = "font-size: 0.85em; width: auto; max-width: 100%; border-collapse: collapse;"
_CELL_STYLE = "padding: 0.15em 0.5em; text-align: right; white-space: normal;"


@dataclasses.dataclass(frozen=True, repr=False)
class Table:
    """Rows of cells under named columns; shown as HTML by Jupyter, as aligned text by ``str``."""

    columns: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]
    caption: str = ""

    def _repr_html_(self) -> str:
        def cells(tag: str, row: Sequence[str]) -> str:
            return "".join(f'<{tag} style="{_CELL_STYLE}">{html.escape(c)}</{tag}>' for c in row)

        caption = f"<caption>{html.escape(self.caption)}</caption>" if self.caption else ""
        body = "".join(f"<tr>{cells('td', row)}</tr>" for row in self.rows)
        return (
            f'<table style="{_TABLE_STYLE}">{caption}'
            f"<thead><tr>{cells('th', self.columns)}</tr></thead><tbody>{body}</tbody></table>"
        )

    def __str__(self) -> str:
        text = text_table(self.columns, self.rows)
        return f"{self.caption}\n{text}" if self.caption else text

    __repr__ = __str__  # the text/plain form Jupyter keeps beside the HTML


def table(columns: Sequence[str], rows: Iterable[Sequence[object]], caption: str = "") -> Table:
    """A ``Table`` of ``rows`` (cells shown with ``str``) under ``columns``."""
    cells = tuple(tuple(str(cell) for cell in row) for row in rows)
    if any(len(row) != len(columns) for row in cells):
        raise ValueError(f"every row needs {len(columns)} cells")
    return Table(tuple(str(c) for c in columns), cells, caption)


def records_table(records: Sequence[dict[str, object]], caption: str = "") -> Table:
    """A ``Table`` of dicts that share their keys (the keys become the columns)."""
    if not records:
        raise ValueError("no records to show")
    return table(list(records[0]), [list(r.values()) for r in records], caption)


def text_table(columns: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    """Columns right-aligned to their widest entry; cells are shown with ``str``."""
    cells = [[str(cell) for cell in row] for row in rows]
    if any(len(row) != len(columns) for row in cells):
        raise ValueError(f"every row needs {len(columns)} cells")
    widths = [max(len(text) for text in column) for column in zip(columns, *cells, strict=True)]
    lines = [list(columns), ["-" * width for width in widths], *cells]
    return "\n".join(
        "  ".join(text.rjust(width) for text, width in zip(line, widths, strict=True))
        for line in lines
    )
