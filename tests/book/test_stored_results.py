"""The results committed with the book say where they came from."""

import json
from pathlib import Path

import pytest

from tests.book.conftest import PROJECT

RESULTS = PROJECT / "results"
STORED = sorted(RESULTS.rglob("*.json"))
PROVENANCE_KEYS = {"commit", "utc", "device", "torch", "profile", "seconds"}


def test_the_book_comes_with_stored_results() -> None:
    assert any("experiments" in path.parts for path in STORED)


@pytest.mark.parametrize("path", STORED, ids=lambda path: str(path.relative_to(RESULTS)))
def test_every_stored_result_carries_its_provenance(path: Path) -> None:
    stored = json.loads(path.read_text())
    assert set(stored) == {"config", "result", "provenance"}
    provenance = stored["provenance"]
    assert set(provenance) == PROVENANCE_KEYS
    assert provenance["profile"] == path.relative_to(RESULTS).parts[0]
    assert provenance["seconds"] >= 0 and provenance["utc"].endswith("+00:00")
