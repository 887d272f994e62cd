"""``TiledDataModule``: the loaders shared by data modules with train / val / test sets of tiles."""

from __future__ import annotations

import lightning as L
import torch
from torch.utils.data import DataLoader, Dataset

from rsdistill.data.sampling import EpochShuffle
from rsdistill.errors import InputError


class TiledDataModule(L.LightningDataModule):
    """Subclasses set ``train_set``, ``val_set``, ``test_set``, ``batch_size``, ``num_workers`` and ``seed``.

    Training order depends only on (seed, epoch) (``EpochShuffle``); an own generator keeps the
    DataLoader from drawing worker seeds from the global RNG, which drives masking, augmentation and
    dropout and is saved in checkpoints (exact resume). No validation set means no validation loop.
    ``train_tiles_per_epoch``: when set, each epoch trains on that many training tiles drawn anew
    (more than the set holds repeats it in fresh orders, which holds the optimiser steps fixed when
    the training set shrinks, e.g. a data budget).
    """

    train_set: Dataset
    val_set: Dataset
    test_set: Dataset
    train_tiles_per_epoch: int | None = None

    def _loader(self, tiles: Dataset, shuffle: bool) -> DataLoader:
        sampler = EpochShuffle(len(tiles), self.seed, self.train_tiles_per_epoch) if shuffle else None
        generator = torch.Generator().manual_seed(self.seed)
        return DataLoader(tiles, batch_size=self.batch_size, sampler=sampler, generator=generator, num_workers=self.num_workers)

    def setup(self, stage: str | None = None) -> None:
        """No validation set: the Trainer's validation loop is switched off before Lightning asks for
        a loader (an empty one only draws "Total length of `list` across ranks is zero")."""
        if stage == "fit" and self.trainer is not None and not len(self.val_set):
            self.trainer.limit_val_batches = 0

    def train_dataloader(self):
        return self._loader(self.train_set, shuffle=True)

    def val_dataloader(self):
        return self._loader(self.val_set, shuffle=False) if len(self.val_set) else []

    def test_dataloader(self):
        if not len(self.test_set):
            raise InputError(f"{type(self).__name__}: no test set; give test scenes or images to evaluate on held-out data")
        return self._loader(self.test_set, shuffle=False)

    def predict_dataloader(self):
        return self.test_dataloader()
