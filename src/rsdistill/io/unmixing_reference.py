"""Unmixing references: reference endmembers, abundances and material names in a .mat file.

The common unmixing files (Zhu's Samson/Jasper/Urban ground truths, the CyCU-Net/uDAS and MUNet
copies, the PLMM Moffett subset) hold the same three things under different names and layouts:

- endmembers: a (bands, M) matrix (``M``, ``GT``, ``E``, ``endmembers``...), sometimes (M, bands)
  (Moffett's ``GT``). A file may also hold an initialisation of the same shape (``M1``), so a
  known name wins over shape and an unknown pair is an error asking for ``endmembers_key``;
- abundances: (M, N) over the N = H·W pixels in MATLAB column-major order (``A``), or an
  (H, W, M) map (``S_GT``, MUUFL's ``label``), summing to one over the M materials. The pixel
  order of an (M, N) matrix is checked against the cube when one is given: the reference
  endmembers times the abundances must reproduce it (see ``pixel_order``);
- names: a cell array of strings (``cood`` in Zhu's files, ``material_names``), optional.

Abundances are recognised by summing to one per pixel, so ``info`` and the cube finder never take
an (M, N) abundance matrix for an image of M bands.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import scipy.io

from rsdistill.errors import InputError

ENDMEMBER_NAMES = ("M", "GT", "E", "endmembers", "Endmembers", "W")
ABUNDANCE_NAMES = ("A", "S_GT", "abundances", "Abundances", "label", "S", "X")
NAME_VARIABLES = ("cood", "material_names", "names", "endmember_names")
PIXEL_ORDERS = ("auto", "column", "row")
MAX_ENDMEMBERS = 32
SUM_TO_ONE_TOLERANCE = 0.02


def is_abundance_matrix(array: np.ndarray) -> bool:
    """A (M, N) or (H, W, M) array of fractions in [0, 1] summing to one per pixel, M ≤ 32."""
    if array.dtype.kind not in "fiu" or array.ndim not in (2, 3) or array.size == 0:
        return False
    materials = array.reshape(array.shape[0], -1) if array.ndim == 2 else array.reshape(-1, array.shape[2]).T
    if not 2 <= materials.shape[0] <= MAX_ENDMEMBERS or materials.shape[1] <= materials.shape[0]:
        return False
    sums = materials.sum(axis=0, dtype=np.float64)
    return bool(materials.min() >= -1e-6 and np.abs(sums - 1).mean() < SUM_TO_ONE_TOLERANCE)


def _pixels_of(array: np.ndarray) -> int:
    return array.shape[1] if array.ndim == 2 else array.shape[0] * array.shape[1]


def _materials_of(array: np.ndarray) -> int:
    return array.shape[0] if array.ndim == 2 else array.shape[2]


@dataclass
class UnmixingReference:
    """Reference endmembers (bands, M), abundances (M, H·W) in row-major pixel order (or None when
    the file holds only endmembers), material names, and how they were found."""

    path: str
    endmembers: np.ndarray
    abundances: np.ndarray | None
    names: list[str]
    endmembers_key: str
    abundances_key: str | None
    notes: list[str] = field(default_factory=list)

    @property
    def count(self) -> int:
        return self.endmembers.shape[1]


def find_reference_keys(variables: dict[str, np.ndarray], endmembers_key: str | None = None,
                        abundances_key: str | None = None, path="the file", bands: int | None = None) -> tuple[str, str | None] | None:
    """(endmembers key, abundances key or None) of the reference in ``variables``, or None when
    there is none; ambiguous or wrong explicit keys are errors naming the candidates. With the
    cube's ``bands`` known, an endmember matrix has an axis of that length and M ≤ 32 on the other."""
    for key in (endmembers_key, abundances_key):
        if key is not None and key not in variables:
            raise InputError(f"{path}: no numeric variable {key!r}; variables: {', '.join(variables)}")
    if abundances_key is not None and not is_abundance_matrix(variables[abundances_key]):
        raise InputError(f"{path}: {abundances_key!r} {variables[abundances_key].shape} is not an abundance matrix "
                         f"((M, pixels) or (H, W, M) fractions summing to one per pixel)")
    abundance_keys = [abundances_key] if abundances_key else [k for k, v in variables.items() if is_abundance_matrix(v)]
    counts = {_materials_of(variables[k]) for k in abundance_keys}

    def endmember_like(value: np.ndarray) -> bool:
        if value.ndim != 2 or value.dtype.kind not in "fiu":
            return False
        if bands is not None:
            if bands not in value.shape:
                return False
            small = value.shape[1] if value.shape[0] == bands else value.shape[0]
        else:
            small = min(value.shape)
        return 2 <= small <= MAX_ENDMEMBERS and max(value.shape) > small and (not counts or small in counts)

    if endmembers_key is not None:
        if not endmember_like(variables[endmembers_key]):
            raise InputError(f"{path}: endmembers {endmembers_key!r} are {'×'.join(map(str, variables[endmembers_key].shape))}; expected "
                             f"(bands{' = ' + str(bands) if bands else ''}, M) with M ≤ {MAX_ENDMEMBERS}{' and M = ' + str(sorted(counts)) if counts else ''}")
        chosen = endmembers_key
    else:
        candidates = [k for k, v in variables.items() if endmember_like(v) and k not in abundance_keys]
        if not candidates:
            return None
        named = [k for k in ENDMEMBER_NAMES if k in candidates]
        if len(candidates) > 1 and not named:
            raise InputError(f"{path}: several endmember-like matrices ({', '.join(candidates)}); name one with endmembers_key")
        chosen = named[0] if named else candidates[0]
    m = min(variables[chosen].shape)
    matching = [k for k in abundance_keys if _materials_of(variables[k]) == m]
    named = [k for k in ABUNDANCE_NAMES if k in matching]
    if len(matching) > 1 and not named:
        raise InputError(f"{path}: several abundance matrices ({', '.join(matching)}); name one with abundances_key")
    return chosen, (named[0] if named else matching[0] if matching else None)


def _names(path: Path, count: int) -> list[str]:
    """Material names from a cell array of strings (v5 files only; numbering such as '1-' dropped)."""
    try:
        raw = scipy.io.loadmat(path)
    except Exception:  # v7.3 (HDF5) or unreadable: names are optional
        return []
    for key in NAME_VARIABLES:
        value = raw.get(key)
        if isinstance(value, np.ndarray) and value.dtype == object and value.size == count:
            strings = [str(np.asarray(item).ravel()[0]) if np.asarray(item).size else "" for item in value.ravel()]
            return [re.sub(r"^\s*\d+\s*[-_.:]\s*", "", s).strip() for s in strings]
    return []


def _endmember_matrix(value: np.ndarray, bands: int | None) -> np.ndarray:
    """(bands, M) whichever way the file stores it (``find_reference_keys`` checked the shape)."""
    if bands is None:
        return value if value.shape[0] > value.shape[1] else value.T
    return value if value.shape[0] == bands else value.T


def _reconstruction_fit(endmembers: np.ndarray, abundances: np.ndarray, cube: np.ndarray) -> float:
    """Correlation between the cube and E·A over pixels, each band's mean removed (the spatial
    pattern, which the pixel order decides; the mean spectrum matches in either order): ≈1 when
    the order is right."""
    mixed = (endmembers @ abundances).T
    pixels = cube.reshape(-1, cube.shape[2]).astype(np.float64)
    mixed, pixels = mixed - mixed.mean(axis=0), pixels - pixels.mean(axis=0)
    return float((mixed * pixels).sum() / max(np.linalg.norm(mixed) * np.linalg.norm(pixels), 1e-30))


def _row_major(abundances: np.ndarray, order: str, height: int, width: int) -> np.ndarray:
    """(M, N) in ``order`` ('column' = MATLAB) -> (M, H·W) row-major."""
    m = abundances.shape[0]
    if order == "row":
        return abundances.reshape(m, -1)
    return abundances.reshape(m, width, height).transpose(0, 2, 1).reshape(m, -1)


def read_reference(path, variables: dict[str, np.ndarray], cube: np.ndarray | None = None, *,
                   endmembers_key: str | None = None, abundances_key: str | None = None,
                   pixel_order: str = "auto", grid: tuple[int, int] | None = None) -> UnmixingReference:
    """The reference in ``variables`` (those of the .mat ``path``), checked against ``cube``
    (H, W, bands) when given. ``pixel_order`` of an (M, N) abundance matrix: ``column`` (MATLAB),
    ``row``, or ``auto`` (the order whose E·A reproduces the cube; column without a cube).
    ``grid``: (H, W) of the abundances when there is no cube (e.g. from nRow/nCol)."""
    if pixel_order not in PIXEL_ORDERS:
        raise InputError(f"pixel_order {pixel_order!r}: choose one of {', '.join(PIXEL_ORDERS)}")
    bands = cube.shape[2] if cube is not None else None
    keys = find_reference_keys(variables, endmembers_key, abundances_key, path, bands)
    if keys is None:
        raise InputError(f"{path}: no reference endmembers found (a (bands, M) matrix, M ≤ {MAX_ENDMEMBERS}); "
                         f"variables: {', '.join(f'{k} {v.shape}' for k, v in variables.items())}")
    e_key, a_key = keys
    endmembers = _endmember_matrix(variables[e_key].astype(np.float64), bands)
    notes, abundances = [], None
    height, width = cube.shape[:2] if cube is not None else (grid or (None, None))
    if a_key is not None:
        value = variables[a_key].astype(np.float64)
        if cube is not None and _pixels_of(value) != height * width:
            raise InputError(f"{path}: abundances {a_key!r} {value.shape} cover {_pixels_of(value)} pixels but the cube has "
                             f"{height}×{width} = {height * width}")
        if value.ndim == 3:
            height, width = value.shape[:2]
            abundances = value.reshape(-1, value.shape[2]).T
        elif height is None:
            notes.append(f"abundances {a_key!r} {value.shape}: image size unknown (no cube, no row/column count)")
            abundances = value
        else:
            order = pixel_order
            if order == "auto" and cube is not None:
                fits = {o: _reconstruction_fit(endmembers, _row_major(value, o, height, width), cube) for o in ("column", "row")}
                order = max(fits, key=fits.get)
                notes.append(f"abundances {a_key!r}: {order}-major pixel order (E·A reproduces the cube with correlation "
                             f"{fits[order]:.3f}, the other order {fits['row' if order == 'column' else 'column']:.3f})")
            elif order == "auto":
                order = "column"
                notes.append(f"abundances {a_key!r}: column-major (MATLAB) pixel order assumed")
            abundances = _row_major(value, order, height, width)
    names = _names(Path(path), endmembers.shape[1]) or [f"endmember {i + 1}" for i in range(endmembers.shape[1])]
    return UnmixingReference(str(path), endmembers, abundances, names, e_key, a_key, notes)


def describe_reference(reference: UnmixingReference, grid: tuple[int, int] | None) -> list[str]:
    """``info`` lines of a reference: endmembers, abundances (sum-to-one check), names."""
    bands, m = reference.endmembers.shape
    lines = [f"unmixing     reference: {m} endmembers × {bands} bands ({reference.endmembers_key!r}, "
             f"values {reference.endmembers.min():.4g} to {reference.endmembers.max():.4g})"]
    if reference.abundances is not None:
        sums = reference.abundances.sum(axis=0)
        size = f" = {grid[0]} × {grid[1]}" if grid and grid[0] * grid[1] == reference.abundances.shape[1] else ""
        lines.append(f"abundances   {reference.abundances_key!r}: {m} × {reference.abundances.shape[1]} pixels{size}; "
                     f"sum to one within {np.abs(sums - 1).max():.2g}")
    lines.append(f"materials    {', '.join(reference.names)}")
    return lines + [f"note         {n}" for n in reference.notes]
