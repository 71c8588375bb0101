"""Fetching data files: MD5-checked downloads that never leave a partial file, and the error
raised when a data set is not on this machine."""

import hashlib
import shutil
import urllib.request
from pathlib import Path

from prunelimit.store import atomic_file


class MissingDataError(FileNotFoundError):
    """A data set is not on this machine; the message says how to provide it."""


def file_md5(path: Path) -> str:
    """Hex MD5 digest of a file, read in 1 MiB blocks."""
    digest = hashlib.md5(usedforsecurity=False)
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def download_checked(url: str, target: Path, expected_md5: str) -> Path:
    """Download ``url`` to ``target`` unless it is already there with that MD5; the file is
    checked by MD5 and moved in atomically (no partial file is ever left under ``target``)."""
    if target.is_file() and file_md5(target) == expected_md5:
        return target
    with atomic_file(target, suffix=".part") as partial:
        with urllib.request.urlopen(url, timeout=60) as response, open(partial, "wb") as part:
            shutil.copyfileobj(response, part)
        if file_md5(partial) != expected_md5:
            raise ValueError(f"{url}: MD5 differs from the official {expected_md5}")
    return target
