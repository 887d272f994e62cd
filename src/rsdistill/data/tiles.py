"""``TileData``: scenes cut into tiles for self-supervised pretraining (MAE, distillation).

- Scenes: files (any reader format) or tile lists, in three subsets: ``images`` (training),
  ``validation`` (metrics during ``fit``, ``val/…``) and ``test`` (``rsdistill test``, ``test/…``).
  A ``tile_lists`` entry maps a subset (train / val / test) to one CSV or a list of CSVs. An entry
  of a subset is a path or glob, or a mapping ``{path: <path or glob>, scale: <factor>, window:
  {row, col, height, width}, <read option>: ...}`` whose options (``sensor``, ``time_index``, ...)
  override ``read_options`` for those files, whose ``scale`` brings the values to common units
  (e.g. Slovenia's reflectance ×10000 to match EuroSAT's DN) and whose ``window`` takes a region
  (so one scene can give spatially disjoint training and held-out regions).
- Bands: bad bands (union over scenes) are dropped, so EnMAP's 224 bands become 218 as in HyperKD.
  With ``target_sensor`` every scene is first mapped to that sensor's bands by ``band_alignment``
  (scenes from different instruments can then be pooled).
- Tiles: ``tile_size`` with ``stride``; tiles whose nodata fraction exceeds ``max_nodata`` are
  skipped; ``train_tiles_per_epoch`` caps an epoch at that many training tiles, drawn anew. Tiles are read window by window when they are used, never held in memory: memory does
  not grow with the number of tiles or their overlap.
- Normalisation: per-band mean/std from a ``rsdistill stats`` file (band count checked) or, by
  default, from the valid pixels of the training tiles (one streaming pass). It is the data's
  ``Preprocessing`` (``info``); nodata pixels are 0 after normalisation and are excluded from every
  loss through ``valid``.

Items: {"image": (C, t, t) float32 normalised, "valid": (t, t) bool}.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from rsdistill.data.paths import expand, read_tile_list, resolve
from rsdistill.data.base import TiledDataModule
from rsdistill.data.statistics import BandStatistics, RunningMoments
from rsdistill.errors import InputError
from rsdistill.io.readers import open_scene
from rsdistill.io.scene import SceneMetadata, Window, own_sensor, parse_window, tile_windows
from rsdistill.io.source import ArraySource, SceneSource
from rsdistill.preprocessing import Preprocessing
from rsdistill.spectral.alignment import band_alignment
from rsdistill.spectral.sensors import get_sensor

SUBSETS = {"train": "images", "val": "validation", "test": "test"}


@dataclass
class SceneEntry:
    """An opened scene (or a region of one) and ``to_common``: its ``scale`` and band alignment onto
    the common bands (a ``Preprocessing`` with identity statistics)."""

    source: SceneSource
    region: Window
    to_common: Preprocessing

    @property
    def name(self) -> str:
        return self.source.meta.path

    @property
    def bands(self) -> int:
        return self.to_common.channels

    def read(self, window: Window) -> tuple[np.ndarray, np.ndarray]:
        """(h, w, bands) float32 cube in common units and bands, and (h, w) validity."""
        scene = self.source.read(window)
        if self.to_common.alignment is None and self.to_common.scale == 1.0:
            return scene.cube, scene.valid
        return self.to_common.cube(scene.cube).transpose(1, 2, 0), scene.valid


class SceneTiles(Dataset):
    """Tiles ``(entry index, window)`` read on demand and prepared with ``preprocessing``."""

    def __init__(self, entries: list[SceneEntry], tiles: list[tuple[int, Window]], preprocessing: Preprocessing | None = None):
        self.entries, self.tiles, self.preprocessing = entries, tiles, preprocessing

    def __len__(self) -> int:
        return len(self.tiles)

    def raw(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        entry, window = self.tiles[index]
        return self.entries[entry].read(window)

    def __getitem__(self, index: int) -> dict:
        cube, valid = self.raw(index)
        return {"image": torch.from_numpy(self.preprocessing.cube(cube, valid)), "valid": torch.from_numpy(valid)}

    def images(self, count: int) -> torch.Tensor:
        """The first ``count`` tiles stacked: (count, C, t, t)."""
        return torch.stack([self[i]["image"] for i in range(min(count, len(self)))])


class TileData(TiledDataModule):
    def __init__(
        self,
        images: list[str | dict] | None = None,
        validation: list[str | dict] | None = None,
        test: list[str | dict] | None = None,
        tile_lists: dict[str, str | list[str]] | None = None,
        synthetic: dict | None = None,
        root: str | None = None,
        read_options: dict | None = None,
        target_sensor: str | None = None,
        alignment: str = "srf",
        tile_size: int = 16,
        stride: int | None = None,
        max_nodata: float = 0.1,
        stats: str | None = None,
        batch_size: int = 32,
        num_workers: int = 0,
        seed: int = 0,
        train_tiles_per_epoch: int | None = None,
    ):
        super().__init__()
        self.tile_size, self.batch_size, self.num_workers, self.seed = tile_size, batch_size, num_workers, seed
        self.train_tiles_per_epoch = train_tiles_per_epoch
        self.max_nodata, self.target_sensor = max_nodata, target_sensor
        specs = _subset_specs(images, validation, test, tile_lists, synthetic, root)
        entries = {subset: _open_specs(found, root, read_options or {}, target_sensor, alignment) for subset, found in specs.items()}
        every = [e for found in entries.values() for e in found]
        if len({e.bands for e in every}) != 1:
            raise InputError(
                "scenes have different band counts (" + ", ".join(f"{Path(e.name).name}: {e.bands}" for e in every) + "); set target_sensor to align them"
            )
        bad = np.logical_or.reduce([_bad_bands(e, target_sensor) for e in every])
        self.keep_bands = ~bad
        reference = every[0].source.meta
        wavelengths = get_sensor(target_sensor).centers if target_sensor else reference.wavelengths
        self.scene_names = [e.name for e in every]
        moments = _TrainingPixels(int(self.keep_bands.sum()))
        sets = {subset: SceneTiles(found, self._tiles(found, stride if subset == "images" else tile_size, moments if subset == "images" else None))
                for subset, found in entries.items()}
        if not len(sets["images"]):
            raise InputError(f"no training tile of {tile_size}×{tile_size} px with at most {max_nodata:.0%} nodata")
        if stats is not None:
            loaded = BandStatistics.load(stats, bands=len(self.keep_bands))
            mean, std = np.array(loaded.mean)[self.keep_bands], np.array(loaded.std)[self.keep_bands]
        else:
            mean, std = moments.mean, moments.std
        self.data_range = moments.high - moments.low
        self.preprocessing = Preprocessing.create(
            len(bad), mean, std, kept=np.flatnonzero(self.keep_bands),
            wavelengths=None if wavelengths is None else np.asarray(wavelengths)[self.keep_bands], sensor=target_sensor,
        )
        for tiles in sets.values():
            tiles.preprocessing = self.preprocessing
        self.train_set, self.val_set, self.test_set = sets["images"], sets["validation"], sets["test"]

    @property
    def info(self) -> dict:
        """What a model needs to know about this data (saved in its checkpoint and card)."""
        return {"preprocessing": self.preprocessing.to_dict(), "tile_size": self.tile_size, "data_range": self.data_range,
                "sensor": self.target_sensor, "scenes": self.scene_names}

    @property
    def num_bands(self) -> int:
        return self.preprocessing.channels

    @property
    def wavelengths(self) -> list[float] | None:
        return None if self.preprocessing.wavelengths is None else list(self.preprocessing.wavelengths)

    def _tiles(self, entries: list[SceneEntry], stride: int | None, pixels: _TrainingPixels | None = None) -> list[tuple[int, Window]]:
        """Full ``tile_size`` windows of every region with at most ``max_nodata`` nodata; each tile's
        valid pixels (kept bands) go into ``pixels`` in the same pass, when given."""
        tiles = []
        for index, entry in enumerate(entries):
            region = entry.region
            if self.tile_size > min(region.height, region.width):
                raise InputError(f"tile size {self.tile_size} is larger than scene {entry.name} ({region.height}×{region.width})")
            for w in tile_windows(region.height, region.width, self.tile_size, stride or self.tile_size):
                if w.height < self.tile_size or w.width < self.tile_size:
                    continue
                window = Window(region.row + w.row, region.col + w.col, w.height, w.width)
                cube, valid = entry.read(window)
                if 1 - valid.mean() <= self.max_nodata:
                    tiles.append((index, window))
                    if pixels is not None:
                        pixels.update(cube[valid][:, self.keep_bands])
        return tiles


class _TrainingPixels(RunningMoments):
    """Per-band moments (Chan's merge, float64) and the value range of the valid training pixels.

    Tiles overlap when the stride is below the tile size; a pixel counts once per tile, as training sees it.
    """

    def __init__(self, bands: int):
        super().__init__(bands)
        self.low, self.high = np.inf, -np.inf

    def update(self, pixels: np.ndarray) -> None:
        super().update(pixels)
        if pixels.size:
            self.low, self.high = min(self.low, float(pixels.min())), max(self.high, float(pixels.max()))

    @property
    def std(self) -> np.ndarray:
        return np.sqrt(self.m2 / np.maximum(self.count, 1))


def _subset_specs(images, validation, test, tile_lists, synthetic, root) -> dict[str, list]:
    """Scene entries per subset (``images``, ``validation``, ``test``)."""
    if synthetic is not None:
        from rsdistill.data.synthetic import make_synthetic_scene

        seed = synthetic.get("seed", 0)  # validation and test: two other draws of the same kind of scene
        scenes = [make_synthetic_scene(**{**synthetic, "seed": seed + k}).scene for k in range(3)]
        return {"images": scenes[:1], "validation": scenes[1:2], "test": scenes[2:]}
    specs = {"images": list(images or []), "validation": list(validation or []), "test": list(test or [])}
    for subset, csvs in (tile_lists or {}).items():
        if subset not in SUBSETS:
            raise InputError(f"tile_lists keys must be {', '.join(SUBSETS)}, got {subset!r}")
        for csv in [csvs] if isinstance(csvs, str) else csvs:
            specs[SUBSETS[subset]] += [str(image) for image, _ in read_tile_list(resolve(csv, root))]
    if not specs["images"]:
        raise InputError("give images, tile_lists (with a train list) or synthetic")
    return specs


def _open_specs(specs: list, root, read_options: dict, target: str | None, method: str) -> list[SceneEntry]:
    """Opened scenes of one subset's entries (module docstring)."""
    entries = []
    for spec in specs:
        if not isinstance(spec, (str, dict)):  # a Scene already in memory (the synthetic one)
            entries.append(_entry(_in_memory(spec), None, 1.0, target, method))
            continue
        options = {**read_options, **(spec if isinstance(spec, dict) else {"path": spec})}
        if "path" not in options:
            raise InputError(f"scene entry {spec!r} has no 'path'")
        pattern, scale = options.pop("path"), float(options.pop("scale", 1.0))
        window = options.pop("window", None)
        for path in expand(str(pattern), root):
            entries.append(_entry(open_scene(path, **options), parse_window(window, path), scale, target, method))
    return entries


def _entry(source: SceneSource, window: Window | None, scale: float, target: str | None, method: str) -> SceneEntry:
    region = window or Window(0, 0, source.height, source.width)
    if region.row < 0 or region.col < 0 or region.row + region.height > source.height or region.col + region.width > source.width:
        raise InputError(f"{source.meta.path}: window {region} lies outside the {source.height}×{source.width} scene")
    alignment = band_alignment(own_sensor(source.meta), get_sensor(target), method) if target else None
    bands = source.bands if alignment is None else alignment.shape[0]
    return SceneEntry(source, region, Preprocessing.create(source.bands, [0.0] * bands, [1.0] * bands, alignment=alignment, scale=scale))


def _bad_bands(entry: SceneEntry, target: str | None) -> np.ndarray:
    if target is not None:
        return ~get_sensor(target).valid
    bad = entry.source.meta.bad_bands
    return np.zeros(entry.source.bands, bool) if bad is None else np.asarray(bad, bool)


def _in_memory(scene) -> ArraySource:
    """A ``Scene`` already in memory (the synthetic one), read by window like a file."""
    return ArraySource(scene.cube, SceneMetadata(scene.path, scene.format, scene.dtype, scene.wavelengths, scene.fwhm,
                                                 scene.bad_bands, scene.nodata, scene.band_names, scene.crs, scene.transform))
