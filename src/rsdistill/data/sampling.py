"""Sample orders that depend only on (seed, epoch), so a resumed run sees the same batches."""

from __future__ import annotations

import torch
from torch.utils.data import Sampler


class EpochShuffle(Sampler):
    """A random order that depends only on (seed, epoch): a run resumed at epoch k sees the same
    batches as an uninterrupted one (Lightning calls ``set_epoch`` before every epoch). With
    ``count``, each epoch takes the first ``count`` items of its order: a fresh random subset per
    epoch, which bounds the cost of an epoch over many (overlapping) tiles; a ``count`` above
    ``size`` continues with further permutations (every item seen ⌊count / size⌋ or ⌈count / size⌉
    times), which holds the steps per epoch fixed when the training set shrinks (a label budget)."""

    def __init__(self, size: int, seed: int, count: int | None = None):
        self.size, self.seed, self.epoch = size, seed, 0
        self.count = size if count is None else count

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.count

    def __iter__(self):
        generator = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        orders = [torch.randperm(self.size, generator=generator) for _ in range(-(-self.count // self.size))]
        return iter(torch.cat(orders)[:self.count].tolist())
