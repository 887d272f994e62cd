"""rsdistill: label-free pretraining and knowledge distillation for multispectral and hyperspectral imagery.

The public API (see the README's "Python API" section):

- reading: ``read_scene`` -> ``Scene``, ``open_scene``, ``read_label_map``, ``write_geotiff``; ``band_statistics``;
- spectra: ``get_sensor``, ``band_alignment``; ``Preprocessing`` (raw bands -> model input);
- encoders: ``load_encoder`` / ``PretrainedEncoder`` (features from raw scenes), ``build_encoder``,
  ``save_encoder``;
- data and tasks (Lightning): ``TileData``, ``PixelClassificationData``, ``MAEPretrainer``,
  ``PixelClassifier``, ``load_classifier``, ``BaseTask``; ``classify_scene`` for whole-scene maps.

Imports are lazy, so ``import rsdistill`` stays light.
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

_EXPORTS = {
    "Scene": "rsdistill.io.scene", "open_scene": "rsdistill.io.readers", "read_label_map": "rsdistill.io.readers",
    "read_scene": "rsdistill.io.readers",
    "write_geotiff": "rsdistill.io.geotiff", "band_statistics": "rsdistill.data.statistics",
    "get_sensor": "rsdistill.spectral.sensors", "band_alignment": "rsdistill.spectral.alignment",
    "Preprocessing": "rsdistill.preprocessing",
    "load_encoder": "rsdistill.models.registry", "PretrainedEncoder": "rsdistill.models.registry",
    "build_encoder": "rsdistill.models.registry", "save_encoder": "rsdistill.models.registry",
    "TileData": "rsdistill.data.tiles", "PixelClassificationData": "rsdistill.data.classification",
    "BaseTask": "rsdistill.tasks.base", "MAEPretrainer": "rsdistill.tasks.pretrain",
    "PixelClassifier": "rsdistill.tasks.classification", "load_classifier": "rsdistill.tasks.loading",
    "classify_scene": "rsdistill.inference.mapping",
}
__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'rsdistill' has no attribute {name!r}")
