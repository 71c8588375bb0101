"""Where the library keeps the data sets it downloads.

``$PRUNELIMIT_DATA`` when set, else ``data/`` in the checkout holding this package (an editable
install), else ``data/`` in the current directory.
"""

import os
from pathlib import Path

DATA_ENV = "PRUNELIMIT_DATA"


def _checkout() -> Path:
    """The checkout holding this package (editable install), else the current directory."""
    checkout = Path(__file__).resolve().parents[2]
    if (checkout / "pyproject.toml").is_file() and (checkout / "lib" / "prunelimit").is_dir():
        return checkout
    return Path.cwd()


def data_root() -> Path:
    """Folder for data sets the library downloads: ``$PRUNELIMIT_DATA`` or ``<checkout>/data``."""
    configured = os.environ.get(DATA_ENV)
    return Path(configured).expanduser() if configured else _checkout() / "data"
