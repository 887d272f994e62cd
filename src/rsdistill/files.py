"""Writing files so that an interrupted write never leaves a half-written file under the final name."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path

from rsdistill.errors import InputError


def atomic_write(path, write: Callable[[str], None]) -> Path:
    """Call ``write(temporary_path)`` next to ``path``, then rename it to ``path``. A folder or an
    unwritable place is an ``InputError`` naming ``path``."""
    path = Path(path)
    if path.is_dir():
        raise InputError(f"{path}: is a folder; give a file name to write")
    blocking = next((parent for parent in path.parents if parent.exists() and not parent.is_dir()), None)
    if blocking is not None:
        raise InputError(f"{path}: cannot write here, {blocking} is a file, not a folder")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, partial = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".partial", dir=path.parent)
    except OSError as error:
        raise InputError(f"{path}: cannot write here ({error.strerror or error})") from None
    os.close(handle)
    os.chmod(partial, 0o666 & ~_umask())  # mkstemp makes 0600; a result gets the user's normal mode
    try:
        write(partial)
        os.replace(partial, path)
    finally:
        if os.path.exists(partial):
            os.remove(partial)
    return path


def _umask() -> int:
    current = os.umask(0)
    os.umask(current)
    return current


def write_json(path, doc, indent: int | None = 1) -> Path:
    return atomic_write(path, lambda tmp: Path(tmp).write_text(json.dumps(doc, indent=indent)))
