"""Where real data lives: ``$RSDISTILL_DATA``, else ``../shared/data`` from the working directory."""

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


def read_tile_list(csv_path: Path) -> list[tuple[Path, Path]]:
    """(image, mask) pairs of a CSV with columns image,mask, paths relative to the CSV's folder."""
    with open(csv_path, newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows or not {"image", "mask"} <= set(rows[0]):
        raise InputError(f"{csv_path}: expected a CSV with columns image,mask")
    return [(csv_path.parent / r["image"], csv_path.parent / r["mask"]) for r in rows]
