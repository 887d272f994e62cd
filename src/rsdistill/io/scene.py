"""The ``Scene``: a hyperspectral or multispectral cube with everything needed to use it correctly.

Every reader in ``rsdistill.io`` produces a ``Scene`` through ``Scene.from_raw``, so the policy for
nodata, NaN/Inf and bad bands lives in exactly one place:

- a sample is *missing* if it equals the file's nodata value or is NaN/Inf (NaN/Inf are treated as
  nodata, never propagated);
- a band is *bad* if the file's metadata says so (ENVI/GDAL ``bbl``), the caller says so, or it has
  no valid sample at all and ``empty_bands="bad"`` is asked for; by default an all-nodata band that
  the metadata does not flag is an error, because it usually means a wrong nodata value;
- a pixel is *valid* if none of its good bands is missing (so none is when every band is bad);
- missing samples and bad bands are stored as 0 in ``cube``; use ``valid`` and ``bad_bands``.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from rsdistill.errors import InputError
from rsdistill.spectral.sensors import Sensor, get_sensor


@dataclass(frozen=True)
class Window:
    """A rectangle of pixels: rows ``row:row+height``, columns ``col:col+width``."""

    row: int
    col: int
    height: int
    width: int

    @property
    def slices(self) -> tuple[slice, slice]:
        return slice(self.row, self.row + self.height), slice(self.col, self.col + self.width)


def parse_window(window: Window | dict | None, path) -> Window | None:
    """A ``Window`` from a recipe's {row, col, height, width} (or None / a ``Window`` as given)."""
    if isinstance(window, dict):
        if set(window) != {"row", "col", "height", "width"}:
            raise InputError(f"{path}: window needs exactly row, col, height and width, got {sorted(window)}")
        window = Window(**{k: int(v) for k, v in window.items()})
    return window


def tile_windows(height: int, width: int, size: int, stride: int | None = None, edges: str = "clip") -> list[Window]:
    """Windows of ``size``×``size`` every ``stride`` pixels (default: ``size``) over a
    ``height``×``width`` raster. ``edges``: what happens where the last stride overhangs the raster:
    ``clip`` (edge windows cut to the raster: every pixel in exactly one window at stride ``size``),
    ``shift`` (a last full window aligned to the far edge: every pixel covered by full windows, as
    sliding-window segmentation needs; the raster must be at least ``size`` on each side), or
    ``drop`` (only windows wholly inside: training tiles)."""
    if size < 1:
        raise InputError(f"tile size must be positive, got {size}")
    if edges not in ("clip", "shift", "drop"):
        raise InputError(f"edges must be clip, shift or drop, got {edges!r}")
    stride = stride or size
    if edges == "shift" and (height < size or width < size):
        raise InputError(f"a {height}×{width} raster is smaller than the {size}-pixel windows that must cover it")

    def starts(extent: int) -> list[int]:
        if edges == "clip":
            return list(range(0, extent, stride))
        positions = list(range(0, extent - size + 1, stride))
        if edges == "shift" and (not positions or positions[-1] != extent - size):
            positions.append(extent - size)
        return positions

    return [Window(r, c, min(size, height - r), min(size, width - c)) for r in starts(height) for c in starts(width)]


@dataclass
class SceneMetadata:
    """What a reader knows about a file besides its pixel values."""

    path: str
    format: str
    dtype: str
    wavelengths: np.ndarray | None = None  # (B,) nm
    fwhm: np.ndarray | None = None  # (B,) nm
    bad_bands: np.ndarray | None = None  # (B,) bool
    nodata: float | None = None
    band_names: list[str] | None = None
    crs: Any = None
    transform: Any = None  # affine.Affine of the full raster
    notes: list[str] = field(default_factory=list)


@dataclass
class Scene:
    """A cube with its spectral and spatial metadata.

    Attributes:
        cube: (H, W, B) float32; missing samples and bad bands hold 0.
        valid: (H, W) bool, True where every good band has data.
        bad_bands: (B,) bool.
        band_has_data: (B,) bool, False for a band with no valid sample in this scene or window.
        wavelengths, fwhm: (B,) band centres and widths in nm, or None when the file has none.
        labels: (H, W) int64 class map, 0 = unlabelled, or None.
        crs, transform: georeferencing (rasterio CRS and affine.Affine) or None.
    """

    cube: np.ndarray
    valid: np.ndarray
    bad_bands: np.ndarray
    band_has_data: np.ndarray | None = None
    wavelengths: np.ndarray | None = None
    fwhm: np.ndarray | None = None
    labels: np.ndarray | None = None
    crs: Any = None
    transform: Any = None
    path: str = ""
    format: str = "array"
    dtype: str = "float32"
    nodata: float | None = None
    band_names: list[str] | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def shape(self) -> tuple[int, int, int]:
        return self.cube.shape

    @classmethod
    def from_raw(
        cls,
        raw: np.ndarray,
        meta: SceneMetadata,
        window: Window | None = None,
        empty_bands: str = "error",
    ) -> Scene:
        """Apply the nodata / bad-band policy (module docstring) to a raw (H, W, B) array."""
        if raw.ndim != 3:
            raise InputError(f"{meta.path}: expected a 3-D cube (H, W, B), got shape {raw.shape}")
        n_bands = raw.shape[2]
        cube = np.array(raw, dtype=np.float32)  # a writable copy, also of read-only memory maps
        missing = ~np.isfinite(cube)
        if meta.nodata is not None:
            missing |= cube == np.float32(meta.nodata)
        bad = np.zeros(n_bands, bool) if meta.bad_bands is None else np.asarray(meta.bad_bands, bool).copy()
        if bad.shape != (n_bands,):
            raise InputError(f"{meta.path}: bad-band list has {bad.size} entries for {n_bands} bands")
        has_data = ~missing.all(axis=(0, 1))
        if window is None:
            bad |= check_empty_bands(has_data, bad, meta, empty_bands)
        # valid: every good band has data; with no good band at all (an all-nodata file) no pixel is valid
        valid = ~missing[:, :, ~bad].any(axis=2) if (~bad).any() else np.zeros(raw.shape[:2], bool)
        cube[missing] = 0.0
        cube[:, :, bad] = 0.0
        transform = meta.transform
        if window is not None and transform is not None:
            transform = transform @ type(transform).translation(window.col, window.row)
        return cls(
            cube=cube,
            valid=valid,
            bad_bands=bad,
            band_has_data=has_data,
            wavelengths=meta.wavelengths,
            fwhm=meta.fwhm,
            crs=meta.crs,
            transform=transform,
            path=meta.path,
            format=meta.format,
            dtype=meta.dtype,
            nodata=meta.nodata,
            band_names=meta.band_names,
            notes=list(meta.notes),
        )

    def crop(self, window: Window) -> Scene:
        """The part of this scene inside ``window``, georeferencing shifted to it (arrays are views)."""
        rows, cols = window.slices
        transform = self.transform @ type(self.transform).translation(window.col, window.row) if self.transform is not None else None
        labels = None if self.labels is None else self.labels[rows, cols]
        return replace(self, cube=self.cube[rows, cols], valid=self.valid[rows, cols], labels=labels, transform=transform)

    def with_labels(self, label_map: LabelMap) -> Scene:
        """This scene paired with a label map of the same height and width."""
        if label_map.labels.shape != self.cube.shape[:2]:
            raise InputError(
                f"label map {label_map.path} is {label_map.labels.shape[0]}×{label_map.labels.shape[1]} but scene "
                f"{self.path} is {self.cube.shape[0]}×{self.cube.shape[1]}"
            )
        return replace(self, labels=label_map.labels)

    def require_wavelengths(self) -> np.ndarray:
        """(B,) wavelengths in nm, or a clear error when the file carries none."""
        if self.wavelengths is None:
            raise InputError(
                f"{self.path}: no wavelength metadata; pass sensor=<name> (--sensor) or wavelengths=[...] "
                f"({self.cube.shape[2]} values)"
            )
        return self.wavelengths

    def sensor(self) -> Sensor:
        """The scene's own bands as a ``Sensor`` (for ``band_alignment``), bad bands flagged invalid."""
        self.require_wavelengths()
        return own_sensor(self)

    @property
    def pixel_size(self) -> tuple[float, float] | None:
        if self.transform is None:
            return None
        return abs(self.transform.a), abs(self.transform.e)


@dataclass
class LabelMap:
    """A class map: ``labels`` (H, W) int64 with 0 = unlabelled."""

    labels: np.ndarray
    path: str = ""
    format: str = "array"
    crs: Any = None
    transform: Any = None
    notes: list[str] = field(default_factory=list)

    def class_counts(self) -> dict[int, int]:
        """{class id: pixel count} for every non-zero class present."""
        ids, counts = np.unique(self.labels[self.labels > 0], return_counts=True)
        return {int(i): int(c) for i, c in zip(ids, counts)}


def own_sensor(bands) -> Sensor:
    """The bands of a ``Scene`` or ``SceneMetadata`` as a ``Sensor``, bad bands flagged invalid."""
    if bands.wavelengths is None:
        raise InputError(f"{bands.path}: no wavelength metadata; pass sensor=<name> (--sensor) or wavelengths=[...]")
    return Sensor.from_wavelengths(Path(bands.path).name or "scene", bands.wavelengths, bands.fwhm, bands.bad_bands, bands.band_names)


def check_empty_bands(has_data: np.ndarray, bad: np.ndarray, meta: SceneMetadata, policy: str) -> np.ndarray:
    """(B,) flags of bands with no valid sample that the metadata does not flag bad.

    With policy "error" such a band is an error naming it; with "bad" it is returned to be flagged.
    """
    empty = ~has_data & ~bad
    if empty.any() and policy != "bad":
        band = int(np.flatnonzero(empty)[0])
        where = f" ({meta.wavelengths[band]:.1f} nm)" if meta.wavelengths is not None else ""
        raise InputError(
            f"{meta.path}: band {band}{where} has no valid sample (all nodata={meta.nodata} or NaN) "
            f"but is not flagged bad; flag it (bad_bands) or check the nodata value"
        )
    return empty


def looks_like_class_map(values: np.ndarray) -> bool:
    """True for a 2-D array of whole numbers in 0..255 with at least one non-zero value."""
    if values.ndim != 2 or min(values.shape) < 2 or values.dtype.kind not in "biuf":
        return False
    if values.dtype.kind == "f" and (not np.isfinite(values).all() or (values != np.round(values)).any()):
        return False
    return values.min() >= 0 and 0 < values.max() <= 255


def as_label_array(values: np.ndarray, path: str) -> np.ndarray:
    """Validate a raw 2-D array as class labels and return it as (H, W) int64."""
    values = np.squeeze(np.asarray(values))
    if values.ndim != 2:
        raise InputError(f"{path}: a label map must be 2-D (H, W), got shape {values.shape}")
    if values.dtype.kind == "f":
        if not np.isfinite(values).all() or (values != np.round(values)).any():
            raise InputError(f"{path}: label values must be whole numbers (got non-integer or NaN values)")
    elif values.dtype.kind not in "iub":
        raise InputError(f"{path}: label map has non-numeric dtype {values.dtype}")
    labels = values.astype(np.int64)
    if labels.min() < 0:
        raise InputError(f"{path}: label values must be >= 0 (0 = unlabelled), found {labels.min()}")
    return labels


def resolve_wavelengths(meta: SceneMetadata, n_bands: int, sensor: str | None, wavelengths) -> None:
    """Fill ``meta`` wavelengths from an explicit list or a registered sensor, checking the band count."""
    if wavelengths is not None:
        values = np.asarray(wavelengths, dtype=np.float64).ravel()
        if values.size != n_bands:
            raise InputError(f"{meta.path}: {values.size} wavelengths given for {n_bands} bands")
        meta.wavelengths, meta.fwhm = values, None
    elif sensor is not None:
        known = get_sensor(sensor)
        if len(known) != n_bands:
            raise InputError(f"{meta.path}: sensor {known.name!r} has {len(known)} bands but the file has {n_bands}")
        meta.wavelengths, meta.fwhm = known.centers, known.fwhm
        meta.band_names = [b.name for b in known.bands]
        flagged = ~known.valid
        meta.bad_bands = flagged if meta.bad_bands is None else meta.bad_bands | flagged
    if meta.wavelengths is not None and meta.wavelengths.size != n_bands:
        raise InputError(f"{meta.path}: {meta.wavelengths.size} wavelengths in the metadata for {n_bands} bands")
