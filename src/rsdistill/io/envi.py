"""ENVI .hdr + binary image through the ``spectral`` package (memory-mapped, so windows are cheap).

Header fields used: ``wavelength`` (+ ``wavelength units``), ``fwhm``, ``bbl``, ``data ignore value``,
``band names`` (wavelengths such as "376.44 Nanometers" when no ``wavelength`` field exists, as in
AVIRIS-NG radiance headers), ``map info`` and ``coordinate system string`` for georeferencing.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import rasterio
from affine import Affine
from rasterio.crs import CRS
from rasterio.errors import CRSError
from spectral.io import envi

from rsdistill.errors import InputError
from rsdistill.io.scene import SceneMetadata, Window
from rsdistill.io.source import SceneSource
from rsdistill.io.wavelengths import nanometre_factors, wavelengths_in_text

_BYTES_PER_TYPE = {1: 1, 2: 2, 3: 4, 4: 4, 5: 8, 6: 8, 9: 16, 12: 2, 13: 4, 14: 8, 15: 8}
_DATA_SUFFIXES = ("", ".img", ".dat", ".raw", ".bsq", ".bil", ".bip")


def find_envi_pair(path: Path) -> tuple[Path, Path] | None:
    """(header, data file) when ``path`` is either half of an ENVI pair, else None."""
    if path.suffix.lower() == ".hdr":
        for suffix in _DATA_SUFFIXES:
            data = path.with_suffix(suffix)
            if data.is_file():
                return path, data
        raise InputError(f"{path}: ENVI header without a data file next to it (tried {', '.join(s or 'no suffix' for s in _DATA_SUFFIXES)})")
    for header in (Path(str(path) + ".hdr"), path.with_suffix(".hdr")):
        if header.is_file() and header != path:
            return header, path
    return None


def _floats(header: dict, key: str, path: Path, n_bands: int) -> np.ndarray | None:
    if key not in header:
        return None
    try:
        values = np.array([float(v) for v in header[key]])
    except (TypeError, ValueError):
        raise InputError(f"{path}: header field {key!r} is not a list of numbers") from None
    if values.size != n_bands:
        raise InputError(f"{path}: header field {key!r} has {values.size} values for {n_bands} bands")
    return values


def _georeference(header: dict, path: Path):
    info = header.get("map info")
    if not info or len(info) < 7 or any("rotation" in str(v) for v in info):
        return None, None
    try:
        ref_x, ref_y, easting, northing, dx, dy = (float(v) for v in info[1:7])
    except ValueError:
        raise InputError(f"{path}: header field 'map info' needs numbers in places 2-7 "
                         f"(reference pixel, easting, northing, pixel size), got {info[1:7]}") from None
    transform = Affine(dx, 0.0, easting - (ref_x - 1) * dx, 0.0, -dy, northing + (ref_y - 1) * dy)
    crs = None
    wkt = header.get("coordinate system string")
    if wkt:
        # spectral splits brace lists at commas; a WKT string must be joined back.
        wkt = ",".join(wkt) if isinstance(wkt, list) else str(wkt)
        try:
            with rasterio.Env(CPL_LOG="/dev/null"):
                crs = CRS.from_wkt(wkt.strip("{} "))
        except CRSError:  # a CRS GDAL cannot parse leaves the scene without CRS, never unreadable
            crs = None
    return crs, transform


class EnviSource(SceneSource):
    def __init__(self, header_path: Path, data_path: Path):
        header = self._read_header(header_path)
        try:
            lines, samples, bands = int(header["lines"]), int(header["samples"]), int(header["bands"])
            data_type, offset = int(header["data type"]), int(header.get("header offset", 0))
        except (KeyError, ValueError) as error:
            raise InputError(f"{header_path}: missing or invalid ENVI size field ({error})") from None
        interleave = str(header.get("interleave", "bsq")).strip().lower()
        if interleave not in ("bsq", "bil", "bip"):
            raise InputError(f"{header_path}: interleave = {interleave!r}; ENVI data is bsq, bil or bip")
        if str(header.get("byte order", "0")).strip() not in ("0", "1"):
            raise InputError(f"{header_path}: byte order = {header.get('byte order')!r}; ENVI byte order is 0 (little-endian) or 1 (big-endian)")
        if data_type not in _BYTES_PER_TYPE:
            raise InputError(f"{header_path}: data type {data_type} is not one of the ENVI types {sorted(_BYTES_PER_TYPE)}")
        expected = offset + lines * samples * bands * _BYTES_PER_TYPE.get(data_type, 0)
        actual = data_path.stat().st_size
        if actual != expected:
            raise InputError(
                f"{data_path}: file has {actual} bytes but header {header_path.name} describes {lines} lines × "
                f"{samples} samples × {bands} bands of data type {data_type} = {expected} bytes"
            )
        try:
            self.image = envi.open(str(header_path), str(data_path))
        except Exception as error:  # spectral raises bare Exceptions for header problems
            raise InputError(f"{header_path}: cannot open ENVI image ({error})") from None
        self.shape = (lines, samples, bands)
        wavelengths = _floats(header, "wavelength", header_path, bands)
        fwhm = _floats(header, "fwhm", header_path, bands)
        names = header.get("band names")
        if wavelengths is None and names and len(names) == bands:
            wavelengths = wavelengths_in_text(names)
        elif wavelengths is not None:
            factors = nanometre_factors(wavelengths, header.get("wavelength units"))
            wavelengths, fwhm = wavelengths * factors, fwhm * factors if fwhm is not None else None
        bbl = _floats(header, "bbl", header_path, bands)
        if bbl is not None and not np.isin(bbl, (0, 1)).all():
            raise InputError(f"{header_path}: header field 'bbl' must hold 0 (bad) or 1 (good) per band, found {sorted(set(bbl.tolist()) - {0.0, 1.0})[:5]}")
        nodata = header.get("data ignore value")
        try:
            nodata = float(nodata) if nodata is not None else None
        except ValueError:
            raise InputError(f"{header_path}: header field 'data ignore value' = {nodata!r} is not a number") from None
        crs, transform = _georeference(header, header_path)
        self.meta = SceneMetadata(
            path=str(data_path),
            format="ENVI",
            dtype=str(self.image.dtype),
            wavelengths=wavelengths,
            fwhm=fwhm,
            bad_bands=None if bbl is None else bbl == 0,
            nodata=nodata,
            band_names=list(names) if names and len(names) == bands else None,
            crs=crs,
            transform=transform,
        )

    @staticmethod
    def _read_header(path: Path) -> dict:
        try:
            return envi.read_envi_header(str(path))
        except Exception as error:  # spectral raises bare Exceptions (e.g. "not an ENVI header")
            raise InputError(f"{path}: not a valid ENVI header ({error})") from None

    def read_raw(self, window: Window) -> np.ndarray:
        rows, cols = window.slices
        return np.asarray(self.image.read_subregion((rows.start, rows.stop), (cols.start, cols.stop)))
