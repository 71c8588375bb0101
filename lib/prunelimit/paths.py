"""Where the project keeps its data and stored results.

Both roots can be moved with environment variables, so a copied notebook can point at its own
folders: ``PRUNELIMIT_DATA`` (downloaded data sets) and ``PRUNELIMIT_RESULTS`` (stored results).
"""

import os
from pathlib import Path

DATA_ENV = "PRUNELIMIT_DATA"
RESULTS_ENV = "PRUNELIMIT_RESULTS"


def project_root() -> Path:
    """The checkout holding this package (editable install), else the current directory."""
    checkout = Path(__file__).resolve().parents[2]
    if (checkout / "_toc.yml").is_file() and (checkout / "lib" / "prunelimit").is_dir():
        return checkout
    return Path.cwd()


def _root(env_var: str, default_name: str) -> Path:
    configured = os.environ.get(env_var)
    return Path(configured).expanduser() if configured else project_root() / default_name


def data_root() -> Path:
    """Folder for data sets the project downloads: ``$PRUNELIMIT_DATA`` or ``<root>/data``."""
    return _root(DATA_ENV, "data")


def results_root() -> Path:
    """Folder of stored results: ``$PRUNELIMIT_RESULTS`` or ``<root>/results``."""
    return _root(RESULTS_ENV, "results")
