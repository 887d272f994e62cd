"""Where real data lives: ``$RSDISTILL_DATA``, else ``../shared/data`` from the working directory."""

from __future__ import annotations

import os
from pathlib import Path


def data_root() -> Path:
    return Path(os.environ.get("RSDISTILL_DATA", Path("..") / "shared" / "data"))


def resolve(path: str, root: str | None = None) -> Path:
    """``path`` as given if absolute or existing, else relative to ``root`` (default ``data_root()``)."""
    candidate = Path(path)
    if candidate.is_absolute() or candidate.exists():
        return candidate
    return Path(root) / candidate if root else data_root() / candidate
