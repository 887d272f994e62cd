"""Per-band mean and standard deviation over valid pixels, in one streaming pass over tiles.

Partial results of tiles and files are merged with Chan et al.'s parallel update of
(count, mean, M2), in float64, so the result does not depend on the tile size and no file is ever
held in memory whole. The JSON written by ``save`` is what training recipes use to normalise.
"""

from __future__ import annotations

import json
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from rsdistill.errors import InputError
from rsdistill.files import write_json
from rsdistill.io.readers import open_scene
from rsdistill.io.scene import check_empty_bands, tile_windows

PROGRESS_FROM_TILES = 64  # scenes of fewer tiles are read quickly enough to need no progress bar


@dataclass
class BandStatistics:
    """Per-band statistics. Lists have one entry per band; bad bands have count 0, mean 0, std 1."""

    files: list[str]
    count: list[int]
    mean: list[float]
    std: list[float]
    bad_bands: list[int]
    wavelengths: list[float] | None = None
    minimum: list[float] | None = None  # of the valid pixels (absent in older stats files)
    maximum: list[float] | None = None

    @property
    def bands(self) -> int:
        return len(self.mean)

    def value_range(self, kept: np.ndarray, path) -> float:
        """max − min of the valid pixels over the ``kept`` bands (the PSNR/SSIM range of a run)."""
        if self.minimum is None or self.maximum is None:
            raise InputError(f"{path}: the statistics have no minimum/maximum per band (written by an older rsdistill); run rsdistill stats again")
        return float(np.max(np.asarray(self.maximum)[kept]) - np.min(np.asarray(self.minimum)[kept]))

    def save(self, path) -> Path:
        """Write as JSON atomically (temporary file, then rename)."""
        return write_json(path, {"bands": self.bands, **asdict(self)})

    @classmethod
    def load(cls, path, bands: int | None = None) -> BandStatistics:
        """Read a stats file; with ``bands``, check it describes that many bands."""
        try:
            doc = json.loads(Path(path).read_text())
            stats = cls(**{k: doc.get(k) for k in ("files", "count", "mean", "std", "bad_bands", "wavelengths", "minimum", "maximum")})
        except (OSError, UnicodeDecodeError, json.JSONDecodeError, TypeError) as error:
            raise InputError(f"{path}: not a readable band-statistics file ({error})") from None
        if bands is not None and stats.bands != bands:
            raise InputError(f"{path}: statistics for {stats.bands} bands, but the data has {bands} bands")
        return stats


class RunningMoments:
    """Chan's parallel merge of (count, mean, M2) per band."""

    def __init__(self, bands: int):
        self.count = np.zeros(bands)
        self.mean = np.zeros(bands)
        self.m2 = np.zeros(bands)

    def update(self, pixels: np.ndarray) -> None:
        """pixels: (N, B) valid pixels."""
        n = pixels.shape[0]
        if n == 0:
            return
        batch_mean = pixels.mean(axis=0, dtype=np.float64)
        batch_m2 = ((pixels - batch_mean) ** 2).sum(axis=0, dtype=np.float64)
        total = self.count + n
        delta = batch_mean - self.mean
        self.mean += delta * n / total
        self.m2 += batch_m2 + delta**2 * self.count * n / total
        self.count = total


def band_statistics(paths, tile: int = 256, **open_options) -> BandStatistics:
    """Statistics of the valid pixels of every file in ``paths`` (all with the same band count)."""
    paths = [str(p) for p in paths]
    if not paths:
        raise InputError("band statistics need at least one file")
    moments, bad, wavelengths = None, None, None
    for path in paths:
        source = open_scene(path, **open_options)
        if moments is None:
            moments, bad = RunningMoments(source.bands), np.zeros(source.bands, bool)
            low, high = np.full(source.bands, np.inf), np.full(source.bands, -np.inf)
            wavelengths = source.meta.wavelengths
        elif source.bands != moments.count.size:
            raise InputError(f"{path}: {source.bands} bands, but {paths[0]} has {moments.count.size}")
        has_data = np.zeros(source.bands, bool)
        windows = tile_windows(source.height, source.width, tile)
        # a scene of many tiles says how long it will take (pixels/s and time left on stderr)
        progress = tqdm(total=source.height * source.width, unit="px", unit_scale=True, desc=Path(path).name,
                        disable=len(windows) < PROGRESS_FROM_TILES, file=sys.stderr)
        for window in windows:
            scene = source.read(window)
            progress.update(window.height * window.width)
            has_data |= scene.band_has_data
            pixels = scene.cube[scene.valid].astype(np.float64)
            moments.update(pixels)
            if pixels.size:
                low, high = np.minimum(low, pixels.min(axis=0)), np.maximum(high, pixels.max(axis=0))
        progress.close()
        file_bad = np.zeros(source.bands, bool) if source.meta.bad_bands is None else source.meta.bad_bands
        bad |= file_bad | check_empty_bands(has_data, file_bad, source.meta, source.empty_bands)
    if moments.count.max() == 0:
        raise InputError(f"no valid pixel in {', '.join(paths)}")
    std = np.sqrt(moments.m2 / np.maximum(moments.count, 1))
    std[bad | (std == 0)] = 1.0
    mean = np.where(bad, 0.0, moments.mean)
    count = np.where(bad, 0, moments.count).astype(int)
    return BandStatistics(
        files=paths, count=count.tolist(), mean=mean.tolist(), std=std.tolist(),
        bad_bands=np.flatnonzero(bad).tolist(),
        wavelengths=None if wavelengths is None else np.asarray(wavelengths).tolist(),
        minimum=np.where(bad, 0.0, low).tolist(), maximum=np.where(bad, 0.0, high).tolist(),
    )
