"""Band alignment: one linear map from a source sensor's bands to a target sensor's bands.

``W = band_alignment(source, target)`` is a (T, S) matrix whose rows sum to one, so that a target
cube is ``W @ source_spectrum`` per pixel. Methods are different ways to fill the same matrix:

- ``mean``: average of the valid source bands whose centre lies inside the target band's edges.
  This is the channel aggregation HyperKD uses to show a hyperspectral cube to a multispectral
  teacher (arXiv 2508.09453, Sec. 3.2).
- ``srf``: Gaussian spectral response overlap: a source band s contributes to target band t in
  proportion to the integral of the product of the two Gaussian responses (each of peak 1),
  ``σ_s / √(σ_t^2 + σ_s^2) · exp(-(c_t - c_s)^2 / (2 (σ_t^2 + σ_s^2)))`` up to the row's constant
  factor √(2π)·σ_t, σ = FWHM / 2.3548: a broad source band overlaps more of the target's response
  than a narrow one at the same distance. (``spectral.BandResampler`` is a different model: box
  responses over each band's FWHM, clipped to the target's FWHM.)
- ``nearest``: the single valid source band whose centre is closest to the target centre.

Bad (invalid) source bands always get zero weight. A target band that no valid source band covers
is an error naming the band: a silent zero row would feed the teacher a black channel. Covered
means a valid source centre inside the target band's edges (``mean``, ``nearest``) or, for
``srf``, a valid source band whose edges overlap the target's (a broad camera band covers the
narrow Sentinel-2 band inside it). With ``uncovered="zero"`` such a band gets a zero row instead,
for a model that masks what its input lacks (Galileo's band groups); ``uncovered_bands`` lists them.
"""

from __future__ import annotations

import numpy as np

from rsdistill.errors import InputError
from rsdistill.spectral.sensors import Sensor, get_sensor

ALIGNMENT_METHODS = ("mean", "srf", "nearest")
_FWHM_TO_SIGMA = 1.0 / (2.0 * np.sqrt(2.0 * np.log(2.0)))
# srf weights below this fraction of a row's largest weight are dropped (keeps the map sparse).
_SRF_CUTOFF = 0.01


def band_alignment(source: str | Sensor, target: str | Sensor, method: str = "mean", uncovered: str = "error") -> np.ndarray:
    """Linear map from ``source`` bands to ``target`` bands.

    Returns:
        (T, S) float32 matrix, each row non-negative and summing to 1 (a zero row for a target band
        the source does not cover, with ``uncovered="zero"``); columns of invalid source bands are zero.
    """
    source, target = get_sensor(source), get_sensor(target)
    if method not in ALIGNMENT_METHODS:
        raise InputError(f"unknown alignment method {method!r}; choose one of {', '.join(ALIGNMENT_METHODS)}")
    if uncovered not in ("error", "zero"):
        raise InputError(f"uncovered must be error or zero, got {uncovered!r}")
    centres, valid = source.centers, source.valid
    weights = np.zeros((len(target), len(source)), dtype=np.float64)
    for t, band in enumerate(target.bands):
        inside = valid & (centres >= band.lower) & (centres <= band.upper)
        if not _covers(source, band, method).any():
            if uncovered == "zero":
                continue
            flagged = np.flatnonzero(~valid & (centres >= band.lower) & (centres <= band.upper))
            why = f"bands {flagged.tolist()} lie inside but are flagged bad" if flagged.size else _coverage(source)
            raise InputError(
                f"target band {band.name!r} ({band.lower:.0f}-{band.upper:.0f} nm) of {target.name} is not covered "
                f"by any valid band of {source.name} ({why})"
            )
        if method == "mean":
            weights[t] = inside
        elif method == "nearest":
            distance = np.where(valid, np.abs(centres - band.center), np.inf)
            weights[t, np.argmin(distance)] = 1.0
        else:
            source_sigma = source.fwhm * _FWHM_TO_SIGMA
            sigma2 = (band.fwhm * _FWHM_TO_SIGMA) ** 2 + source_sigma**2
            overlap = source_sigma / np.sqrt(sigma2) * np.exp(-((centres - band.center) ** 2) / (2 * sigma2))
            response = np.where(valid, overlap, 0.0)
            response[response < _SRF_CUTOFF * response.max()] = 0.0
            weights[t] = response
    sums = weights.sum(axis=1, keepdims=True)
    return (weights / np.where(sums > 0, sums, 1.0)).astype(np.float32)


def _covers(source: Sensor, band, method: str) -> np.ndarray:
    """(S,) the valid source bands that cover target ``band`` (see the module docstring)."""
    lower = np.array([b.lower for b in source.bands])
    upper = np.array([b.upper for b in source.bands])
    if method == "srf":
        return source.valid & (lower < band.upper) & (upper > band.lower)
    return source.valid & (source.centers >= band.lower) & (source.centers <= band.upper)


def uncovered_bands(source: str | Sensor, target: str | Sensor, method: str = "mean") -> list[str]:
    """Names of the target bands no valid source band covers."""
    source, target = get_sensor(source), get_sensor(target)
    return [band.name for band in target.bands if not _covers(source, band, method).any()]


def simulated_bands(source: str | Sensor, target: str | Sensor, method: str = "srf") -> tuple[np.ndarray, Sensor]:
    """The bands of ``target`` that ``source`` covers, made from ``source``'s bands: a cheaper
    sensor simulated from a richer one (a Sentinel-2-like or RGB student of a hyperspectral scene).

    Returns:
        (T', S) alignment onto the covered target bands, and the target sensor restricted to them.
    """
    source, target = get_sensor(source), get_sensor(target)
    weights = band_alignment(source, target, method, uncovered="zero")
    covered = weights.any(axis=1)
    if not covered.any():
        raise InputError(f"{source.name} covers no band of {target.name} ({_coverage(source)})")
    bands = tuple(band for band, keep in zip(target.bands, covered) if keep)
    return weights[covered], Sensor(target.name, bands, target.description)


def _coverage(sensor: Sensor) -> str:
    centres = sensor.centers[sensor.valid]
    if centres.size == 0:
        return "no valid band"
    return f"valid centres {centres.min():.0f}-{centres.max():.0f} nm"


def describe_alignment(weights: np.ndarray, source: str | Sensor, target: str | Sensor) -> list[str]:
    """One line per target band: which source bands (index, centre, weight) make it."""
    source, target = get_sensor(source), get_sensor(target)
    lines = []
    for t, band in enumerate(target.bands):
        used = np.flatnonzero(weights[t])
        if not len(used):
            lines.append(f"{band.name:>12} [{band.lower:7.1f}-{band.upper:7.1f} nm] <- not covered (skipped)")
            continue
        parts = ", ".join(f"{i}:{source.bands[i].center:.1f}nm×{weights[t, i]:.3f}" for i in used)
        if len(used) > 6:
            first, last = source.bands[used[0]], source.bands[used[-1]]
            parts = (
                f"{len(used)} bands, indices {used[0]}-{used[-1]} ({first.center:.1f}-{last.center:.1f} nm), "
                f"weights {weights[t, used].min():.3f}-{weights[t, used].max():.3f}"
            )
        lines.append(f"{band.name:>12} [{band.lower:7.1f}-{band.upper:7.1f} nm] <- {parts}")
    return lines
