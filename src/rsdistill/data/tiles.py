"""``TileData``: scenes cut into tiles for self-supervised pretraining (MAE, distillation).

- Scenes: files (any reader format) or tile lists; scenes listed under ``holdout`` are never
  trained on and give the validation tiles (reconstruction metrics on unseen data). An entry of
  ``images``/``holdout`` is a path or glob, or a mapping ``{path: <path or glob>, scale: <factor>,
  <read option>: ...}`` whose options (``sensor``, ``time_index``, ...) override ``read_options``
  for those files and whose ``scale`` brings the values to common units (e.g. Slovenia's
  reflectance ×10000 to match EuroSAT's DN).
- Bands: bad bands (union over scenes) are dropped, so EnMAP's 224 bands become 218 as in HyperKD.
  With ``target_sensor`` every scene is first mapped to that sensor's bands by ``band_alignment``
  (scenes from different instruments can then be pooled).
- Tiles: ``tile_size`` with ``stride``; tiles whose nodata fraction exceeds ``max_nodata`` are
  skipped. Normalisation: per-band mean/std from a ``rsdistill stats`` file (band count checked)
  or, by default, from the valid pixels of the training tiles. Nodata pixels are 0 after
  normalisation and are excluded from every loss through ``valid``.

Items: {"image": (C, t, t) float32 normalised, "valid": (t, t) bool}.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, TensorDataset

from rsdistill.data.classification import EpochShuffle
from rsdistill.data.paths import expand, read_tile_list, resolve
from rsdistill.data.statistics import BandStatistics
from rsdistill.errors import InputError
from rsdistill.io.scene import Scene, tile_windows
from rsdistill.spectral.alignment import band_alignment
from rsdistill.spectral.sensors import get_sensor


class _TileSet(TensorDataset):
    def __getitem__(self, index):
        image, valid = super().__getitem__(index)
        return {"image": image, "valid": valid}


class TileData(L.LightningDataModule):
    def __init__(
        self,
        images: list[str | dict] | None = None,
        holdout: list[str | dict] | None = None,
        tile_lists: dict[str, str] | None = None,
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
    ):
        super().__init__()
        self.tile_size, self.batch_size, self.num_workers, self.seed = tile_size, batch_size, num_workers, seed
        self.max_nodata, self.target_sensor = max_nodata, target_sensor
        train_scenes, holdout_scenes = self._load(images, holdout, tile_lists, synthetic, root, read_options or {})
        if target_sensor is not None:
            train_scenes = [_align(s, target_sensor, alignment) for s in train_scenes]
            holdout_scenes = [_align(s, target_sensor, alignment) for s in holdout_scenes]
        scenes = train_scenes + holdout_scenes
        if len({s.shape[2] for s in scenes}) != 1:
            raise InputError(
                "scenes have different band counts ("
                + ", ".join(f"{Path(s.path).name}: {s.shape[2]}" for s in scenes)
                + "); set target_sensor to align them"
            )
        self.keep_bands = ~np.logical_or.reduce([s.bad_bands for s in scenes])
        reference = scenes[0]
        self.wavelengths = None if reference.wavelengths is None else reference.wavelengths[self.keep_bands].tolist()
        train_images, train_valid = self._tiles(train_scenes, stride)
        val_images, val_valid = self._tiles(holdout_scenes or train_scenes[-1:], tile_size)
        if not len(train_images):
            raise InputError(f"no training tile of {tile_size}×{tile_size} px with at most {max_nodata:.0%} nodata")
        if stats is not None:
            loaded = BandStatistics.load(stats, bands=len(self.keep_bands))
            mean, std = np.array(loaded.mean)[self.keep_bands], np.array(loaded.std)[self.keep_bands]
        else:
            pixels = train_images.transpose(0, 2, 3, 1)[train_valid]
            mean, std = pixels.mean(0), pixels.std(0)
        self.band_mean, self.band_std = mean.tolist(), np.where(std > 0, std, 1.0).tolist()
        valid_values = train_images.transpose(0, 2, 3, 1)[train_valid]
        self.data_range = float(valid_values.max() - valid_values.min())
        self.train_set = self._dataset(train_images, train_valid)
        self.val_set = self._dataset(val_images, val_valid)
        self.scene_names = [s.path for s in scenes]

    @staticmethod
    def _load(images, holdout, tile_lists, synthetic, root, read_options):
        if synthetic is not None:
            from rsdistill.data.synthetic import make_synthetic_scene

            return [make_synthetic_scene(**synthetic).scene], [make_synthetic_scene(**{**synthetic, "seed": synthetic.get("seed", 0) + 1}).scene]
        if tile_lists is not None:
            images = [str(img) for name, csv in tile_lists.items() if name != "test" for img, _ in read_tile_list(resolve(csv, root))]
            holdout = [str(img) for name, csv in tile_lists.items() if name == "test" for img, _ in read_tile_list(resolve(csv, root))]
        elif not images:
            raise InputError("give images, tile_lists or synthetic")
        return _read_specs(images, root, read_options), _read_specs(holdout or [], root, read_options)

    def _tiles(self, scenes: list[Scene], stride: int | None) -> tuple[np.ndarray, np.ndarray]:
        """(T, C, t, t) raw tiles of kept bands and (T, t, t) validity, nodata-heavy tiles skipped."""
        images, valids = [], []
        for scene in scenes:
            if self.tile_size > min(scene.shape[:2]):
                raise InputError(f"tile size {self.tile_size} is larger than scene {scene.path} ({scene.shape[0]}×{scene.shape[1]})")
            for window in tile_windows(scene.shape[0], scene.shape[1], self.tile_size, stride or self.tile_size):
                if window.height < self.tile_size or window.width < self.tile_size:
                    continue
                rows, cols = window.slices
                valid = scene.valid[rows, cols]
                if 1 - valid.mean() > self.max_nodata:
                    continue
                images.append(scene.cube[rows, cols][:, :, self.keep_bands].transpose(2, 0, 1))
                valids.append(valid)
        if not images:
            return np.zeros((0, int(self.keep_bands.sum()), self.tile_size, self.tile_size), np.float32), np.zeros((0, self.tile_size, self.tile_size), bool)
        return np.stack(images), np.stack(valids)

    def _dataset(self, images: np.ndarray, valid: np.ndarray) -> _TileSet:
        mean = np.array(self.band_mean, np.float32)[None, :, None, None]
        std = np.array(self.band_std, np.float32)[None, :, None, None]
        normalised = np.where(valid[:, None], (images - mean) / std, 0.0).astype(np.float32)
        return _TileSet(torch.from_numpy(normalised), torch.from_numpy(valid))

    @property
    def num_bands(self) -> int:
        return int(self.keep_bands.sum())

    def train_dataloader(self):
        sampler = EpochShuffle(len(self.train_set), self.seed)
        generator = torch.Generator().manual_seed(self.seed)
        return DataLoader(self.train_set, self.batch_size, sampler=sampler, generator=generator, num_workers=self.num_workers)

    def val_dataloader(self):
        return DataLoader(self.val_set, self.batch_size, num_workers=self.num_workers)


def _read_specs(specs: list, root, read_options: dict) -> list[Scene]:
    """Scenes of ``images``/``holdout`` entries (module docstring), scaled to common units."""
    scenes = []
    for spec in specs:
        options = {**read_options, **(spec if isinstance(spec, dict) else {"path": spec})}
        if "path" not in options:
            raise InputError(f"scene entry {spec!r} has no 'path'")
        pattern, scale = options.pop("path"), float(options.pop("scale", 1.0))
        for path in expand(str(pattern), root):
            scene = Scene.read(path, **options)
            if scale != 1.0:
                scene = replace(scene, cube=(scene.cube * scale).astype(np.float32))
            scenes.append(scene)
    return scenes


def _align(scene: Scene, target: str, method: str) -> Scene:
    """The scene's cube mapped to ``target``'s bands (bad source bands get zero weight)."""
    sensor = get_sensor(target)
    weights = band_alignment(scene.sensor(), sensor, method)  # (T, S)
    cube = (scene.cube @ weights.T).astype(np.float32)
    return Scene(
        cube=cube, valid=scene.valid, bad_bands=~sensor.valid, wavelengths=sensor.centers, fwhm=sensor.fwhm,
        crs=scene.crs, transform=scene.transform, path=scene.path, format=scene.format, notes=scene.notes,
    )
