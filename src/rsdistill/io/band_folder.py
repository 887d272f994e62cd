"""A folder of single-band rasters read as one cube: BigEarthNet patches store one GeoTIFF per
Sentinel-2 band, at 10, 20 or 60 m.

Band files are recognised by a band name of the sensor table at the end of the file name
(``..._B8A.tif``); the cube takes the table's band order, wavelengths and widths, and the bands
that are absent are simply not in the cube (BigEarthNet L2A has no B10). Coarser bands are
resampled bilinearly onto the finest band's grid, whose CRS and transform the scene keeps.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from rasterio.enums import Resampling

from rsdistill.errors import InputError
from rsdistill.io.geotiff import open_raster
from rsdistill.io.limits import check_read_size
from rsdistill.io.scene import SceneMetadata
from rsdistill.io.source import ArraySource
from rsdistill.spectral.sensors import get_sensor

RASTER_SUFFIXES = (".tif", ".tiff", ".jp2")


def band_files(folder: Path, sensor: str) -> dict[str, Path]:
    """{band name: file} for the files of ``folder`` whose name ends with a band of ``sensor``."""
    names = [b.name for b in get_sensor(sensor).bands]
    found = {}
    for path in sorted(folder.iterdir()):
        if path.suffix.lower() in RASTER_SUFFIXES:
            for name in names:
                if path.stem.upper().endswith(f"_{name.upper()}"):
                    found[name] = path
    return found


def open_band_folder(folder: Path, sensor: str | None = None) -> ArraySource:
    sensor = sensor or "sentinel2"
    table = get_sensor(sensor)
    files = band_files(folder, sensor)
    if not files:
        raise InputError(f"{folder}: a folder is read as one band per file, but no file name ends with a {table.name} band name (_B02.tif ...)")
    bands = [b for b in table.bands if b.name in files]
    grids = {}
    for band in bands:
        with open_raster(files[band.name]) as ds:
            if ds.count != 1:
                raise InputError(f"{files[band.name]}: expected one band per file, found {ds.count}")
            grids[band.name] = (ds.height * ds.width, ds.height, ds.width, ds.crs, ds.transform, tuple(round(b, 3) for b in ds.bounds))
    first = files[bands[0].name]
    for band in bands[1:]:  # resampling to one grid is only right when every band covers the same ground
        if grids[band.name][3] != grids[bands[0].name][3] or grids[band.name][5] != grids[bands[0].name][5]:
            raise InputError(f"{files[band.name]}: CRS {grids[band.name][3]} / bounds {grids[band.name][5]} differ from "
                             f"{first.name}'s {grids[bands[0].name][3]} / {grids[bands[0].name][5]}; the bands of a folder must cover the same ground")
    _, height, width, crs, transform, _ = max(grids.values(), key=lambda grid: grid[0])  # the finest grid
    check_read_size(folder, (height, width, len(bands)))
    layers = []
    for band in bands:
        with open_raster(files[band.name]) as ds:
            layers.append(ds.read(1, out_shape=(height, width), resampling=Resampling.bilinear).astype(np.float32))
    meta = SceneMetadata(
        str(folder), f"band folder ({len(bands)} {table.name} bands, resampled to {height}×{width})", "float32",
        wavelengths=np.array([b.center for b in bands]), fwhm=np.array([b.fwhm for b in bands]),
        band_names=[b.name for b in bands], crs=crs, transform=transform,
    )
    return ArraySource(np.stack(layers, axis=-1), meta)
