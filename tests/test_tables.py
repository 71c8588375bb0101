"""Plain-text tables."""

import pytest

from prunelimit.tables import text_table


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
