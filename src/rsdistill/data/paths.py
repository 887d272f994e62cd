"""Where real data lives: the one data-root rule of rsdistill, for recipes, verbs and tests alike.

A relative data path is taken as it is when it exists from the working directory, else under the
recipe's ``root`` when one is given, else under ``$RSDISTILL_DATA``, else under ``../shared/data``
from the working directory.
"""

from __future__ import annotations

import csv
import os
from pathlib import Path

from rsdistill.errors import InputError


def data_root() -> Path:
    return Path(os.environ.get("RSDISTILL_DATA", Path("..") / "shared" / "data"))


def resolve(path: str, root: str | None = None) -> Path:
    """``path`` as given if absolute or existing, else relative to ``root`` (default ``data_root()``)."""
    candidate = Path(path)
    if candidate.is_absolute() or candidate.exists():
        return candidate
    return Path(root) / candidate if root else data_root() / candidate


def data_file(path) -> Path:
    """A file or folder a verb reads, found by the data-root rule (``resolve``); not found is one
    line naming every place looked."""
    candidate = Path(path)
    found = resolve(str(path))
    if found.exists():
        return found
    places = [str(candidate)] if candidate.is_absolute() else [str(candidate), str(data_root() / candidate)]
    raise InputError(f"{path}: no such file or folder (looked in {' and '.join(dict.fromkeys(places))}; "
                     "relative paths are also read under $RSDISTILL_DATA, default ../shared/data)")


def expand(pattern: str, root: str | None = None) -> list[Path]:
    """The files matching ``pattern`` (a path or a glob such as ``eurosat_ms_samples/*/*.tif``),
    resolved like ``resolve``, sorted. A glob matching nothing is an error naming it."""
    if not any(ch in pattern for ch in "*?["):
        return [resolve(pattern, root)]
    base = Path(root) if root else data_root()
    matches = sorted(Path(pattern).parent.glob(Path(pattern).name)) if Path(pattern).is_absolute() else sorted(base.glob(pattern))
    if not matches:
        raise InputError(f"no file matches {pattern!r} under {base}")
    return matches


def read_tile_list(csv_path: Path) -> list[tuple[Path, Path]]:
    """(image, mask) pairs of a CSV with columns image,mask, paths relative to the CSV's folder."""
    if not Path(csv_path).is_file():
        raise InputError(f"{csv_path}: no such tile list (relative paths are read under the data root: $RSDISTILL_DATA, default ../shared/data)")
    with open(csv_path, newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows or not {"image", "mask"} <= set(rows[0]):
        raise InputError(f"{csv_path}: expected a CSV with columns image,mask")
    return [(csv_path.parent / r["image"], csv_path.parent / r["mask"]) for r in rows]
