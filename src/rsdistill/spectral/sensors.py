"""Sensor registry: the spectral bands (centre, FWHM, edges, validity) of the sensors rsdistill knows.

Band tables live as JSON next to this module (``sensors/<name>.json``); each file says where its
numbers come from. A ``Sensor`` can also be built from a scene's own wavelengths, so that band
alignment uses the exact bands (and bad-band list) of the file being processed.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np

from rsdistill.errors import InputError

_TABLES = Path(__file__).with_name("sensors")


@dataclass(frozen=True)
class Band:
    """One spectral band. ``lower``/``upper`` are the band edges in nm (centre ± FWHM/2 unless given)."""

    name: str
    center: float
    fwhm: float
    lower: float
    upper: float
    valid: bool = True


@dataclass(frozen=True)
class Sensor:
    name: str
    bands: tuple[Band, ...]
    description: str = ""

    def __len__(self) -> int:
        return len(self.bands)

    @property
    def centers(self) -> np.ndarray:
        """(B,) band centres in nm."""
        return np.array([b.center for b in self.bands], dtype=np.float64)

    @property
    def fwhm(self) -> np.ndarray:
        """(B,) full widths at half maximum in nm."""
        return np.array([b.fwhm for b in self.bands], dtype=np.float64)

    @property
    def valid(self) -> np.ndarray:
        """(B,) True for bands that carry data (not flagged bad)."""
        return np.array([b.valid for b in self.bands], dtype=bool)

    @classmethod
    def from_wavelengths(
        cls,
        name: str,
        centers,
        fwhm=None,
        bad_bands=None,
        band_names=None,
    ) -> Sensor:
        """Build a sensor from a scene's band centres (nm).

        Without FWHM the width of each band is taken as the spacing to its neighbours, which is what
        a contiguous imaging spectrometer samples.
        """
        centers = np.asarray(centers, dtype=np.float64)
        if centers.ndim != 1 or centers.size == 0:
            raise InputError(f"{name}: wavelengths must be a non-empty 1-D list, got shape {centers.shape}")
        if fwhm is None:
            fwhm = _spacing_widths(centers)
        fwhm = np.asarray(fwhm, dtype=np.float64)
        if fwhm.shape != centers.shape:
            raise InputError(f"{name}: {fwhm.size} FWHM values for {centers.size} wavelengths")
        bad = np.zeros(centers.size, dtype=bool)
        if bad_bands is not None:
            bad = np.asarray(bad_bands, dtype=bool)
        names = band_names or [f"B{i + 1:03d}" for i in range(centers.size)]
        bands = tuple(
            Band(n, float(c), float(w), float(c - w / 2), float(c + w / 2), not b)
            for n, c, w, b in zip(names, centers, fwhm, bad)
        )
        return cls(name, bands)


def _spacing_widths(centers: np.ndarray) -> np.ndarray:
    if centers.size == 1:
        return np.array([10.0])
    gaps = np.abs(np.diff(centers))
    return np.concatenate([[gaps[0]], (gaps[:-1] + gaps[1:]) / 2, [gaps[-1]]])


@cache
def _load_table(name: str) -> Sensor:
    """A sensor table. A table with ``base`` and ``band_order`` reuses another table's bands in a
    different file order (EuroSAT-MS stores Sentinel-2's B8A last)."""
    doc = json.loads((_TABLES / f"{name}.json").read_text())
    if "base" in doc:
        base = {b.name: b for b in _load_table(doc["base"]).bands}
        unknown = [n for n in doc["band_order"] if n not in base]
        if unknown:
            raise InputError(f"sensor table {name}: bands {unknown} are not in {doc['base']}")
        return Sensor(doc["name"], tuple(base[n] for n in doc["band_order"]), doc.get("description", ""))
    bands = tuple(
        Band(
            b["name"],
            float(b["center"]),
            float(b["fwhm"]),
            float(b.get("lower", b["center"] - b["fwhm"] / 2)),
            float(b.get("upper", b["center"] + b["fwhm"] / 2)),
            bool(b.get("valid", True)),
        )
        for b in doc["bands"]
    )
    return Sensor(doc["name"], bands, doc.get("description", ""))


def sensor_names() -> list[str]:
    """Names of the registered sensors."""
    return sorted(p.stem for p in _TABLES.glob("*.json"))


# Common spellings users type for registered sensors.
_ALIASES = {"prithvi": "hls", "s2": "sentinel2", "sentinel-2": "sentinel2", "enmap_hsi": "enmap", "eurosat": "sentinel2_eurosat"}


def get_sensor(name: str | Sensor) -> Sensor:
    """The registered sensor called ``name`` (case-insensitive; ``prithvi`` is ``hls``)."""
    if isinstance(name, Sensor):
        return name
    key = _ALIASES.get(name.lower(), name.lower())
    if key not in sensor_names():
        raise InputError(f"unknown sensor {name!r}; known sensors: {', '.join(sensor_names())}")
    return _load_table(key)
