"""GeoTIFF (and other GDAL rasters such as PNG/JPEG) through rasterio: read by window, write atomically.

Wavelengths come from the GDAL band metadata (``wavelength``, ``wavelength_units``, ``fwhm``,
``bbl``: the layout of the EnMAP L2A tiles and of GDAL's ENVI driver), or from band descriptions
such as ``"band 1 (418.24 Nanometers)"``.
"""

from __future__ import annotations

import os
import warnings
from collections import OrderedDict
from pathlib import Path

import numpy as np
import rasterio
from rasterio.errors import NotGeoreferencedWarning, RasterioIOError
from rasterio.windows import Window as RioWindow

from rsdistill.errors import InputError
from rsdistill.files import atomic_write
from rsdistill.io.scene import LabelMap, Scene, SceneMetadata, Window, as_label_array
from rsdistill.io.source import SceneSource
from rsdistill.io.wavelengths import nanometre_factors, wavelengths_in_text


def open_raster(path) -> rasterio.DatasetReader:
    """A raster opened with rasterio, or an ``InputError`` naming the file."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            return rasterio.open(path)
    except RasterioIOError as error:
        raise InputError(f"{path}: cannot open as a raster ({error})") from None


class _OpenDatasets:
    """Datasets kept open for repeated window reads (opening costs more than reading a small window).

    Keyed by process, since a handle must not cross a fork (DataLoader workers), and by the file's
    modification time and size, so a file replaced under the same name is opened anew. At most
    ``size`` stay open per process, the least recently used is closed first; each costs about
    1.6 MB at 224 bands, so a reader that is done with a file (a streamed shard) releases it.
    """

    def __init__(self, size: int = 64):
        self.size, self.datasets = size, OrderedDict()

    def get(self, path: str):
        stat = os.stat(path)
        key = (path, os.getpid(), stat.st_mtime_ns, stat.st_size)
        dataset = self.datasets.pop(key, None) or open_raster(path)
        self.datasets[key] = dataset  # most recently used last
        while len(self.datasets) > self.size:
            self.datasets.popitem(last=False)[1].close()
        return dataset

    def release(self, path: str) -> None:
        for key in [k for k in self.datasets if k[0] == path and k[1] == os.getpid()]:
            self.datasets.pop(key).close()


_OPEN = _OpenDatasets()


def _band_numbers(tags: list[dict], key: str, path: str) -> np.ndarray:
    """A numeric band tag of every band, or an error naming the band and the tag."""
    values = []
    for band, t in enumerate(tags, start=1):
        try:
            values.append(float(t[key]))
        except ValueError:
            raise InputError(f"{path}: band {band} tag {key}={t[key]!r} is not a number") from None
    return np.array(values)


def _band_wavelengths(ds, path: str) -> tuple[np.ndarray | None, np.ndarray | None, np.ndarray | None]:
    """(wavelengths nm, fwhm nm, bad-band flags), each (B,) or None."""
    tags = [ds.tags(i) for i in range(1, ds.count + 1)]
    if all("wavelength" in t for t in tags):
        centres = _band_numbers(tags, "wavelength", path)
        scale = nanometre_factors(centres, [t.get("wavelength_units") for t in tags])  # the widths are in the centres' unit
        wavelengths = centres * scale
        fwhm = _band_numbers(tags, "fwhm", path) * scale if all("fwhm" in t for t in tags) else None
        bad = None
        if all("bbl" in t for t in tags):
            flags = [t["bbl"].strip() for t in tags]
            wrong = next((i for i, f in enumerate(flags) if f not in ("0", "1")), None)
            if wrong is not None:
                raise InputError(f"{path}: band {wrong + 1} tag bbl={flags[wrong]!r}; bbl is 0 (bad band) or 1 (good band)")
            bad = np.array([f == "0" for f in flags])
        return wavelengths, fwhm, bad
    return wavelengths_in_text(ds.descriptions), None, None


class GeoTiffSource(SceneSource):
    def __init__(self, path: str):
        self.path = path
        ds = self._dataset()  # the handle later window reads reuse: a file is opened once, not twice
        wavelengths, fwhm, bad = _band_wavelengths(ds, path)
        self.shape = (ds.height, ds.width, ds.count)
        self.meta = SceneMetadata(
            path=path,
            format=f"GeoTIFF ({ds.driver})" if ds.driver != "GTiff" else "GeoTIFF",
            dtype=str(ds.dtypes[0]),
            wavelengths=wavelengths,
            fwhm=fwhm,
            bad_bands=bad,
            nodata=ds.nodata,
            band_names=[d for d in ds.descriptions] if all(ds.descriptions) else None,
            crs=ds.crs,
            transform=ds.transform if ds.crs is not None or not ds.transform.is_identity else None,
        )

    def _dataset(self):
        return _OPEN.get(self.path)

    def release(self) -> None:
        _OPEN.release(self.path)

    def read_raw(self, window: Window) -> np.ndarray:
        data = self._dataset().read(window=RioWindow(window.col, window.row, window.width, window.height))
        return np.moveaxis(data, 0, -1)


def read_geotiff_labels(path: str) -> LabelMap:
    with open_raster(path) as ds:
        if ds.count != 1:
            raise InputError(f"{path}: a label map must have one band, this raster has {ds.count}")
        values = ds.read(1)
        if ds.nodata is not None:
            values = np.where(values == ds.nodata, 0, values)
        return LabelMap(as_label_array(values, path), path, "GeoTIFF", ds.crs, ds.transform)


def write_geotiff(path, array: np.ndarray, like: Scene | LabelMap | None = None, nodata=None, colormap=None) -> Path:
    """Write (H, W) or (H, W, B) ``array`` as a GeoTIFF with ``like``'s CRS and transform.

    Band wavelengths/FWHM/bbl are written as GDAL band metadata when ``array`` has the band count of
    ``like``. The file is written to a temporary name and renamed, so an interrupted write never
    leaves a half-written file under ``path``.
    """
    path = Path(path)
    data = array[:, :, None] if array.ndim == 2 else array
    if data.ndim != 3:
        raise InputError(f"write_geotiff({path}): expected (H, W) or (H, W, B), got shape {array.shape}")
    if like is not None and data.shape[:2] != (like_shape := _spatial_shape(like)):
        raise InputError(f"write_geotiff({path}): array is {data.shape[:2]} but the reference scene is {like_shape}")
    profile = dict(
        height=data.shape[0], width=data.shape[1], count=data.shape[2], dtype=data.dtype,
        crs=getattr(like, "crs", None), transform=getattr(like, "transform", None), nodata=nodata,
        compress="deflate",
    )

    def write(partial: str) -> None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            with rasterio.open(partial, "w", driver="GTiff", **{k: v for k, v in profile.items() if v is not None}) as ds:
                ds.write(np.moveaxis(data, -1, 0))
                _write_band_metadata(ds, like, data.shape[2])
                if colormap is not None:
                    ds.write_colormap(1, colormap)

    return atomic_write(path, write)


def write_geotiff_windows(path, height: int, width: int, windows, dtype="uint8", crs=None, transform=None, nodata=None,
                          colormap=None, block: int = 256) -> Path:
    """Write a one-band ``height``×``width`` GeoTIFF window by window: ``windows`` yields
    ``(Window, (h, w) array)``, so the raster is never whole in memory. Tiled (``block``², a multiple
    of 16) and deflate-compressed, written to a temporary name and renamed once every window is in."""
    profile = dict(height=height, width=width, count=1, dtype=dtype, crs=crs, transform=transform, nodata=nodata,
                   compress="deflate", tiled=True, blockxsize=block, blockysize=block)

    def write(partial: str) -> None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            with rasterio.open(partial, "w", driver="GTiff", **{k: v for k, v in profile.items() if v is not None}) as ds:
                for window, array in windows:
                    ds.write(np.asarray(array, dtype)[None], window=RioWindow(window.col, window.row, window.width, window.height))
                if colormap is not None:
                    ds.write_colormap(1, colormap)

    return atomic_write(path, write)


def _spatial_shape(like) -> tuple[int, int]:
    return like.cube.shape[:2] if isinstance(like, Scene) else like.labels.shape


def _write_band_metadata(ds, like, n_bands: int) -> None:
    if not isinstance(like, Scene) or like.wavelengths is None or like.cube.shape[2] != n_bands:
        return
    for i in range(n_bands):
        tags = {"wavelength": f"{like.wavelengths[i]:g}", "wavelength_units": "Nanometers", "bbl": "0" if like.bad_bands[i] else "1"}
        if like.fwhm is not None:
            tags["fwhm"] = f"{like.fwhm[i]:g}"
        ds.update_tags(i + 1, **tags)
