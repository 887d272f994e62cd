"""Data modules that cut scenes into samples (``TileData``, ``PixelClassificationData``), splits, statistics, the synthetic scene.

The data modules are imported lazily, so the light parts (statistics, splits) stay light.
"""

import importlib

_EXPORTS = {"PixelClassificationData": "rsdistill.data.classification", "TileData": "rsdistill.data.tiles"}
__all__ = list(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'rsdistill.data' has no attribute {name!r}")
