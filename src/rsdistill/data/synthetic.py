"""A physically plausible synthetic hyperspectral scene, the default input when no file is given.

Linear mixing model: every pixel is ``x = E a + n`` with endmember spectra ``E`` (B × M) sampled at
the sensor's band centres, abundances ``a`` (non-negative, summing to one) that vary smoothly in
space, and Gaussian noise ``n``. The label map is the dominant material. The spectra are analytic
caricatures of real materials, good enough to exercise unmixing, classification and alignment:
vegetation (chlorophyll absorption at 670 nm, red edge at 720 nm, leaf-water dips), soil (rising
continuum, clay feature at 2200 nm), water (dark, falling to zero in the NIR), man-made (bright,
flat roof or pavement).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.ndimage import gaussian_filter

from rsdistill.errors import InputError
from rsdistill.io.scene import Scene, SceneMetadata
from rsdistill.spectral.sensors import get_sensor

MATERIALS = ("vegetation", "soil", "water", "man-made")


def _dip(wl: np.ndarray, centre: float, width: float, depth: float) -> np.ndarray:
    return 1.0 - depth * np.exp(-0.5 * ((wl - centre) / width) ** 2)


def material_spectrum(name: str, wl: np.ndarray) -> np.ndarray:
    """Reflectance (0..1) of material ``name`` at wavelengths ``wl`` (nm)."""
    if name == "vegetation":
        visible = 0.04 + 0.05 * np.exp(-0.5 * ((wl - 550) / 30) ** 2)
        red_edge = 1 / (1 + np.exp(-(wl - 720) / 12))
        swir_decline = np.clip(1 - (wl - 1100) / 1800, 0.35, 1)
        water = _dip(wl, 970, 20, 0.1) * _dip(wl, 1200, 30, 0.2) * _dip(wl, 1450, 60, 0.6) * _dip(wl, 1940, 80, 0.7)
        return (visible + 0.42 * red_edge * swir_decline) * water
    if name == "soil":
        continuum = 0.08 + 0.3 * (1 - np.exp(-(wl - 350) / 700))
        return continuum * _dip(wl, 1420, 40, 0.15) * _dip(wl, 1920, 50, 0.25) * _dip(wl, 2200, 30, 0.15)
    if name == "water":
        return 0.07 * np.exp(-np.clip(wl - 450, 0, None) / 120) + 0.005
    if name == "man-made":
        return 0.22 + 0.06 * np.tanh((wl - 500) / 300) + 0.01 * np.sin(wl / 150)
    raise InputError(f"unknown material {name!r}; known: {', '.join(MATERIALS)}")


@dataclass
class SyntheticScene:
    """The scene and its ground truth: ``endmembers`` (B, M), ``abundances`` (H, W, M)."""

    scene: Scene
    endmembers: np.ndarray
    abundances: np.ndarray
    materials: tuple[str, ...]


def make_synthetic_scene(
    sensor: str = "enmap",
    height: int = 64,
    width: int = 64,
    materials: tuple[str, ...] = MATERIALS,
    smoothness: float = 6.0,
    sharpness: float = 4.0,
    noise: float = 0.005,
    seed: int = 0,
) -> SyntheticScene:
    """Synthetic scene of ``sensor``'s bands (bad bands flagged as in the sensor table).

    Args:
        smoothness: Gaussian σ (pixels) of the random fields behind the abundance maps.
        sharpness: softmax temperature⁻¹ of the abundances; larger gives purer pixels.
        noise: standard deviation of the additive Gaussian noise (reflectance units).
    """
    if height < 2 or width < 2:
        raise InputError(f"synthetic scene must be at least 2×2 pixels, got {height}×{width}")
    bands = get_sensor(sensor)
    rng = np.random.default_rng(seed)
    endmembers = np.stack([material_spectrum(m, bands.centers) for m in materials], axis=1)  # (B, M)
    fields = np.stack(
        [gaussian_filter(rng.standard_normal((height, width)), smoothness, mode="wrap") for _ in materials], axis=-1
    )
    fields /= fields.std(axis=(0, 1), keepdims=True)
    logits = sharpness * fields
    abundances = np.exp(logits - logits.max(axis=-1, keepdims=True))
    abundances /= abundances.sum(axis=-1, keepdims=True)  # (H, W, M)
    cube = abundances @ endmembers.T + noise * rng.standard_normal((height, width, len(bands)))
    meta = SceneMetadata(
        path=f"synthetic:{bands.name}", format="synthetic", dtype="float32",
        wavelengths=bands.centers, fwhm=bands.fwhm, bad_bands=~bands.valid,
        band_names=[b.name for b in bands.bands],
    )
    scene = Scene.from_raw(cube.astype(np.float32), meta)
    scene.labels = abundances.argmax(axis=-1).astype(np.int64) + 1
    return SyntheticScene(scene, endmembers.astype(np.float32), abundances.astype(np.float32), tuple(materials))
