"""Whole-scene class maps.

A pixel classifier maps a scene **block by block**: each block is read with a halo of
``patch_size // 2`` pixels (reflect-padded where the block touches the scene's border, as the
whole scene is padded in training), so every pixel is classified from exactly the patch a
whole-scene run gives it; the per-pixel stages (preprocessing and, for BLM, the spectral 1×1
embedding) run once per pixel of the block, then every valid pixel's patch of them is classified
(``PatchClassifier``: PyTorch, or an ONNX export through onnxruntime on raw patches). A scene file
is mapped straight into a tiled GeoTIFF (``map_scene_file``), so memory depends on the block, not on
the scene. A ``SemanticSegmenter`` segments in overlapping, blended sliding windows read one at a
time, emitted in full-width strips (``segment_strips``): from a file into a GeoTIFF
(``segment_scene_file``), or an in-memory scene (``segment_scene``). Maps are uint8 class ids, 0 = nodata; ``write_class_png`` draws scene |
reference | prediction with a legend of class names.
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import rasterio  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from matplotlib.patches import Patch  # noqa: E402
from tqdm import tqdm  # noqa: E402

from rsdistill.data.patches import all_pixel_patches, channels_last_patches, check_patch_size  # noqa: E402
from rsdistill.errors import InputError  # noqa: E402
from rsdistill.figures import stretch, true_colour_bands  # noqa: E402
from rsdistill.io.geotiff import write_geotiff_windows  # noqa: E402
from rsdistill.io.scene import Scene, Window, tile_windows  # noqa: E402
from rsdistill.io.source import preview_step  # noqa: E402


class PatchClassifier:
    """Class ids of the valid pixels of a padded block, each from its patch.

    ``model``: a ``PixelClassifier`` (PyTorch; its net's ``pixelwise`` stage, when it has one, runs
    once on the whole block) or a ``deploy.runtime.OnnxModel`` of one (raw patches in).
    """

    def __init__(self, model, batch_size: int = 512):
        from rsdistill.deploy.runtime import OnnxModel

        self.model, self.batch_size = model, batch_size
        if isinstance(model, OnnxModel):
            if model.card["task"] != "pixel_classification":
                raise InputError(f"{model.path}: an exported {model.card['task']} model; block maps need a pixel classifier")
            self.patch_size, self.class_ids, self.bands = model.input_shape[1], model.card["class_ids"], model.input_shape[0]
        else:
            self.patch_size, self.class_ids, self.bands = model.data_info.patch_size, model.class_ids, model.preprocessing.bands
            model.eval()

    @property
    def radius(self) -> int:
        return self.patch_size // 2

    def __call__(self, padded: torch.Tensor, valid: np.ndarray) -> np.ndarray:
        """padded: (B, h + 2r, w + 2r) raw values; valid: (h, w) -> (h, w) uint8 class ids, 0 where invalid."""
        rows, cols = (torch.from_numpy(a) for a in np.nonzero(valid))
        result = np.zeros(valid.shape, np.uint8)
        if rows.numel():
            indices = self._indices(padded, rows, cols)
            result[rows.numpy(), cols.numpy()] = np.asarray(self.class_ids, np.uint8)[indices.numpy()]
        return result

    def _indices(self, padded: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
        from rsdistill.deploy.runtime import OnnxModel

        if isinstance(self.model, OnnxModel):
            batches = [torch.from_numpy(self.model(all_pixel_patches(padded, r, c, self.patch_size).numpy())).argmax(1)
                       for r, c in zip(rows.split(self.batch_size), cols.split(self.batch_size))]
            return torch.cat(batches)
        net = self.model.net
        with torch.no_grad():
            raw, preprocessing = padded[None], self.model.input_preprocessing
            if hasattr(net, "pixelwise"):  # as the classifier's forward: the preprocessing folded in
                stage, head = net.pixelwise(raw, preprocessing), net.from_pixelwise
            else:
                stage, head = preprocessing(raw), net
            pixels = stage[0].permute(1, 2, 0).contiguous()  # (H, W, C): patches gathered channels-last
            return torch.cat([head(channels_last_patches(pixels, r, c, self.patch_size)).argmax(1)
                              for r, c in zip(rows.split(self.batch_size), cols.split(self.batch_size))])


def padded_block(read, window: Window, radius: int, height: int, width: int) -> tuple[torch.Tensor, np.ndarray]:
    """(B, h + 2r, w + 2r) raw values around ``window`` of a ``height``×``width`` scene, and the
    window's (h, w) validity. ``read(Window) -> Scene``; the halo comes from the scene where it
    exists and is reflected at the scene's border (as ``data.patches.padded_cube`` pads a scene)."""
    top, left = max(window.row - radius, 0), max(window.col - radius, 0)
    bottom, right = min(window.row + window.height + radius, height), min(window.col + window.width + radius, width)
    scene = read(Window(top, left, bottom - top, right - left))
    cube = torch.from_numpy(np.ascontiguousarray(scene.cube.transpose(2, 0, 1)))[None]
    pads = (radius - (window.col - left), radius - (right - window.col - window.width),
            radius - (window.row - top), radius - (bottom - window.row - window.height))
    cube = F.pad(cube, pads, mode="reflect") if any(pads) else cube
    inner = Window(window.row - top, window.col - left, window.height, window.width)
    return cube[0], scene.valid[inner.slices]


def class_map_windows(classifier: PatchClassifier, read, height: int, width: int, block: int = 256):
    """Yield ``(window, (h, w) uint8 class ids, padded block)`` for ``block``² windows covering the scene."""
    for window in tile_windows(height, width, block):
        padded, valid = padded_block(read, window, classifier.radius, height, width)
        yield window, classifier(padded, valid), padded


def classify_scene(model, scene: Scene, batch_size: int = 512, block: int = 256) -> np.ndarray:
    """(H, W) uint8 map of class ids (as in the training labels) of an in-memory scene; 0 where it has no data."""
    classifier = PatchClassifier(model, batch_size)
    check_patch_size(classifier.patch_size, [scene])
    result = np.zeros(scene.shape[:2], np.uint8)
    for window, classes, _ in class_map_windows(classifier, scene.crop, *scene.shape[:2], block):
        result[window.slices] = classes
    return result


GDAL_CACHE_MB = 64


def map_scene_file(classifier: PatchClassifier, source, out, block: int = 256, preview: int = 1024, progress: bool = True) -> dict:
    """Classify a scene file (a ``SceneSource``) block by block into the GeoTIFF ``out`` (tiled,
    compressed, the scene's CRS and transform, colour table, 0 = nodata); memory is bounded by
    the block. Returns pixel counts per class id, a preview (class map and true-colour RGB, every
    ``step``-th pixel so the longer side is at most ``preview``) and the time taken."""
    height, width = source.height, source.width
    if source.bands != classifier.bands:
        raise InputError(f"{source.meta.path}: {source.bands} bands, but the model takes {classifier.bands}")
    if classifier.patch_size > min(height, width):
        raise InputError(f"patch size {classifier.patch_size} is larger than scene {source.meta.path} ({height}×{width})")
    # every block is read once: GDAL's block cache (default 5 % of RAM) would only grow with the scene
    with rasterio.Env(GDAL_CACHEMAX=GDAL_CACHE_MB):
        return _map_scene_file(classifier, source, out, block, preview, progress)


def _map_scene_file(classifier: PatchClassifier, source, out, block: int, preview: int, progress: bool) -> dict:
    height, width = source.height, source.width
    source.with_scene_bad_bands(block)
    step = preview_step(height, width, preview)
    classes_preview = np.zeros((math.ceil(height / step), math.ceil(width / step)), np.uint8)
    rgb_preview = np.zeros((*classes_preview.shape, 3), np.float32)
    rgb_bands = true_colour_bands(source.meta.wavelengths, source.bands)
    counts = np.zeros(256, np.int64)
    start = time.perf_counter()

    def windows():
        r = classifier.radius
        with tqdm(total=height * width, unit="px", unit_scale=True, disable=not progress, desc="map") as bar:
            for window, classes, padded in class_map_windows(classifier, source.read, height, width, block):
                counts[:] += np.bincount(classes.ravel(), minlength=256)
                rows = np.arange(-(-window.row // step) * step, window.row + window.height, step)
                cols = np.arange(-(-window.col // step) * step, window.col + window.width, step)
                at = np.ix_(rows // step, cols // step)
                classes_preview[at] = classes[np.ix_(rows - window.row, cols - window.col)]
                interior = padded[rgb_bands][:, r + rows[:, None] - window.row, r + cols[None, :] - window.col]
                rgb_preview[at] = interior.permute(1, 2, 0).numpy()
                bar.update(window.height * window.width)
                yield window, classes

    colours = class_colours(classifier.class_ids)
    write_geotiff_windows(out, height, width, windows(), "uint8", source.meta.crs, source.meta.transform, 0, colours, block=256)
    seconds = time.perf_counter() - start
    return {"counts": {int(i): int(n) for i, n in enumerate(counts) if i and n}, "classes": classes_preview, "rgb": rgb_preview,
            "step": step, "seconds": seconds, "pixels_per_s": height * width / max(seconds, 1e-9)}


BLENDS = ("uniform", "cosine")


def _window_weight(size: int, blend: str) -> torch.Tensor:
    """(size, size) weight of a window's scores: ``uniform``, or ``cosine`` (a 2-D Hann window,
    floored at 1 %, so the centre of a window, where it sees the most context, counts most)."""
    if blend == "uniform":
        return torch.ones(size, size)
    hann = torch.hann_window(size, periodic=False).clamp_min(0.01)
    return hann[:, None] * hann[None, :]


def segment_strips(model, read, height: int, width: int, tile: int = 256, overlap: int = 64, blend: str = "cosine"):
    """Yield ``(window, (h, width) uint8 class index + 1 (0 = nodata), (h, width, 3) true-colour raw
    values)`` for full-width strips of a ``SemanticSegmenter``'s map, top to bottom.

    ``tile`` windows overlapping by ``overlap`` pixels (the last ones aligned to the edges; a scene
    smaller than a tile is zero-padded after preprocessing) are read one at a time through
    ``read(window) -> Scene``; their class probabilities are averaged with ``blend`` weights and
    the most probable class taken. Rows are emitted as soon as no later window covers them, so
    memory holds one row of windows' scores, never the scene; the sums are those of a whole-scene
    pass in the same order, so the map is the same.
    """
    if blend not in BLENDS:
        raise InputError(f"unknown blend {blend!r}; choose one of {', '.join(BLENDS)}")
    stride = model.net.stride
    if tile % stride or not 0 <= overlap < tile:
        raise InputError(f"tile {tile} must be a multiple of the model's stride {stride} (a ViT's patch size), and overlap in 0..{tile - 1}")
    padded_h, padded_w = max(height, tile), max(width, tile)
    windows = tile_windows(padded_h, padded_w, tile, tile - overlap, edges="shift")
    starts = sorted({w.row for w in windows})
    weight, classes = _window_weight(tile, blend), len(model.class_names)
    rgb_bands = None
    top = 0  # the first row the accumulators hold
    scores, total = torch.zeros(classes, 0, padded_w), torch.zeros(0, padded_w)
    valid, rgb = np.zeros((0, padded_w), bool), np.zeros((0, padded_w, 3), np.float32)
    for index, row in enumerate(starts):
        grow = row + tile - (top + total.shape[0])
        if grow > 0:
            scores = torch.cat([scores, torch.zeros(classes, grow, padded_w)], 1)
            total = torch.cat([total, torch.zeros(grow, padded_w)])
            valid, rgb = np.concatenate([valid, np.zeros((grow, padded_w), bool)]), np.concatenate([rgb, np.zeros((grow, padded_w, 3), np.float32)])
        for window in (w for w in windows if w.row == row):
            inside = Window(window.row, window.col, min(tile, height - window.row), min(tile, width - window.col))
            scene = read(inside)
            rgb_bands = true_colour_bands(scene.wavelengths, scene.shape[2]) if rgb_bands is None else rgb_bands
            image = torch.from_numpy(model.preprocessing.cube(scene.cube, scene.valid))[None]
            image = F.pad(image, (0, tile - inside.width, 0, tile - inside.height))
            at = (slice(row - top, row - top + tile), slice(window.col, window.col + tile))
            with torch.no_grad():
                scores[(slice(None), *at)] += model(image)[0].softmax(0) * weight
            total[at] += weight
            rows, cols = slice(row - top, row - top + inside.height), slice(window.col, window.col + inside.width)
            valid[rows, cols], rgb[rows, cols] = scene.valid, scene.cube[..., rgb_bands]
        done = starts[index + 1] if index + 1 < len(starts) else padded_h  # no later window reaches above this row
        emit = min(done, height) - top
        if emit > 0:
            mapped = (scores[:, :emit, :width] / total[:emit, :width]).argmax(0).numpy().astype(np.uint8) + 1
            yield Window(top, 0, emit, width), np.where(valid[:emit, :width], mapped, 0).astype(np.uint8), rgb[:emit, :width]
        keep = done - top
        scores, total, valid, rgb, top = scores[:, keep:], total[keep:], valid[keep:], rgb[keep:], done


def segment_scene(model, scene: Scene, tile: int = 256, overlap: int = 64, blend: str = "cosine") -> np.ndarray:
    """(H, W) uint8 map of class index + 1 (0 where the scene has no data) of an in-memory scene
    from a ``SemanticSegmenter`` (``segment_strips``)."""
    result = np.zeros(scene.shape[:2], np.uint8)
    for window, classes, _ in segment_strips(model, scene.crop, *scene.shape[:2], tile, overlap, blend):
        result[window.slices] = classes
    return result


def segment_scene_file(model, source, out, tile: int = 256, overlap: int = 64, blend: str = "cosine", preview: int = 1024,
                       progress: bool = True) -> dict:
    """Segment a scene file (a ``SceneSource``) strip by strip into the GeoTIFF ``out``, as
    ``map_scene_file`` does for pixel classifiers: memory depends on the tile and the scene's
    width, not its height. Returns pixel counts, a preview and the time taken."""
    height, width = source.height, source.width
    if source.bands != model.preprocessing.bands:
        raise InputError(f"{source.meta.path}: {source.bands} bands, but the model takes {model.preprocessing.bands}")
    step = preview_step(height, width, preview)
    classes_preview = np.zeros((math.ceil(height / step), math.ceil(width / step)), np.uint8)
    rgb_preview = np.zeros((*classes_preview.shape, 3), np.float32)
    counts = np.zeros(256, np.int64)
    start = time.perf_counter()

    def strips():
        with tqdm(total=height * width, unit="px", unit_scale=True, disable=not progress, desc="map") as bar:
            for window, classes, rgb in segment_strips(model, source.read, height, width, tile, overlap, blend):
                counts[:] += np.bincount(classes.ravel(), minlength=256)
                rows = np.arange(-(-window.row // step) * step, window.row + window.height, step)
                classes_preview[rows // step] = classes[rows - window.row, ::step]
                rgb_preview[rows // step] = rgb[rows - window.row, ::step]
                bar.update(window.height * window.width)
                yield window, classes

    colours = class_colours(list(range(1, len(model.class_names) + 1)))
    with rasterio.Env(GDAL_CACHEMAX=GDAL_CACHE_MB):
        write_geotiff_windows(out, height, width, strips(), "uint8", source.meta.crs, source.meta.transform, 0, colours, block=256)
    seconds = time.perf_counter() - start
    return {"counts": {int(i): int(n) for i, n in enumerate(counts) if i and n}, "classes": classes_preview, "rgb": rgb_preview,
            "step": step, "seconds": seconds, "pixels_per_s": height * width / max(seconds, 1e-9)}


def class_colours(class_ids: list[int]) -> dict[int, tuple[int, int, int, int]]:
    """A fixed colour per class id (tab20), black for 0 = no data."""
    palette = plt.get_cmap("tab20")
    colours = {0: (0, 0, 0, 255)}
    for i, class_id in enumerate(class_ids):
        r, g, b, _ = palette(i % 20)
        colours[int(class_id)] = (int(255 * r), int(255 * g), int(255 * b), 255)
    return colours


def write_class_png(png, rgb: np.ndarray, class_map: np.ndarray, class_ids: list[int], names: list[str] | None = None,
                    reference: np.ndarray | None = None, title: str = "scene") -> Path:
    """PNG of the scene in true colour (``rgb``: (h, w, 3)) beside the ``reference`` (same codes,
    0 = unlabelled) when given, and the prediction ``class_map`` (h, w), with a legend of ``names``
    (in the order of ``class_ids``; default "class N")."""
    colours = class_colours(class_ids)
    panels = [("scene", stretch(rgb))]
    if reference is not None:
        panels.append(("reference", _coloured(reference, colours)))
    panels.append(("prediction", _coloured(class_map, colours)))
    aspect = class_map.shape[0] / max(class_map.shape[1], 1)
    figure, axes = plt.subplots(1, len(panels), figsize=(4 * len(panels), 4 * aspect + 0.6), squeeze=False)
    for axis, (name, picture) in zip(axes[0], panels):
        axis.imshow(picture, interpolation="nearest")
        axis.set_axis_off()
        axis.set_title(name)
    figure.suptitle(title)
    labels = names or [f"class {c}" for c in class_ids]
    handles = [Patch(color=np.array(colours[c][:3]) / 255, label=label) for c, label in zip(class_ids, labels)]
    if reference is not None:
        handles.append(Patch(color="black", label="unlabelled / no data"))
    axes[0, -1].legend(handles=handles, loc="upper left", bbox_to_anchor=(1.01, 1), frameon=False)
    figure.savefig(png, bbox_inches="tight", dpi=120)
    plt.close(figure)
    return Path(png)


def _coloured(class_map: np.ndarray, colours: dict) -> np.ndarray:
    rgb = np.zeros((*class_map.shape, 3), dtype=np.uint8)
    for class_id, colour in colours.items():
        rgb[class_map == class_id] = colour[:3]
    return rgb
