"""How much a whole-scene read may take in memory, checked from the declared shape before reading.

A file's header can declare any shape (a 1.9 kB HDF5 file can declare 200 × 100000 × 100000
samples); reading such a cube whole would try to allocate it. Every in-memory read is checked
against ``max_read_bytes()``: ``$RSDISTILL_MAX_READ_BYTES``, default 4 GiB (a cube read whole is
held about three times over while the nodata policy is applied). Windowed, streaming verbs
(``stats``, ``map``) read any size by windows.
"""

from __future__ import annotations

import os

import numpy as np

from rsdistill.errors import InputError

DEFAULT_MAX_READ_BYTES = 4 * 1024**3


def max_read_bytes() -> int:
    value = os.environ.get("RSDISTILL_MAX_READ_BYTES")
    try:
        return int(float(value)) if value else DEFAULT_MAX_READ_BYTES
    except ValueError:
        raise InputError(f"RSDISTILL_MAX_READ_BYTES={value!r} is not a number of bytes") from None


def check_read_size(path, shape: tuple[int, ...], itemsize: int = 4, what: str = "the whole scene") -> None:
    """Refuse a read of ``shape`` samples of ``itemsize`` bytes beyond the limit, naming the file and shape."""
    size = int(np.prod(shape, dtype=np.float64)) * itemsize
    limit = max_read_bytes()
    if size > limit:
        raise InputError(
            f"{path}: reading {what} ({'×'.join(map(str, shape))}) would take {size / 1e9:.1f} GB in memory, more than "
            f"the {limit / 1e9:.1f} GB allowed (RSDISTILL_MAX_READ_BYTES); read it by windows (stats, map) or raise the limit"
        )
