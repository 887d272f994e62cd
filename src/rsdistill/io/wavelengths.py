"""Wavelength units, for every reader: metadata values in nanometres or micrometres -> nanometres,
and band centres written in band names or descriptions ("Band 12 (512.3 nm)")."""

from __future__ import annotations

import re

import numpy as np

# unit spelling (lower case) -> factor to nanometres
UNIT_SCALE = {"nanometers": 1.0, "nanometres": 1.0, "nm": 1.0,
              "micrometers": 1000.0, "micrometres": 1000.0, "um": 1000.0, "µm": 1000.0, "microns": 1000.0}
_IN_TEXT = re.compile(r"([0-9]+(?:\.[0-9]+)?)\s*(nanometers|nanometres|nm|micrometers|micrometres|um|µm|microns)\b", re.I)
# with no (or an unknown) unit: optical band centres below this are micrometres (0.4-2.5), above it nanometres
_MICROMETRE_CEILING = 30.0


def nanometre_factors(centres: np.ndarray, units) -> np.ndarray:
    """(B,) factors that take each band's centre and width to nm. ``units``: one unit for all bands,
    one per band, or None; a missing or unknown unit ("Unknown" is common in ENVI headers) is told
    by the centres' magnitude."""
    centres = np.asarray(centres, dtype=np.float64)
    per_band = [units] * len(centres) if units is None or isinstance(units, str) else list(units)
    guessed = 1000.0 if np.nanmax(np.abs(centres), initial=0.0) < _MICROMETRE_CEILING else 1.0
    return np.array([UNIT_SCALE.get(str(unit).strip().lower(), guessed) for unit in per_band], dtype=np.float64)


def wavelengths_in_text(texts) -> np.ndarray | None:
    """(B,) centres in nm read from each band's name or description, or None unless every one holds one."""
    matches = [_IN_TEXT.search(text or "") for text in texts]
    if not matches or not all(matches):
        return None
    return np.array([float(m.group(1)) * UNIT_SCALE[m.group(2).lower()] for m in matches])
