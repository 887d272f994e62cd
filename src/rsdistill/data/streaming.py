"""``StreamedTiles``: training tiles streamed from a corpus of scene files too many to open at once.

``TileData(streamed=True)`` reads its training scenes this way (validation and test stay
``SceneTiles``). Only each file's header is read when the data is built (size, bands, bad bands);
pixels are read tile by tile, in the worker that uses them.

- Order: depends only on (seed, epoch). A pass over the corpus takes the files in a random order
  and each file's full tiles in a random order; that sequence of N candidates is cut into S equal
  contiguous slices, S = ranks × DataLoader workers, shard = rank · workers + worker. Shards are
  therefore disjoint, equal to within one tile, and together cover the pass; a shard reads its
  slice file after file, opening each of its files once (a file that straddles two slices is
  opened by both).
- Quota: every rank trains the same number of whole batches (DDP needs it):
  ``tiles_per_epoch // (ranks × batch_size)`` batches per rank (default ``tiles_per_epoch``: one
  pass's candidates), split over its workers by whole batches. Tiles with more than
  ``max_nodata`` nodata are skipped; a shard that runs out of candidates before its quota goes on
  with the next pass (a new order from (seed, epoch, pass)). When the quota is one pass, nothing
  is skipped and the counts divide, every tile is seen exactly once per epoch across ranks.
- Shuffle buffer (WebDataset's scheme): a shard holds up to ``shuffle_buffer`` read tiles and
  emits a random one as each new tile arrives, and drains the buffer at the end of a pass and when
  its quota has been read (no tile is read that is not used). Memory is bounded by workers ×
  buffer tiles, not by the corpus.

Items: {"image": (C, t, t) float32 normalised, "valid": (t, t) bool, "tile": (3,) int64 file index,
row, col} — the tile's key, so a batch says where it came from.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from rsdistill.errors import InputError
from rsdistill.io.scene import Window, tile_windows
from rsdistill.preprocessing import Preprocessing


@dataclass(frozen=True)
class CorpusFile:
    """One scene file of a corpus, not opened: its path, reader options, ``scale`` and ``region``."""

    path: str
    options: tuple[tuple[str, object], ...]
    scale: float
    region: Window


def full_windows(region: Window, size: int, stride: int | None) -> list[Window]:
    """The ``size``² windows (scene coordinates) of ``region`` that lie wholly inside it."""
    return [Window(region.row + w.row, region.col + w.col, size, size) for w in tile_windows(region.height, region.width, size, stride, edges="drop")]


class StreamedTiles(IterableDataset):
    """Training tiles of ``files`` in the streamed order of the module docstring.

    ``open_file`` turns a ``CorpusFile`` into a ``SceneEntry`` (picklable: it travels to workers);
    ``preprocessing`` is set by the data module once the statistics are known.
    """

    def __init__(self, files: list[CorpusFile], open_file: Callable, tile_size: int, stride: int | None, max_nodata: float,
                 batch_size: int, tiles_per_epoch: int | None, shuffle_buffer: int, seed: int, workers: int):
        self.files, self.open_file, self.tile_size, self.stride = files, open_file, tile_size, stride
        self.max_nodata, self.batch_size, self.shuffle_buffer, self.seed = max_nodata, batch_size, shuffle_buffer, seed
        self.workers = max(workers, 1)
        self.counts = np.array([len(full_windows(f.region, tile_size, stride)) for f in files], dtype=np.int64)  # tiles per file
        self.candidates = int(self.counts.sum())
        if not self.candidates:
            raise InputError(f"no {tile_size}×{tile_size} tile fits in any of the {len(files)} training scenes")
        self.tiles_per_epoch = tiles_per_epoch or self.candidates
        self.preprocessing: Preprocessing | None = None
        self.epoch, self.rank, self.ranks = 0, 0, 1

    def start(self, epoch: int, rank: int, ranks: int) -> None:
        """Where the next pass runs: its epoch and this process's rank among ``ranks``."""
        if self.candidates < ranks * self.workers:
            raise InputError(f"the corpus has {self.candidates} candidate tiles, fewer than the {ranks * self.workers} shards (ranks × workers)")
        self.epoch, self.rank, self.ranks = epoch, rank, ranks

    def batches_per_rank(self) -> int:
        batches = self.tiles_per_epoch // (self.ranks * self.batch_size)
        if batches < 1:
            raise InputError(f"tiles_per_epoch {self.tiles_per_epoch} is less than one batch of {self.batch_size} per rank ({self.ranks} ranks)")
        return batches

    def quota(self, worker: int) -> int:
        """Tiles worker ``worker`` of this rank yields per epoch: whole batches, spread over the workers."""
        batches = self.batches_per_rank()
        return (batches // self.workers + (worker < batches % self.workers)) * self.batch_size

    def __len__(self) -> int:
        return self.batches_per_rank() * self.batch_size

    def shard_keys(self, shard: int, shards: int) -> Iterator[tuple[int, Window] | None]:
        """(file index, window) candidates of ``shard`` in reading order, pass after pass without
        end, None after each pass. A pass orders the files at random (from (seed, epoch, pass)) and
        each file's tiles at random (from the file's index too); ``shard`` takes the slice
        [shard·N/S, (shard + 1)·N/S) of that sequence of N candidates, so it opens each of its files
        once and every shard draws the same sequence."""
        done = 0
        while True:
            order = np.random.default_rng([self.seed, self.epoch, done]).permutation(len(self.files))
            low, high = shard * self.candidates // shards, (shard + 1) * self.candidates // shards
            offset = 0
            for file in order:
                count = int(self.counts[file])
                if offset < high and offset + count > low:
                    windows = full_windows(self.files[file].region, self.tile_size, self.stride)
                    shuffled = np.random.default_rng([self.seed, self.epoch, done, int(file)]).permutation(count)
                    for k in shuffled[max(low - offset, 0):high - offset]:
                        yield int(file), windows[k]
                offset += count
                if offset >= high:
                    break
            done += 1
            yield None  # end of a pass: the buffer drains

    def __iter__(self) -> Iterator[dict]:
        info = get_worker_info()
        worker = 0 if info is None else info.id
        shard, shards = self.rank * self.workers + worker, self.ranks * self.workers
        quota = self.quota(worker)
        if not quota:
            return
        rng = np.random.default_rng([self.seed, self.epoch, shard, 1])
        buffer, taken, kept, entry, opened = [], 0, 0, None, None
        for key in self.shard_keys(shard, shards):
            if key is None:  # end of a pass: drain the buffer in random order
                if not kept:
                    raise InputError(f"no tile of shard {shard} of {shards} has at most {self.max_nodata:.0%} nodata")
                kept = 0
                while buffer:
                    yield buffer.pop(int(rng.integers(len(buffer))))
                continue
            file, window = key
            if file != opened:  # a shard reads its files one after the other: close the one it is done with
                if entry is not None:
                    entry.source.release()
                entry, opened = self.open_file(self.files[file]), file
            cube, valid = entry.read(window)
            if 1 - valid.mean() > self.max_nodata:
                continue
            kept, taken = kept + 1, taken + 1
            item = {"image": torch.from_numpy(self.preprocessing.cube(cube, valid)), "valid": torch.from_numpy(valid),
                    "tile": torch.tensor([file, window.row, window.col])}
            if len(buffer) < self.shuffle_buffer:
                buffer.append(item)
            else:
                k = int(rng.integers(len(buffer)))
                yield buffer[k]
                buffer[k] = item
            if taken == quota:  # the quota is read: no tile is read that is not used
                entry.source.release()
                while buffer:
                    yield buffer.pop(int(rng.integers(len(buffer))))
                return


class StreamLoader(DataLoader):
    """A DataLoader over ``StreamedTiles`` that tells it the epoch and rank before its length is
    taken and when the first batch of a pass is asked for (not when the iterator is made: Lightning
    makes one before it restores a resumed run's epoch, and calls ``set_epoch`` on samplers only,
    which an iterable dataset has not). ``where()`` returns (epoch, rank, ranks)."""

    def __init__(self, dataset: StreamedTiles, where: Callable[[], tuple[int, int, int]], **options):
        super().__init__(dataset, **options)
        self.where = where

    def __len__(self) -> int:
        self.dataset.start(*self.where())
        return super().__len__()

    def __iter__(self):
        def batches():
            self.dataset.start(*self.where())
            yield from super(StreamLoader, self).__iter__()

        return batches()
