"""The cones chapter's check of the library's projections (companion.cones.moreau_check)."""

from companion.cones import moreau_check


def test_projections_are_idempotent_and_satisfy_moreau() -> None:
    """Idempotence, orthogonality, and x = Pi_C x + Pi_polar x with the polar by its own formula."""
    for row in moreau_check(d=21, num_points=300):
        assert max(row["idempotence"], row["orthogonality"], row["moreau"]) < 1e-9, row
