"""Plain-text tables."""

import pytest

from prunelimit.tables import records_table, table, text_table


def test_columns_are_right_aligned_under_a_rule() -> None:
    table = text_table(["name", "value"], [["a", 1.5], ["longer", 10]])
    assert table.splitlines() == [
        "  name  value",
        "------  -----",
        "     a    1.5",
        "longer     10",
    ]


def test_rows_of_the_wrong_length_are_refused() -> None:
    with pytest.raises(ValueError, match="every row needs 2 cells"):
        text_table(["a", "b"], [[1]])


def test_a_table_is_html_for_the_book_and_aligned_text_elsewhere() -> None:
    shown = table(["name", "value"], [["<a>", 1.5], ["b & c", 10]], caption="Two rows")
    html = shown._repr_html_()
    assert html.startswith("<table") and "<caption>Two rows</caption>" in html
    assert "&lt;a&gt;" in html and "b &amp; c" in html, "cells are escaped"
    assert html.count("<tr>") == 3 and "max-width: 100%" in html
    assert str(shown).splitlines()[0] == "Two rows" and repr(shown) == str(shown)
    assert records_table([{"x": 1, "y": 2}]).columns == ("x", "y")
    with pytest.raises(ValueError, match="every row needs 2 cells"):
        table(["a", "b"], [[1]])
    with pytest.raises(ValueError, match="no records"):
        records_table([])
