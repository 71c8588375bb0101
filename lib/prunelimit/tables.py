"""Plain-text tables for notebook output."""

from collections.abc import Iterable, Sequence


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
