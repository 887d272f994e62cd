"""MATLAB .mat files: v5/v7 through scipy, v7.3 (HDF5) through h5py.

Variable names differ between copies of the same data set (``indian_pines_gt``, ``paviaU_gt``,
``y``, ``data``, ``V``...), so the cube and the label map are found by shape, not by name:

- the cube is the numeric candidate with the most bands (then the most pixels), where candidates
  are 3-D arrays (H, W, B) and 2-D pixel matrices (B, N) or (N, B) whose N = H·W is given by
  scalar variables (``nRow``/``nCol``, ``lines``/``cols``...) or is a perfect square. Pixel matrices
  are in MATLAB column-major pixel order (``reshape(..., order="F")``), as in the unmixing sets;
- a label map is a 2-D array of whole numbers in 0..255 of the cube's size;
- wavelengths are a vector whose name contains ``wav`` or ``lambda`` and whose length is B, or
  whose length is that of the original sensor when a band-selection vector (``SlectBands`` in
  Zhu's unmixing files, 1-based) of length B says which bands were kept;
- a scalar ``maxValue`` (Zhu's unmixing files: the cube is stored as integers up to it) divides
  the cube, so it is read in the same [0, 1] units as the file's reference endmembers;
- abundance matrices of an unmixing reference (fractions summing to one per pixel, see
  ``unmixing_reference``) are never taken for a cube of M bands.

``key`` (``--key``) names the cube or label variable explicitly.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
import scipy.io

from rsdistill.errors import InputError
from rsdistill.io.limits import check_read_size
from rsdistill.io.scene import looks_like_class_map
from rsdistill.io.unmixing_reference import is_abundance_matrix

_ROW_NAMES = ("nrow", "nrows", "lines", "rows", "height", "h")
_COL_NAMES = ("ncol", "ncols", "cols", "columns", "samples", "width", "w")
_MAX_VALUE_NAMES = ("maxvalue", "max_value")
_SELECTION_NAMES = ("slectbands", "selectbands", "selected_bands", "selectedbands")


def load_mat_variables(path: Path) -> dict[str, np.ndarray]:
    """All numeric (non-struct, non-cell, non-text) variables of a .mat file, in MATLAB axis order."""
    with open(path, "rb") as handle:
        header = handle.read(128)
    if not header.startswith(b"MATLAB"):
        raise InputError(f"{path}: not a MATLAB .mat file (no 'MATLAB' header)")
    if b"7.3" in header[:20] or h5py.is_hdf5(path):
        return _load_v73(path)
    try:
        raw = scipy.io.loadmat(path)
    except Exception as error:  # scipy raises many types (ValueError, OSError, zlib.error...) for broken files
        raise InputError(f"{path}: cannot read MATLAB file, truncated or corrupt? ({type(error).__name__}: {error})") from None
    return {
        k: v for k, v in raw.items()
        if not k.startswith("__") and isinstance(v, np.ndarray) and v.dtype.kind in "biuf" and v.size > 0
    }


def _load_v73(path: Path) -> dict[str, np.ndarray]:
    """v7.3 files are HDF5 with column-major datasets: h5py sees the axes reversed, so transpose."""
    variables = {}
    try:
        with h5py.File(path, "r") as f:
            for name, item in f.items():
                if isinstance(item, h5py.Dataset) and item.dtype.kind in "biuf" and item.size > 0:
                    check_read_size(path, item.shape[::-1], item.dtype.itemsize, f"variable {name!r}")
                    if item.attrs.get("MATLAB_class", b"") in (b"char", b"cell"):
                        continue
                    variables[name] = np.asarray(item[()]).T
    except OSError as error:
        raise InputError(f"{path}: cannot read MATLAB v7.3 (HDF5) file, truncated or corrupt? ({error})") from None
    return variables


@dataclass
class MatContents:
    """What was found in a .mat file. ``cube`` is (H, W, B); ``labels`` is (H, W)."""

    cube: np.ndarray | None
    cube_key: str | None
    labels: np.ndarray | None
    label_key: str | None
    wavelengths: np.ndarray | None
    variables: dict[str, tuple[int, ...]]
    notes: list[str]


def _scalar(variables: dict[str, np.ndarray], names: tuple[str, ...]) -> float | None:
    for key, value in variables.items():
        if key.lower() in names and value.size == 1:
            return value.ravel()[0].item()
    return None


def grid_of(variables: dict[str, np.ndarray]) -> tuple[int, int] | None:
    """(rows, columns) from scalar variables such as nRow/nCol, or None."""
    rows, cols = _scalar(variables, _ROW_NAMES), _scalar(variables, _COL_NAMES)
    return (int(rows), int(cols)) if rows is not None and cols is not None else None


def _vector(variables: dict[str, np.ndarray], names: tuple[str, ...]) -> tuple[str, np.ndarray] | tuple[None, None]:
    for key, value in variables.items():
        if key.lower() in names and value.ndim <= 2 and min(value.shape) == 1:
            return key, value.ravel()
    return None, None


def _as_cube(array: np.ndarray, rows: int | None, cols: int | None) -> tuple[np.ndarray | None, str | None]:
    """(H, W, B) view of a 3-D array or of a column-major 2-D pixel matrix (or None), and a note on guesses."""
    if array.ndim == 3:
        return array, None
    if array.ndim != 2:
        return None, None
    for pixel_axis in (1, 0):
        n_pixels, n_bands = array.shape[pixel_axis], array.shape[1 - pixel_axis]
        if n_pixels <= n_bands:
            continue
        note = None
        if rows and cols and rows * cols == n_pixels:
            height, width = rows, cols
        elif rows is None and cols is None and round(n_pixels**0.5) ** 2 == n_pixels:
            height = width = round(n_pixels**0.5)
            note = f"{n_pixels} pixels taken as a {height}×{width} square (no row/column count in the file)"
        else:
            continue
        pixels = array.T if pixel_axis == 1 else array  # (N, B)
        # MATLAB column-major: pixel p is row p % H, column p // H.
        return pixels.reshape(width, height, n_bands).transpose(1, 0, 2), note
    return None, None


def inspect_mat(path: Path, key: str | None = None, variables: dict[str, np.ndarray] | None = None) -> MatContents:
    """Find the cube, label map and wavelengths in a .mat file (see module docstring);
    ``variables``: the file's ``load_mat_variables``, when the caller has read them already."""
    variables = load_mat_variables(path) if variables is None else variables
    shapes = {k: v.shape for k, v in variables.items()}
    if not any(v.ndim in (2, 3) and min(v.shape) > 1 for v in variables.values()):
        raise InputError(f"{path}: no 2-D or 3-D numeric variable (variables: {_listing(shapes) or 'none'})")
    if key is not None and key not in variables:
        raise InputError(f"{path}: no numeric variable {key!r}; variables: {_listing(shapes)}")
    rows, cols = grid_of(variables) or (None, None)
    names = [key] if key is not None else [n for n, v in variables.items() if not is_abundance_matrix(v)]
    # A 2-D map of class ids is never read as a pixel matrix (a 100×80 label map is not 10×10 pixels × 80 bands).
    layouts = {n: _as_cube(variables[n], rows, cols) for n in names if not (variables[n].ndim == 2 and looks_like_class_map(variables[n]))}
    cubes = {n: cube for n, (cube, _) in layouts.items() if cube is not None}
    if key is not None and key not in cubes and looks_like_class_map(variables[key]):
        return MatContents(None, None, variables[key], key, None, shapes, [])
    cube_key = max(cubes, key=lambda n: (cubes[n].shape[2], cubes[n].shape[0] * cubes[n].shape[1]), default=None)
    if key is not None and cube_key is None:
        raise InputError(f"{path}: variable {key!r} {shapes[key]} is neither a cube (H, W, B) nor a label map")
    cube = cubes.get(cube_key)
    notes = [f"{cube_key}: {layouts[cube_key][1]}"] if cube_key and layouts[cube_key][1] else []
    label_candidates = [
        n for n, v in variables.items()
        if n != cube_key and looks_like_class_map(v) and (cube is None or v.shape == cube.shape[:2])
    ]
    label_key = max(label_candidates, key=lambda n: variables[n].size, default=None)
    if cube is not None:  # a class map beside the cube that does not fit it is reported, never dropped silently
        notes += [f"{n} {'×'.join(map(str, v.shape))} looks like a label map but the cube {cube_key} is {cube.shape[0]}×{cube.shape[1]}; "
                  f"it is not used as the cube's labels" for n, v in variables.items()
                  if n != cube_key and v.ndim == 2 and looks_like_class_map(v) and v.shape != cube.shape[:2]]
    wavelengths = None
    if cube is not None:
        max_value = _scalar(variables, _MAX_VALUE_NAMES)
        if max_value is not None and max_value > 0 and cube.dtype.kind in "iuf" and cube.max() > 1:
            cube = cube / np.float32(max_value)
            notes.append(f"{cube_key}: divided by the file's maxValue {max_value:g}")
        selection_key, selection = _vector(variables, _SELECTION_NAMES)
        if selection is not None and selection.size == cube.shape[2]:
            notes.append(f"{cube_key}: bands {selection_key} (1-based) {int(selection.min())}-{int(selection.max())} of the original sensor")
        for name, value in variables.items():
            if not ("wav" in name.lower() or "lambda" in name.lower()):
                continue
            if value.size == cube.shape[2]:
                wavelengths = value.astype(np.float64).ravel()
            elif selection is not None and selection.size == cube.shape[2] and selection.max() <= value.size:
                wavelengths = value.astype(np.float64).ravel()[selection.astype(int) - 1]
            if wavelengths is not None:
                if wavelengths.max() < 30:  # micrometres
                    wavelengths = wavelengths * 1000.0
                break
    return MatContents(
        cube, cube_key, variables[label_key] if label_key else None, label_key, wavelengths, shapes, notes
    )


def _listing(shapes: dict[str, tuple[int, ...]]) -> str:
    return ", ".join(f"{k} {'×'.join(map(str, s))}" for k, s in shapes.items())
