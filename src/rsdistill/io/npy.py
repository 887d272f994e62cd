"""NumPy .npy arrays: (H, W, B) cubes, (T, H, W, B) time series (choose ``time_index``), (H, W[, 1]) label maps.

Arrays are memory-mapped, never unpickled (``allow_pickle=False``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from rsdistill.errors import InputError


def load_npy(path: Path) -> np.ndarray:
    """The array, memory-mapped; its header is checked first: a numeric (not complex, structured or
    string) dtype, and no more bytes declared than the file holds."""
    try:
        with open(path, "rb") as f:
            version = np.lib.format.read_magic(f)
            read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
            shape, _, dtype = read_header(f)
            offset = f.tell()
    except (ValueError, OSError, EOFError) as error:
        raise InputError(f"{path}: not a readable .npy array ({error})") from None
    if dtype.kind not in "biuf":
        raise InputError(f"{path}: .npy dtype {dtype} is not real numbers (complex, structured and string arrays are not read)")
    declared = int(np.prod(shape, dtype=np.float64)) * dtype.itemsize
    if offset + declared > Path(path).stat().st_size:
        raise InputError(f"{path}: header declares {'×'.join(map(str, shape))} {dtype} ({declared} bytes) "
                         f"but the file holds {Path(path).stat().st_size - offset}")
    try:
        return np.load(path, mmap_mode="r", allow_pickle=False)
    except (ValueError, OSError, EOFError) as error:
        raise InputError(f"{path}: cannot read .npy array, truncated or corrupt? ({error})") from None


def npy_cube(array: np.ndarray, path: Path, time_index: int | None) -> np.ndarray:
    """(H, W, B) view of a .npy array."""
    if array.ndim == 4:
        if time_index is None:
            raise InputError(
                f"{path}: a time series of {array.shape[0]} acquisitions (T, H, W, B) = {array.shape}; "
                f"choose one with time_index (--time-index)"
            )
        if not -array.shape[0] <= time_index < array.shape[0]:
            raise InputError(f"{path}: time index {time_index} outside 0..{array.shape[0] - 1}")
        return array[time_index]
    if array.ndim == 2:
        return array[:, :, None]
    if array.ndim == 3:
        return array
    raise InputError(f"{path}: expected a (H, W, B) or (T, H, W, B) array, got shape {array.shape}")
