"""``SegmentationData``: image/mask pairs cut into tiles for semantic segmentation.

- Images: ``images`` maps each subset (``train``, ``val``, ``test``) to paths or globs, or to tile
  lists (a ``.csv`` with ``image,mask`` columns, paths relative to it, e.g. SpecDeepMap's); a whole
  image goes to one subset, so no tile of a test image is ever trained on. The pairs are saved as
  ``split.json`` in the run folder.
- Masks: a tile list names each image's mask; otherwise the mask path is the image's own path with
  the ``masks`` replacements applied (e.g. ``[["/images/", "/masks/"], [".jpg", ".png"]]``). A mask
  of another size than its image is an error naming both. Colour or id masks are mapped to classes by the ``legend``
  (``rsdistill.io.masks``); ignored and unknown codes become 255, and unknown codes are counted
  and reported once per file (a warning naming the file and the pixel count, never a silent class).
- Tiles: ``tile_size`` windows with ``stride`` (overlap when smaller); the last row and column of
  windows are aligned to the image's edges so that every pixel is covered. Training tiles are
  flipped and rotated by multiples of 90° at random (the global RNG, saved in checkpoints). With
  ``train_tiles_per_epoch`` an epoch trains on that many tiles, drawn anew each epoch.
- Normalisation: per-band mean/std of the training images' valid pixels (each image once), the
  data's ``Preprocessing``.
- Reading every mask and training image is the costly part of building the data; an experiment
  builds the same data for every model and seed, so within one process the mask checks and the
  statistics are remembered per set of files, keyed by path, size and modification time (a file
  changed on disk is read anew).

Items: {"image": (C, t, t) float32 normalised, "mask": (t, t) int64 class indices, 255 = ignore}.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path

import numpy as np
import torch
from lightning.pytorch.utilities import rank_zero_warn
from torch.utils.data import Dataset

from rsdistill.data.base import TiledDataModule
from rsdistill.data.info import SegmentationDataInfo
from rsdistill.data.paths import expand, read_tile_list, resolve
from rsdistill.data.splits import SUBSETS
from rsdistill.data.statistics import RunningMoments
from rsdistill.errors import InputError
from rsdistill.files import write_json
from rsdistill.io.masks import IGNORE_INDEX, Legend, read_mask
from rsdistill.io.readers import open_scene
from rsdistill.io.scene import Window, tile_windows
from rsdistill.preprocessing import Preprocessing


class SegmentationTiles(Dataset):
    def __init__(self, pairs: list[tuple[Path, Path]], windows: list[tuple[int, Window]], legend: Legend,
                 preprocessing: Preprocessing | None = None, read_options: dict | None = None, augment: bool = False):
        self.pairs, self.windows, self.legend, self.preprocessing = pairs, windows, legend, preprocessing
        self.read_options, self.augment = read_options or {}, augment

    def __len__(self) -> int:
        return len(self.windows)

    def raw(self, index: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(h, w, B) image values, (h, w) validity and (h, w) class indices of tile ``index``."""
        pair, window = self.windows[index]
        image, mask = self.pairs[pair]
        scene = open_scene(image, **self.read_options).read(window)
        classes, _ = read_mask(mask, self.legend, window)
        return scene.cube, scene.valid, np.where(scene.valid, classes, IGNORE_INDEX)

    def __getitem__(self, index: int) -> dict:
        cube, valid, classes = self.raw(index)
        image, mask = torch.from_numpy(self.preprocessing.cube(cube, valid)), torch.from_numpy(classes.astype(np.int64))
        if self.augment:
            turns, flip = int(torch.randint(4, ())), bool(torch.randint(2, ()))
            image, mask = torch.rot90(image, turns, (1, 2)), torch.rot90(mask, turns, (0, 1))
            if flip:
                image, mask = image.flip(2), mask.flip(1)
        return {"image": image.contiguous(), "mask": mask.contiguous()}


class SegmentationData(TiledDataModule):
    def __init__(
        self,
        images: dict[str, list[str]],
        legend: dict,
        masks: list[list[str]] | None = None,
        root: str | None = None,
        read_options: dict | None = None,
        tile_size: int = 256,
        stride: int | None = None,
        augment: bool = True,
        train_tiles_per_epoch: int | None = None,
        batch_size: int = 8,
        num_workers: int = 0,
        seed: int = 0,
    ):
        super().__init__()
        unknown = set(images) - set(SUBSETS)
        if unknown or "train" not in images:
            raise InputError(f"images maps subsets {', '.join(SUBSETS)} (train required) to paths or globs, got {sorted(images)}")
        self.legend = Legend.parse(legend.get("classes", []), legend.get("ignore"), "legend")
        self.tile_size, self.batch_size, self.num_workers, self.seed = tile_size, batch_size, num_workers, seed
        self.read_options, self.train_tiles_per_epoch = read_options or {}, train_tiles_per_epoch
        self.pairs = {subset: [pair for entry in images.get(subset, []) for pair in _pairs(entry, masks or [], root)] for subset in SUBSETS}
        self.files = {subset: [image for image, _ in pairs] for subset, pairs in self.pairs.items()}
        sets, bands = {}, set()
        self.class_pixels = [0] * len(self.legend.names)  # per class, in the training masks (rare-class weights)
        options = json.dumps(self.read_options, sort_keys=True)
        for subset in SUBSETS:
            pairs = self.pairs[subset]
            windows = []
            for index, (image, mask) in enumerate(pairs):
                height, width, count, class_pixels = _checked_pair(image, _stamp(image), mask, _stamp(mask), self.legend, options, tile_size)
                bands.add(count)
                if subset == "train":
                    self.class_pixels = [a + b for a, b in zip(self.class_pixels, class_pixels)]
                step = (stride or tile_size) if subset == "train" else tile_size  # overlap for training only
                windows += [(index, w) for w in tile_windows(height, width, tile_size, step, edges="shift")]
            sets[subset] = SegmentationTiles(pairs, windows, self.legend, read_options=self.read_options, augment=augment and subset == "train")
        if not len(sets["train"]):
            raise InputError("no training image")
        if len(bands) != 1:
            raise InputError(f"the images have different band counts {sorted(bands)}")
        mean, std = _training_moments(tuple((image, _stamp(image)) for image in self.files["train"]), options)
        self.preprocessing = Preprocessing.create(len(mean), mean, std)
        for tiles in sets.values():
            tiles.preprocessing = self.preprocessing
        self.train_set, self.val_set, self.test_set = sets["train"], sets["val"], sets["test"]

    @property
    def info(self) -> dict:
        return SegmentationDataInfo(self.preprocessing.to_dict(), list(self.legend.names), self.tile_size, self.legend.to_dict(),
                                    self.class_pixels).to_dict()

    def setup(self, stage: str | None = None) -> None:
        super().setup(stage)
        # every rank asks (under DDP trainer.log_dir is a collective); rank 0 writes
        log_dir = getattr(self.trainer, "log_dir", None) if self.trainer is not None else None
        if log_dir is not None and stage == "fit" and self.trainer.is_global_zero:
            write_json(Path(log_dir) / "split.json", {subset: [[str(i), str(m)] for i, m in pairs] for subset, pairs in self.pairs.items()})


def _pairs(entry: str, replacements: list[list[str]], root) -> list[tuple[Path, Path]]:
    """(image, mask) pairs of one ``images`` entry: a tile list, or a path/glob with mask replacements."""
    if str(entry).lower().endswith(".csv"):
        return read_tile_list(resolve(entry, root))
    return [(image, _mask_path(image, replacements)) for image in expand(entry, root)]


def _mask_path(image: Path, replacements: list[list[str]]) -> Path:
    text = str(image)
    for old, new in replacements:
        text = text.replace(old, new)
    mask = Path(text)
    if mask == image or not mask.is_file():
        raise InputError(f"{image}: no mask at {mask} (set masks: [[from, to], ...] to turn an image path into its mask's)")
    return mask


def _stamp(path: Path) -> tuple[int, int]:
    """(size, modification time in ns): a file's state, for the memos below."""
    stat = path.stat()
    return stat.st_size, stat.st_mtime_ns


@functools.lru_cache(maxsize=4096)
def _checked_pair(image: Path, image_stamp, mask: Path, mask_stamp, legend: Legend, read_options: str,
                  tile_size: int) -> tuple[int, int, int, tuple[int, ...]]:
    """(height, width, bands, pixels per class of the mask) of an image whose mask is the same size
    and big enough for a tile; unknown mask codes reported once per file state. ``read_options``:
    JSON of the reader options."""
    source = open_scene(image, **json.loads(read_options))
    classes, unknown = read_mask(mask, legend)
    if classes.shape != (source.height, source.width):
        raise InputError(f"{mask}: mask is {classes.shape[0]}×{classes.shape[1]} but its image {image} is {source.height}×{source.width}")
    if min(source.height, source.width) < tile_size:
        raise InputError(f"{image}: {source.height}×{source.width} is smaller than the tile size {tile_size}")
    if unknown:
        rank_zero_warn(f"{mask}: {unknown} pixels have a colour or id the legend does not name; they are ignored")
    counts = np.bincount(classes[classes != IGNORE_INDEX].ravel(), minlength=len(legend.names))
    return source.height, source.width, source.bands, tuple(int(c) for c in counts)


@functools.lru_cache(maxsize=16)
def _training_moments(images: tuple[tuple[Path, tuple[int, int]], ...], read_options: str) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-band mean and std of the valid pixels of whole images, each pixel once (training tiles
    overlap); tuples, so that no caller can change what is remembered."""
    moments = None
    for image, _ in images:
        scene = open_scene(image, **json.loads(read_options)).read()
        if moments is None:
            moments = RunningMoments(scene.cube.shape[-1])
        moments.update(scene.cube[scene.valid])
    return tuple(moments.mean.tolist()), tuple(np.sqrt(moments.m2 / np.maximum(moments.count, 1)).tolist())
