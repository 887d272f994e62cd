"""``TileData``: scenes cut into tiles for self-supervised pretraining (MAE, distillation).

- Scenes: files (any reader format) or tile lists, in three subsets: ``images`` (training),
  ``validation`` (metrics during ``fit``, ``val/…``) and ``test`` (``rsdistill test``, ``test/…``).
  A ``tile_lists`` entry maps a subset (train / val / test) to one CSV or a list of CSVs. An entry
  of a subset is a path or glob, or a mapping ``{path: <path or glob>, scale: <factor>, window:
  {row, col, height, width}, <read option>: ...}`` whose options (``sensor``, ``time_index``, ...)
  override ``read_options`` for those files, whose ``scale`` brings the values to common units
  (e.g. Slovenia's reflectance ×10000 to match EuroSAT's DN) and whose ``window`` takes a region
  (so one scene can give spatially disjoint training and held-out regions). ``max_train_scenes``
  trains on that many of the training scenes only, the first of an order fixed by ``seed`` (so a
  seed's smaller budgets are subsets of its larger ones: a data-budget curve); the scenes used are
  in ``info["scenes"]``, hence in every checkpoint and card.
- Bands: bad bands (union over scenes) are dropped, so EnMAP's 224 bands become 218 as in HyperKD.
  With ``target_sensor`` every scene is first mapped to that sensor's bands by ``band_alignment``
  (scenes from different instruments can then be pooled).
- Tiles: ``tile_size`` with ``stride``; tiles whose nodata fraction exceeds ``max_nodata`` are
  skipped; ``train_tiles_per_epoch`` sets an epoch to that many training tiles, drawn anew. Tiles
  are read window by window when they are used, never held in memory: memory does not grow with
  the number of tiles or their overlap. Building the data reads every tile once (nodata check,
  statistics), a row of tiles per read (``SceneEntry.read_each``, blocks of at most
  ``BLOCK_BYTES``), and keeps every scene open.
- Streamed (``streamed: true``, for corpora of thousands of scenes): only the training scenes'
  headers are read when the data is built, none is kept open, and training tiles come from
  ``StreamedTiles`` (``rsdistill.data.streaming``): an order fixed by (seed, epoch), sharded by
  rank and DataLoader worker, through a ``shuffle_buffer``; ``train_tiles_per_epoch`` defaults to
  one pass over the corpus. Statistics then come from a ``stats`` file (required), which also
  gives the value range of the PSNR/SSIM metrics.
- Normalisation: per-band mean/std from a ``rsdistill stats`` file (band count checked) or, by
  default, from the valid pixels of the training tiles (one streaming pass). It is the data's
  ``Preprocessing`` (``info``); nodata pixels are 0 after normalisation and are excluded from every
  loss through ``valid``.

Items: {"image": (C, t, t) float32 normalised, "valid": (t, t) bool, "index": the tile's index in
its set} (streamed training tiles carry their key, "tile", instead of an index).
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Iterator
from dataclasses import dataclass, replace

import numpy as np
import torch
from torch.utils.data import Dataset

from rsdistill.data.base import TiledDataModule
from rsdistill.data.info import TileDataInfo
from rsdistill.data.paths import expand, read_tile_list, resolve
from rsdistill.data.splits import SUBSETS
from rsdistill.data.statistics import BandStatistics, RunningMoments
from rsdistill.data.streaming import CorpusFile, StreamedTiles, StreamLoader, full_windows
from rsdistill.errors import InputError
from rsdistill.io.readers import open_scene
from rsdistill.io.scene import SceneMetadata, Window, own_sensor, parse_window
from rsdistill.io.source import ArraySource, SceneSource
from rsdistill.preprocessing import Preprocessing
from rsdistill.spectral.alignment import band_alignment
from rsdistill.spectral.sensors import get_sensor

OPTION_OF_SUBSET = {"train": "images", "val": "validation", "test": "test"}  # each subset (data.splits.SUBSETS) -> its option


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
        return self._common(scene.cube, scene.valid)

    def read_each(self, windows: list[Window]) -> Iterator[tuple[Window, np.ndarray, np.ndarray]]:
        """``(window, *read(window))`` for each of ``windows`` (equal heights, in row order), the same
        values as ``read`` gives, from one read per row of windows (in blocks of at most
        ``BLOCK_BYTES``) rather than one per window: building tiles costs a read per tile row."""
        for _, in_row in itertools.groupby(windows, key=lambda window: window.row):
            block: list[Window] = []
            for window in [*in_row, None]:
                if block and (window is None or _span(block[0], window).width * window.height * self.source.bands * 4 > BLOCK_BYTES):
                    span = _span(block[0], block[-1])
                    scene = self.source.read(span)
                    for inside in block:
                        columns = slice(inside.col - span.col, inside.col - span.col + inside.width)
                        yield (inside, *self._common(scene.cube[:, columns], scene.valid[:, columns]))
                    block = []
                if window is not None:
                    block.append(window)

    def _common(self, cube: np.ndarray, valid: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if self.to_common.alignment is None and self.to_common.scale == 1.0:
            return cube, valid
        return self.to_common.cube(cube).transpose(1, 2, 0), valid


BLOCK_BYTES = 64 * 2**20  # the most one block of ``SceneEntry.read_each`` holds (float32 samples)


def _span(first: Window, last: Window) -> Window:
    """The window from ``first``'s left edge to ``last``'s right edge (one row of windows)."""
    return Window(first.row, first.col, first.height, last.col + last.width - first.col)


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
        return {"image": torch.from_numpy(self.preprocessing.cube(cube, valid)), "valid": torch.from_numpy(valid), "index": index}

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
        streamed: bool = False,
        shuffle_buffer: int = 256,
        max_train_scenes: int | None = None,
    ):
        super().__init__()
        self.tile_size, self.batch_size, self.num_workers, self.seed = tile_size, batch_size, num_workers, seed
        self.train_tiles_per_epoch = train_tiles_per_epoch
        self.max_nodata, self.target_sensor = max_nodata, target_sensor
        if streamed and synthetic is not None:
            raise InputError("streamed: true reads scene files; the synthetic scene is made in memory (drop one of them)")
        if streamed and stats is None:
            raise InputError("streamed: true needs stats: a file written by `rsdistill stats` over the training scenes (a streamed corpus is never read whole)")
        specs = _subset_specs(images, validation, test, tile_lists, synthetic, root)
        files = {subset: _scene_files(found, root, read_options or {}) for subset, found in specs.items()}
        if max_train_scenes is not None:
            files["images"] = _budget(files["images"], max_train_scenes, seed)
        open_file = functools.partial(_open_file, target=target_sensor, method=alignment)
        # every scene is opened once here for its header; a streamed training corpus keeps none
        # open, and of its files only the paths and regions are kept
        entries = {subset: [] for subset in specs}
        corpus, reference, bad, self.scene_names = [], None, None, []
        for subset, found in files.items():
            for file in found:
                entry = open_file(file)
                if reference is None:
                    reference, bad = entry, np.zeros(entry.bands, bool)
                elif entry.bands != reference.bands:
                    raise InputError(f"scenes have different band counts ({reference.name}: {reference.bands}, {entry.name}: {entry.bands}); "
                                     "set target_sensor to align them")
                bad |= _bad_bands(entry, target_sensor)
                if streamed and subset == "images":
                    corpus.append(replace(file, region=entry.region))
                    entry.source.release()  # the header is all a streamed corpus needs now
                else:
                    entries[subset].append(entry)
                    self.scene_names.append(entry.name)
        if streamed:  # the corpus by its patterns, not thousands of paths in every card and checkpoint
            self.scene_names[:0] = [f"{spec} ({len(corpus)} files in all)" if isinstance(spec, str) else str(spec) for spec in specs["images"]]
        self.keep_bands = ~bad
        wavelengths = get_sensor(target_sensor).centers if target_sensor else reference.source.meta.wavelengths
        moments = _TrainingPixels(int(self.keep_bands.sum()))
        sets = {subset: SceneTiles(found, self._tiles(found, stride if subset == "images" else tile_size, moments if subset == "images" else None))
                for subset, found in entries.items()}
        if streamed:
            sets["images"] = StreamedTiles(corpus, open_file, tile_size, stride, max_nodata, batch_size, train_tiles_per_epoch,
                                           shuffle_buffer, seed, num_workers)
        elif not len(sets["images"]):
            raise InputError(f"no training tile of {tile_size}×{tile_size} px with at most {max_nodata:.0%} nodata")
        if stats is not None:
            loaded = BandStatistics.load(stats, bands=len(self.keep_bands))
            mean, std = np.array(loaded.mean)[self.keep_bands], np.array(loaded.std)[self.keep_bands]
        else:
            mean, std = moments.mean, moments.std
        self.data_range = loaded.value_range(self.keep_bands, stats) if streamed else moments.high - moments.low
        self.preprocessing = Preprocessing.create(
            len(bad), mean, std, kept=np.flatnonzero(self.keep_bands),
            wavelengths=None if wavelengths is None else np.asarray(wavelengths)[self.keep_bands], sensor=target_sensor,
        )
        for tiles in sets.values():
            tiles.preprocessing = self.preprocessing
        self.train_set, self.val_set, self.test_set = sets["images"], sets["validation"], sets["test"]

    def train_dataloader(self):
        if not isinstance(self.train_set, StreamedTiles):
            return super().train_dataloader()
        return StreamLoader(self.train_set, self._stream_position, batch_size=self.batch_size, num_workers=self.num_workers,
                            generator=torch.Generator().manual_seed(self.seed))

    def _stream_position(self) -> tuple[int, int, int]:
        """(epoch, rank, ranks) of the trainer this data serves (one process at epoch 0 without one).
        The epoch is the one Lightning gives samplers' ``set_epoch``: after a resume from an
        end-of-epoch checkpoint it is already the next epoch, while ``current_epoch`` is not yet."""
        trainer = self.trainer
        if trainer is None:
            return 0, 0, 1
        return trainer.fit_loop.epoch_progress.current.processed, trainer.global_rank, trainer.world_size

    @property
    def info(self) -> dict:
        """What a model needs to know about this data (saved in its checkpoint and card)."""
        return TileDataInfo(self.preprocessing.to_dict(), self.tile_size, self.data_range, self.target_sensor, self.scene_names).to_dict()

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
            for window, cube, valid in entry.read_each(full_windows(region, self.tile_size, stride)):
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
            specs[OPTION_OF_SUBSET[subset]] += [str(image) for image, _ in read_tile_list(resolve(csv, root))]
    if not specs["images"]:
        raise InputError("give images, tile_lists (with a train list) or synthetic")
    return specs


def _budget(files: list, count: int, seed: int) -> list:
    """The first ``count`` training scenes of an order fixed by ``seed`` (nested over ``count``)."""
    if not isinstance(count, int) or not 1 <= count <= len(files):
        raise InputError(f"max_train_scenes must be a whole number from 1 to the {len(files)} training scenes, got {count!r}")
    order = np.random.default_rng(seed).permutation(len(files))
    return [files[i] for i in sorted(order[:count])]


def _scene_files(specs: list, root, read_options: dict) -> list:
    """The files of one subset's entries (module docstring), not opened; a Scene already in memory
    (the synthetic one) is passed through."""
    files = []
    for spec in specs:
        if not isinstance(spec, (str, dict)):
            files.append(spec)
            continue
        options = {**read_options, **(spec if isinstance(spec, dict) else {"path": spec})}
        if "path" not in options:
            raise InputError(f"scene entry {spec!r} has no 'path'")
        pattern, scale = options.pop("path"), float(options.pop("scale", 1.0))
        window = options.pop("window", None)
        files += [CorpusFile(str(path), options, scale, parse_window(window, path)) for path in expand(str(pattern), root)]
    return files


def _open_file(file, target: str | None, method: str) -> SceneEntry:
    """A ``CorpusFile`` (or an in-memory Scene) opened as a ``SceneEntry``."""
    if not isinstance(file, CorpusFile):
        return _entry(_in_memory(file), None, 1.0, target, method)
    return _entry(open_scene(file.path, **file.options), file.region, file.scale, target, method)


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
