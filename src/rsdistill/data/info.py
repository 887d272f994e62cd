"""What a model must know of its data: one dataclass per data module's ``info``.

A task keeps it as a hyper-parameter in plain data (``to_dict``: lists, numbers, strings, so a
checkpoint loads with ``weights_only=True``) and reads it back typed (``from_dict``, which names a
missing key in one line). ``preprocessing`` is the ``rsdistill.preprocessing.Preprocessing``
record of the data's raw bands.
"""

from __future__ import annotations

from dataclasses import MISSING, asdict, dataclass, fields

from rsdistill.errors import InputError
from rsdistill.io.masks import Legend


@dataclass(frozen=True)
class DataInfo:
    preprocessing: dict

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, doc, where: str = "data_info"):
        """From a checkpoint's plain record; keys a newer or older record adds are ignored."""
        if isinstance(doc, cls):
            return doc
        if not isinstance(doc, dict):
            raise InputError(f"{where}: expected the data module's info (a mapping), got {type(doc).__name__}")
        required = [f.name for f in fields(cls) if f.default is MISSING and f.default_factory is MISSING]
        missing = [name for name in required if name not in doc]
        if missing:
            raise InputError(f"{where}: a {cls.__name__} needs {', '.join(required)}; missing {', '.join(missing)}")
        return cls(**{f.name: doc[f.name] for f in fields(cls) if f.name in doc})


@dataclass(frozen=True)
class PixelDataInfo(DataInfo):
    """``PixelClassificationData.info``: class ids (as in the label maps) and the patch size."""

    class_ids: list
    patch_size: int


@dataclass(frozen=True)
class TileDataInfo(DataInfo):
    """``TileData.info``: tile size, value range (for PSNR/SSIM), target sensor and scene names."""

    tile_size: int
    data_range: float = 1.0
    sensor: str | None = None
    scenes: list | None = None


@dataclass(frozen=True)
class SegmentationDataInfo(DataInfo):
    """``SegmentationData.info``: class names, tile size, the legend of the masks and the pixels of
    each class in the training masks (None in checkpoints written before it was recorded)."""

    class_names: list
    tile_size: int
    legend: dict | None = None
    class_pixels: list | None = None

    def mask_legend(self) -> Legend:
        """The legend the masks were read with; without one, class k is mask value k + 1."""
        if self.legend is not None:
            return Legend.parse(**self.legend)
        return Legend.parse([{"name": name, "id": k + 1} for k, name in enumerate(self.class_names)])
