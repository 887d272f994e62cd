"""Data modules that cut scenes into samples (``TileData``, ``PixelClassificationData``), splits, statistics, the synthetic scene."""

from rsdistill.data.classification import PixelClassificationData
from rsdistill.data.tiles import TileData

__all__ = ["PixelClassificationData", "TileData"]
