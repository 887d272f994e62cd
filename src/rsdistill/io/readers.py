"""Open any supported file as a ``SceneSource`` (cube) or a ``LabelMap``, choosing the reader by content.

Supported: MATLAB .mat (v5 and v7.3), ENVI (.hdr + data file), GeoTIFF and other GDAL rasters,
NumPy .npy.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from rsdistill.errors import InputError
from rsdistill.io.band_folder import open_band_folder
from rsdistill.io.envi import EnviSource, find_envi_pair
from rsdistill.io.geotiff import GeoTiffSource, read_geotiff_labels
from rsdistill.io.matlab import inspect_mat
from rsdistill.io.npy import load_npy, npy_cube
from rsdistill.io.scene import LabelMap, Scene, SceneMetadata, Window, as_label_array, parse_window, resolve_wavelengths
from rsdistill.io.source import ArraySource, SceneSource

EMPTY_BAND_POLICIES = ("error", "bad")


def _existing(path) -> Path:
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such file")
    return path


def open_scene(
    path,
    key: str | None = None,
    bad_bands=None,
    sensor: str | None = None,
    wavelengths=None,
    time_index: int | None = None,
    empty_bands: str = "error",
) -> SceneSource:
    """Open ``path`` for reading a cube, whole or by window.

    Args:
        key: .mat variable holding the cube (found automatically otherwise).
        bad_bands: extra band indices (0-based) to treat as bad.
        sensor: registered sensor whose wavelengths to use when the file has none (its band count
            must match the file's). For a folder of single-band rasters, the sensor whose band
            names end the file names (default sentinel2).
        wavelengths: explicit band centres in nm (must have one value per band).
        time_index: acquisition to take from a (T, H, W, B) .npy time series.
        empty_bands: "error" (default) or "bad": what to do with an all-nodata band the metadata
            does not flag.
    """
    if empty_bands not in EMPTY_BAND_POLICIES:
        raise InputError(f"empty_bands must be one of {EMPTY_BAND_POLICIES}, got {empty_bands!r}")
    if Path(path).is_dir():  # one raster per band (BigEarthNet); the sensor names the bands
        source, sensor = open_band_folder(Path(path), sensor), None
    else:
        source = _open_by_format(_existing(path), key, time_index)
    source.empty_bands = empty_bands
    resolve_wavelengths(source.meta, source.bands, sensor, wavelengths)
    if bad_bands is not None and len(bad_bands):
        extra = np.asarray(bad_bands, dtype=int)
        if extra.min() < 0 or extra.max() >= source.bands:
            raise InputError(f"{path}: bad band indices {extra.tolist()} outside 0..{source.bands - 1}")
        flags = np.zeros(source.bands, bool) if source.meta.bad_bands is None else source.meta.bad_bands.copy()
        flags[extra] = True
        source.meta.bad_bands = flags
    return source


def _open_by_format(path: Path, key: str | None, time_index: int | None) -> SceneSource:
    suffix = path.suffix.lower()
    if suffix == ".mat":
        contents = inspect_mat(path, key)
        if contents.cube is None:
            raise InputError(f"{path}: no cube (H, W, B) found; variables: {_describe(contents.variables)}")
        meta = SceneMetadata(
            str(path), f"MATLAB .mat (variable {contents.cube_key!r})", str(contents.cube.dtype),
            wavelengths=contents.wavelengths, notes=contents.notes,
        )
        return ArraySource(contents.cube, meta)
    if suffix == ".npy":
        array = npy_cube(load_npy(path), path, time_index)
        return ArraySource(array, SceneMetadata(str(path), ".npy", str(array.dtype)))
    pair = find_envi_pair(path)
    if pair is not None:
        return EnviSource(*pair)
    return GeoTiffSource(str(path))


def read_label_map(path, key: str | None = None) -> LabelMap:
    """Read a class map (0 = unlabelled) from .mat, .npy, GeoTIFF or ENVI."""
    path = _existing(path)
    suffix = path.suffix.lower()
    if suffix == ".mat":
        contents = inspect_mat(path, key)
        if contents.labels is None:
            raise InputError(f"{path}: no label map (2-D array of class ids) found; variables: {_describe(contents.variables)}"
                             + "".join(f"; {note}" for note in contents.notes))
        return LabelMap(as_label_array(contents.labels, str(path)), str(path), f"MATLAB .mat (variable {contents.label_key!r})")
    if suffix == ".npy":
        return LabelMap(as_label_array(load_npy(path), str(path)), str(path), ".npy")
    pair = find_envi_pair(path)
    if pair is not None:
        scene = EnviSource(*pair).read()
        if scene.cube.shape[2] != 1:
            raise InputError(f"{path}: a label map must have one band, this image has {scene.cube.shape[2]}")
        return LabelMap(as_label_array(scene.cube[:, :, 0], str(path)), str(path), "ENVI", scene.crs, scene.transform)
    return read_geotiff_labels(str(path))


def _describe(shapes: dict[str, tuple[int, ...]]) -> str:
    return ", ".join(f"{k} {'×'.join(map(str, s))}" for k, s in shapes.items()) or "none"


def read_scene(path, labels=None, window: Window | dict | None = None, **options) -> Scene:
    """Read a scene (.mat, ENVI, GeoTIFF, .npy, band folder), whole or the part inside ``window``
    (a ``Window`` or {row, col, height, width}, e.g. a region held out for evaluation), and
    optionally its label map.

    ``options`` go to ``open_scene`` (``key``, ``bad_bands``, ``sensor``, ``wavelengths``,
    ``time_index``, ``empty_bands``) except ``label_key``, used for ``labels``.
    """
    label_key = options.pop("label_key", None)
    scene = open_scene(path, **options).read(parse_window(window, path))
    if labels is not None:
        if window is not None:
            raise InputError(f"{path}: a window cannot be combined with a label map")
        scene = scene.with_labels(read_label_map(labels, key=label_key))
    return scene
