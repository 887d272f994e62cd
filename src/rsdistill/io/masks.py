"""Segmentation masks: colour masks (RGB or palette PNG/GeoTIFF) or id masks, read by window and
mapped to class indices 0..K-1 through a ``Legend``; ignored pixels become ``IGNORE_INDEX``.

A legend lists the classes in order, each ``{name, colour: [r, g, b]}`` (colour masks) or
``{name, id}`` (id masks, e.g. EnMAP label tiles), and what to ignore (``ignore``: colours or ids,
e.g. Dubai's "unlabeled" grey and its undocumented black, DeepGlobe's "unknown", ISPRS boundaries,
LoveDA's no-data). A colour or id the legend does not name is mapped to ignore too, and counted,
so that the caller can say how many pixels it did not understand (``read_mask`` returns the count).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from rsdistill.errors import InputError
from rsdistill.io.geotiff import open_raster
from rsdistill.io.scene import Window

IGNORE_INDEX = 255


@dataclass(frozen=True)
class Legend:
    names: tuple[str, ...]
    codes: tuple[tuple[int, ...], ...]  # per class: (r, g, b) or (id,)
    ignore: tuple[tuple[int, ...], ...] = ()

    @classmethod
    def parse(cls, classes: list[dict], ignore: list | None = None, where: str = "legend") -> Legend:
        names, codes = [], []
        for entry in classes:
            if not isinstance(entry, dict) or "name" not in entry or ("colour" in entry) == ("id" in entry):
                raise InputError(f"{where}: each class is {{name, colour: [r, g, b]}} or {{name, id}}, got {entry!r}")
            names.append(str(entry["name"]))
            codes.append(tuple(int(v) for v in entry["colour"]) if "colour" in entry else (int(entry["id"]),))
        kinds = {len(c) for c in codes}
        if kinds - {1, 3} or len(kinds) != 1:
            raise InputError(f"{where}: classes must all have colours (3 values) or all ids, got {codes}")
        if len(set(codes)) != len(codes):
            raise InputError(f"{where}: two classes share a code: {codes}")
        if len(codes) >= IGNORE_INDEX:
            raise InputError(f"{where}: at most {IGNORE_INDEX - 1} classes")
        ignored = tuple(tuple(int(v) for v in (c if isinstance(c, (list, tuple)) else [c])) for c in (ignore or []))
        return cls(tuple(names), tuple(codes), ignored)

    @classmethod
    def numbered(cls, ids: list[int]) -> Legend:
        """The legend of label maps whose class N is the value N (a pixel classifier's)."""
        return cls.parse([{"name": f"class {c}", "id": c} for c in ids])

    @property
    def colours(self) -> bool:
        return len(self.codes[0]) == 3

    def to_dict(self) -> dict:
        key = "colour" if self.colours else "id"
        classes = [{"name": n, key: list(c) if self.colours else c[0]} for n, c in zip(self.names, self.codes)]
        return {"classes": classes, "ignore": [list(c) if self.colours else c[0] for c in self.ignore]}

    def classes_of(self, codes: np.ndarray) -> tuple[np.ndarray, int]:
        """(h, w, 3) colours or (h, w, 1) ids -> (h, w) uint8 class indices, and how many pixels had a
        code neither a class nor ignored (mapped to ``IGNORE_INDEX``)."""
        flat = codes.reshape(-1, codes.shape[-1]).astype(np.int64)
        keys = flat[:, 0] * 65536 + flat[:, 1] * 256 + flat[:, 2] if flat.shape[1] == 3 else flat[:, 0]
        encode = (lambda c: c[0] * 65536 + c[1] * 256 + c[2]) if self.colours else (lambda c: c[0])  # noqa: E731
        out = np.full(keys.shape, IGNORE_INDEX, np.uint8)
        known = np.zeros(keys.shape, bool)
        for index, code in enumerate(self.codes):
            hit = keys == encode(code)
            out[hit], known[hit] = index, True
        for code in self.ignore:
            known |= keys == encode(code)
        return out.reshape(codes.shape[:2]), int((~known).sum())


def read_mask(path, legend: Legend, window: Window | None = None) -> tuple[np.ndarray, int]:
    """Class indices (h, w) of a mask file (the whole of it, or ``window``) and the count of pixels
    of codes the legend does not know. Palette images are looked up in their colour table."""
    with open_raster(path) as ds:
        box = None if window is None else ((window.row, window.row + window.height), (window.col, window.col + window.width))
        data = ds.read(window=box)  # (bands, h, w)
        if legend.colours:
            if ds.count == 1:
                try:
                    table = ds.colormap(1)
                except ValueError:
                    raise InputError(f"{path}: a one-band mask without a colour table, but the legend names colours") from None
                lut = np.zeros((256, 3), np.uint8)
                for index, rgba in table.items():
                    lut[index] = rgba[:3]
                rgb = lut[data[0]]
            elif ds.count >= 3:
                rgb = np.moveaxis(data[:3], 0, -1)
            else:
                raise InputError(f"{path}: a colour mask has 1 (palette) or 3 bands, found {ds.count}")
            return legend.classes_of(rgb)
        if ds.count != 1:
            raise InputError(f"{path}: an id mask has one band, found {ds.count} (give the legend colours for a colour mask)")
        return legend.classes_of(data[0][..., None])
