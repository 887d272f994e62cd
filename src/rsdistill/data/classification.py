"""``PixelClassificationData``: labelled scenes -> split -> normalisation -> patch loaders.

Scenes come from files (any format the readers know, each with a label map), from tile lists
(CSV files with ``image,mask`` columns such as the EnMAP Potsdam SpecDeepMap lists, which also fix
a tile-disjoint split), or from the embedded synthetic scene. Band statistics are computed from
the training centre pixels only; they are the data's ``Preprocessing`` (``info``). The split is saved (``split.json``) where the trainer logs, and
``split_file`` reloads it.
"""

from __future__ import annotations

from pathlib import Path

import lightning as L
import numpy as np
import torch
from lightning.pytorch.utilities import rank_zero_info
from torch.utils.data import DataLoader

from rsdistill.data.info import PixelDataInfo
from rsdistill.data.patches import PixelPatches, check_patch_size, padded_cube
from rsdistill.data.paths import read_tile_list, resolve
from rsdistill.data.sampling import EpochShuffle
from rsdistill.data.splits import (
    SPLIT_METHODS,
    SUBSETS,
    PixelSplit,
    block_split,
    fold_split,
    labelled_pixels,
    scene_split,
    stratified_split,
    subsample_per_class,
    unlabelled_training_pixels,
)
from rsdistill.data.synthetic import make_synthetic_scene
from rsdistill.errors import InputError
from rsdistill.io.readers import read_scene
from rsdistill.preprocessing import Preprocessing
from rsdistill.spectral.alignment import simulated_bands


class PixelClassificationData(L.LightningDataModule):
    """Patches around labelled pixels of one or more scenes.

    Args:
        images, labels: scene files and their label maps (same length), relative to ``root``.
        tile_lists: {"train": csv, "val": csv, "test": csv} of image,mask pairs; with split "scenes"
            each list's tiles go whole to that subset, otherwise the tiles are pooled.
        synthetic: options of ``make_synthetic_scene`` to use the embedded scene instead of files.
        read_options: options for every scene (``sensor``, ``time_index``, ``key``, ``bad_bands``...).
        split: "stratified" (per-class ``train``/``val`` fraction or count), "blocks" (whole
            ``block_size`` blocks, fractions of blocks), "scenes", or "folds": fold ``fold`` of a
            spatial ``folds``-fold cross-validation over ``block_size`` blocks dealt with
            ``fold_seed`` (test = that fold, validation = the next, training pixels within the
            buffer of either dropped; ``splits.fold_split``).
        split_file: reload this saved split instead of drawing one.
        buffer: validation and test pixels within this many pixels of a training pixel are dropped
            (no held-out pixel inside a training patch; with "folds" the training pixels near the
            held-out blocks are dropped instead); default: the patch radius for "blocks" and
            "folds", 0 for "stratified" and "scenes" (separate files).
        max_train_per_class: keep at most this many training pixels per class (seeded), to bound
            training time; the dropped pixels are used by no subset.
        train_pixels_per_epoch: each epoch draws this many training pixels (repeating the training
            pixels in fresh orders when there are fewer), so the optimiser steps per epoch do not
            depend on ``max_train_per_class`` (label-budget curves); default: each pixel once.
        min_class_pixels: with "blocks", drop a class with fewer pixels than this on the train or
            the test side from every subset; with "folds", a class with fewer labelled pixels than
            this in all, from every fold (listed in the log and in ``split.json``), instead of
            failing when a rare class lands on one side.
        kd_unlabelled: draw this many pixels of the training region that are not training centres
            per epoch for a distilled student's KD term (soft targets, no labels; ``splits.unlabelled_training_pixels``:
            spatial splits only, never within a patch radius of a validation or test pixel). The
            training loader then yields {"labelled": batch, "unlabelled": batch}, equal in number of batches.
        input_sensor: the model sees the scenes' bands resampled to this registered sensor's bands
            (those the scenes cover; ``spectral.alignment.simulated_bands`` with ``input_alignment``),
            e.g. ``sentinel2`` or ``rgb``: a cheap-sensor student of a hyperspectral scene, whose
            teacher may see every band (privileged input). The loaders still yield the raw bands;
            the resampling is the first step of the model's ``Preprocessing``, saved with it.
    """

    def __init__(
        self,
        images: list[str] | None = None,
        labels: list[str] | None = None,
        tile_lists: dict[str, str] | None = None,
        synthetic: dict | None = None,
        root: str | None = None,
        read_options: dict | None = None,
        split: str = "stratified",
        train: float = 0.1,
        val: float = 0.05,
        block_size: int = 16,
        folds: int = 5,
        fold: int = 0,
        fold_seed: int = 0,
        buffer: int | None = None,
        split_file: str | None = None,
        max_train_per_class: int | None = None,
        train_pixels_per_epoch: int | None = None,
        min_class_pixels: int | None = None,
        kd_unlabelled: int | None = None,
        input_sensor: str | None = None,
        input_alignment: str = "srf",
        patch_size: int = 9,
        batch_size: int = 64,
        seed: int = 0,
        num_workers: int = 0,
    ):
        super().__init__()
        if split not in SPLIT_METHODS:
            raise InputError(f"unknown split {split!r}; choose one of {', '.join(SPLIT_METHODS)}")
        if min_class_pixels is not None and split not in ("blocks", "folds"):
            raise InputError(f"min_class_pixels applies to the blocks and folds splits, not {split!r}")
        self.patch_size, self.batch_size, self.num_workers = patch_size, batch_size, num_workers
        if train_pixels_per_epoch is not None and train_pixels_per_epoch < 1:
            raise InputError(f"train_pixels_per_epoch must be at least 1, got {train_pixels_per_epoch}")
        self.train_pixels_per_epoch = train_pixels_per_epoch
        self.scenes, assignment = self._load_scenes(images, labels, tile_lists, synthetic, root, read_options or {})
        check_patch_size(patch_size, self.scenes)
        names = [s.path for s in self.scenes]
        label_maps = [np.where(s.valid, s.labels, 0) for s in self.scenes]  # nodata pixels are never centres
        coords, classes = labelled_pixels(label_maps)
        if np.unique(classes).size < 2:
            raise InputError(f"{', '.join(map(str, names))}: the labels hold one class ({int(classes[0])}); classification needs at least two")
        if split_file is not None:
            self.split = PixelSplit.load(split_file, names)
        elif split == "scenes":
            if assignment is None:
                raise InputError("split 'scenes' needs tile_lists (train/val/test CSVs)")
            self.split = scene_split(coords, classes, assignment, seed, names)
        elif split == "folds":
            radius = patch_size // 2 if buffer is None else buffer
            self.split = fold_split(coords, classes, block_size, folds, fold, fold_seed, seed, names,
                                    [s.valid.shape for s in self.scenes], radius, min_class_pixels or 0)
            if self.split.dropped_classes:
                rank_zero_info(f"classes {self.split.dropped_classes} have fewer than {min_class_pixels} labelled pixels: dropped from every fold")
        elif split == "blocks":
            self.split = block_split(coords, classes, block_size, train, val, seed, names, min_class_pixels or 0)
            if self.split.dropped_classes:
                rank_zero_info(f"classes {self.split.dropped_classes} have fewer than {min_class_pixels} pixels on the train or test "
                               f"side of the blocks split: dropped from every subset")
        else:
            self.split = stratified_split(coords, classes, train, val, seed, names)
        if max_train_per_class is not None and split_file is None:
            self.split.train = subsample_per_class(self.split.train, self.targets_of(self.split.train), max_train_per_class, seed)
        if split_file is None and split != "folds":
            radius = (patch_size // 2 if split == "blocks" else 0) if buffer is None else buffer
            self.split, removed = self.split.buffered(radius)
            if radius:
                rank_zero_info(f"split buffer of {radius} px around training pixels: dropped {removed['val']} validation and "
                               f"{removed['test']} test pixels; {len(self.split.val)} and {len(self.split.test)} remain")
        self.kd_unlabelled = kd_unlabelled
        if kd_unlabelled and split_file is None:
            self.split.unlabelled = unlabelled_training_pixels(self.split, [s.valid for s in self.scenes], block_size, patch_size // 2)
        if kd_unlabelled and not len(self.split.unlabelled):
            raise InputError("kd_unlabelled: the training region holds no unlabelled pixel (outside a patch radius of the held-out pixels)")
        self.class_ids = sorted(int(c) for c in np.unique(classes) if int(c) not in self.split.dropped_classes)
        if len(self.class_ids) < 2:
            raise InputError(f"{', '.join(map(str, names))}: dropping classes {self.split.dropped_classes} (min_class_pixels) leaves one "
                             f"class ({self.class_ids[0]}); classification needs at least two")
        self._padded = [padded_cube(s, patch_size) for s in self.scenes]
        train_pixels = self._centre_spectra(self.split.train)
        alignment, wavelengths = None, self.scenes[0].wavelengths
        if input_sensor is not None:
            alignment, simulated = simulated_bands(self._scenes_sensor(), input_sensor, input_alignment)
            train_pixels, wavelengths = train_pixels @ alignment.T.astype(np.float64), simulated.centers
        self.preprocessing = Preprocessing.create(self.num_bands, train_pixels.mean(axis=0), train_pixels.std(axis=0),
                                                  alignment=alignment, wavelengths=wavelengths)

    @property
    def info(self) -> dict:
        """What a classifier needs to know about this data (saved in its checkpoint)."""
        return PixelDataInfo(self.preprocessing.to_dict(), self.class_ids, self.patch_size).to_dict()

    @staticmethod
    def _load_scenes(images, labels, tile_lists, synthetic, root, read_options):
        if synthetic is not None:
            return [make_synthetic_scene(**synthetic).scene], None
        if tile_lists is not None:
            pairs, assignment = [], {}
            for subset, csv_path in tile_lists.items():
                if subset not in SUBSETS:
                    raise InputError(f"tile_lists keys must be {', '.join(SUBSETS)}, got {subset!r}")
                tiles = read_tile_list(resolve(csv_path, root))
                assignment[subset] = list(range(len(pairs), len(pairs) + len(tiles)))
                pairs += tiles
        else:
            if not images or labels is None or len(images) != len(labels):
                raise InputError("give images and labels of the same length, tile_lists, or synthetic")
            pairs, assignment = [(resolve(image, root), resolve(label, root)) for image, label in zip(images, labels)], None
        return [read_scene(image, labels=mask, **read_options) for image, mask in pairs], assignment

    def _scenes_sensor(self):
        """The bands of every scene (one sensor: the same wavelengths in each)."""
        first = self.scenes[0]
        for scene in self.scenes[1:]:
            if scene.wavelengths is None or first.wavelengths is None or not np.array_equal(scene.wavelengths, first.wavelengths):
                raise InputError(f"input_sensor: {scene.path} and {first.path} do not have the same wavelengths; "
                                 f"the scenes must come from one sensor to be resampled by one band alignment")
        return first.sensor()

    def plot(self, path, scene: int = 0, split: bool = False):
        """A quick look at one scene (``figures.scene_figure``): true colour, its labels and class-mean
        spectra; ``split=True`` draws the split instead of the classes (training, validation, test
        and unlabelled-KD pixels). Returns the PNG's path."""
        from rsdistill.figures import scene_figure

        if not 0 <= scene < len(self.scenes):
            raise InputError(f"scene {scene}: the data holds scenes 0..{len(self.scenes) - 1}")
        data = self.scenes[scene]
        labels, names = np.where(data.valid, data.labels, 0), None
        if split:
            labels = np.zeros_like(labels)
            names = {1: "train", 2: "validation", 3: "test", 4: "unlabelled (KD)"}
            for code, subset in ((4, self.split.unlabelled), (1, self.split.train), (2, self.split.val), (3, self.split.test)):
                pixels = np.asarray(subset).reshape(-1, 3)
                pixels = pixels[pixels[:, 0] == scene]
                labels[pixels[:, 1], pixels[:, 2]] = code
        return scene_figure(data, path, labels, names, title=f"{data.path or 'synthetic scene'}" + (" — split" if split else ""))

    @property
    def num_bands(self) -> int:
        return self.scenes[0].shape[2]

    @property
    def num_classes(self) -> int:
        return len(self.class_ids)

    def _centre_spectra(self, coords: np.ndarray) -> np.ndarray:
        return np.concatenate([self.scenes[s].cube[r, c][None] for s, r, c in coords]).astype(np.float64)

    def targets_of(self, coords: np.ndarray) -> np.ndarray:
        """Class ids (as in the label maps) of the labelled pixels at ``coords``."""
        return np.array([self.scenes[s].labels[r, c] for s, r, c in coords], dtype=np.int64)

    def targets(self, coords: np.ndarray) -> np.ndarray:
        """Class indices 0..K-1 of the labelled pixels at ``coords``."""
        return np.searchsorted(self.class_ids, self.targets_of(coords))

    def dataset(self, subset: str) -> PixelPatches:
        coords = self.split.subset(subset)
        return PixelPatches(self._padded, coords, self.targets(coords), self.patch_size)

    def setup(self, stage: str | None = None) -> None:
        # every rank asks (under DDP trainer.log_dir is a collective); rank 0 writes
        log_dir = getattr(self.trainer, "log_dir", None) if self.trainer is not None else None
        if log_dir is not None and stage == "fit" and self.trainer.is_global_zero:
            self.split.save(Path(log_dir) / "split.json")

    def _loader(self, subset: str, shuffle: bool) -> DataLoader:
        data = self.dataset(subset)
        if len(data) == 0:
            raise InputError(f"the {subset} split is empty")
        sampler = EpochShuffle(len(data), self.split.seed, self.train_pixels_per_epoch) if shuffle else None
        # An own generator keeps DataLoader from drawing worker seeds from the global RNG, which
        # drives dropout and is saved in checkpoints (exact resume).
        generator = torch.Generator().manual_seed(self.split.seed)
        return DataLoader(data, batch_size=self.batch_size, sampler=sampler, num_workers=self.num_workers, generator=generator)

    def train_dataloader(self):
        labelled = self._loader("train", shuffle=True)
        if not self.kd_unlabelled:
            return labelled
        pool = PixelPatches(self._padded, self.split.unlabelled, np.full(len(self.split.unlabelled), -1), self.patch_size)
        count = min(self.kd_unlabelled, len(pool))
        sampler = EpochShuffle(len(pool), self.split.seed + 1, count)  # a fresh draw each epoch, fixed by (seed, epoch)
        batch = -(-count // len(labelled))  # as many batches as the labelled loader
        unlabelled = DataLoader(pool, batch_size=batch, sampler=sampler, num_workers=self.num_workers,
                                generator=torch.Generator().manual_seed(self.split.seed + 1))
        return {"labelled": labelled, "unlabelled": unlabelled}

    def val_dataloader(self):
        return self._loader("val", shuffle=False)

    def test_dataloader(self):
        return self._loader("test", shuffle=False)

    def predict_dataloader(self):
        return self._loader("test", shuffle=False)
