"""``SceneSource``: an opened file that reads the whole scene or any window of it.

Formats differ only in how they read raw pixels (``read_raw``) and what metadata they find; the
nodata/bad-band policy is ``Scene.from_raw``. Windowed reads let a scene larger than memory be
processed tile by tile (``tiles``).
"""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np

from rsdistill.errors import InputError
from rsdistill.io.limits import check_read_size
from rsdistill.io.scene import Scene, SceneMetadata, Window, check_empty_bands, tile_windows


class SceneSource:
    """Base class: subclasses set ``meta`` and ``shape`` (H, W, B) and implement ``read_raw``."""

    meta: SceneMetadata
    shape: tuple[int, int, int]
    empty_bands: str = "error"

    @property
    def height(self) -> int:
        return self.shape[0]

    @property
    def width(self) -> int:
        return self.shape[1]

    @property
    def bands(self) -> int:
        return self.shape[2]

    def read_raw(self, window: Window) -> np.ndarray:
        """(h, w, B) pixel values of ``window`` as stored in the file."""
        raise NotImplementedError

    def release(self) -> None:
        """Close what the source keeps open for further reads (it reopens on the next read)."""

    def read(self, window: Window | None = None) -> Scene:
        """The whole scene, or the part inside ``window`` (georeferencing shifted to the window);
        a read larger than ``io.limits.max_read_bytes()`` is refused before anything is allocated."""
        if window is None:
            check_read_size(self.meta.path, self.shape)
            return Scene.from_raw(self.read_raw(Window(0, 0, self.height, self.width)), self.meta, None, self.empty_bands)
        if window.row < 0 or window.col < 0 or window.row + window.height > self.height or window.col + window.width > self.width:
            raise InputError(f"{self.meta.path}: window {window} lies outside the {self.height}×{self.width} scene")
        check_read_size(self.meta.path, (window.height, window.width, self.bands), what="the window")
        return Scene.from_raw(self.read_raw(window), self.meta, window, self.empty_bands)

    def with_scene_bad_bands(self, size: int = 512) -> SceneSource:
        """Make window reads flag the bands a whole-scene read would: those with no data anywhere in
        the scene (one streaming pass over ``size``² windows; the ``empty_bands`` policy applies, so
        with "error" such a band is an error, as when reading the scene whole). Returns ``self``."""
        has_data = np.zeros(self.bands, bool)
        for _, scene in self.tiles(size):
            has_data |= scene.band_has_data
        bad = np.zeros(self.bands, bool) if self.meta.bad_bands is None else np.asarray(self.meta.bad_bands, bool)
        self.meta = replace(self.meta, bad_bands=bad | check_empty_bands(has_data, bad, self.meta, self.empty_bands))
        return self

    def preview(self, longest: int = 1024, size: int = 512) -> tuple[Scene, int]:
        """The scene at every ``step``-th pixel, so that its longer side is at most ``longest`` pixels,
        read window by window (``size``² at a time: a scene larger than memory previews), and ``step``.
        The preview is not georeferenced (its pixels are ``step`` times larger)."""
        step = preview_step(self.height, self.width, longest)
        if step == 1:
            return self.read(), 1
        raw = None
        size = max(size // step, 1) * step  # windows that start on the preview grid
        for window in tile_windows(self.height, self.width, size):
            part = self.read_raw(window)[::step, ::step]
            if raw is None:
                raw = np.zeros((-(-self.height // step), -(-self.width // step), self.bands), part.dtype)
            raw[window.row // step:window.row // step + part.shape[0], window.col // step:window.col // step + part.shape[1]] = part
        scene = Scene.from_raw(raw, self.meta, None, self.empty_bands)
        return replace(scene, transform=None, notes=[*scene.notes, f"preview: 1 pixel in {step} along each side of {self.height}×{self.width}"]), step

    def tiles(self, size: int, stride: int | None = None):
        """Yield ``(window, scene)`` for tiles of ``size``×``size`` pixels, reading one at a time."""
        for window in tile_windows(self.height, self.width, size, stride):
            yield window, self.read(window)


class ArraySource(SceneSource):
    """A cube already in memory (or memory-mapped): .mat and .npy files."""

    def __init__(self, array: np.ndarray, meta: SceneMetadata):
        self.array, self.meta, self.shape = array, meta, tuple(array.shape)

    def read_raw(self, window: Window) -> np.ndarray:
        return np.asarray(self.array[window.slices])


def preview_step(height: int, width: int, longest: int = 1024) -> int:
    """Take every ``step``-th pixel so that a figure's longer side is at most ``longest`` pixels."""
    return max(1, math.ceil(max(height, width) / longest))
