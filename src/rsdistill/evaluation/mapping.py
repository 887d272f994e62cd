"""Whole-scene class maps: a ``PixelClassifier`` classifies every valid pixel from its patch; a
``SemanticSegmenter`` segments the scene in sliding windows (``segment_scene``). Either map is
written as a GeoTIFF (the scene's CRS and transform, a colour table, 0 = nodata) and a PNG with a
legend of class names: the scene in true colour, the reference when given, the prediction."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from matplotlib.patches import Patch  # noqa: E402

from rsdistill.data.patches import all_pixel_patches, check_patch_size, padded_cube  # noqa: E402
from rsdistill.data.segmentation import covering_windows  # noqa: E402
from rsdistill.errors import InputError  # noqa: E402
from rsdistill.evaluation.figures import stretch, true_colour_bands  # noqa: E402
from rsdistill.io.geotiff import write_geotiff  # noqa: E402
from rsdistill.io.scene import Scene  # noqa: E402
from rsdistill.tasks.classification import PixelClassifier  # noqa: E402


def classify_scene(model: PixelClassifier, scene: Scene, batch_size: int = 512) -> np.ndarray:
    """(H, W) uint8 map of class ids (as in the training labels); 0 where the scene has no data."""
    patch_size = model.data_info["patch_size"]
    check_patch_size(patch_size, [scene])
    padded = padded_cube(scene, patch_size)
    rows, cols = (torch.from_numpy(a) for a in np.nonzero(scene.valid))
    class_ids = torch.as_tensor(model.class_ids)
    result = np.zeros(scene.shape[:2], dtype=np.uint8)
    model.eval()
    with torch.no_grad():
        for r, c in zip(rows.split(batch_size), cols.split(batch_size)):
            logits = model(all_pixel_patches(padded, r, c, patch_size))
            result[r.numpy(), c.numpy()] = class_ids[logits.argmax(dim=1)].numpy()
    return result


BLENDS = ("uniform", "cosine")


def _window_weight(size: int, blend: str) -> torch.Tensor:
    """(size, size) weight of a window's scores: ``uniform``, or ``cosine`` (a 2-D Hann window,
    floored at 1 %, so the centre of a window, where it sees the most context, counts most)."""
    if blend == "uniform":
        return torch.ones(size, size)
    hann = torch.hann_window(size, periodic=False).clamp_min(0.01)
    return hann[:, None] * hann[None, :]


def segment_scene(model, scene: Scene, tile: int = 256, overlap: int = 64, blend: str = "cosine") -> np.ndarray:
    """(H, W) uint8 map of class index + 1 (0 where the scene has no data) from a ``SemanticSegmenter``.

    The scene is cut into ``tile`` windows overlapping by ``overlap`` pixels (the last ones aligned
    to the edges; a scene smaller than a tile is padded); the class probabilities of overlapping
    windows are averaged with ``blend`` weights, then the most probable class is taken.
    """
    if blend not in BLENDS:
        raise InputError(f"unknown blend {blend!r}; choose one of {', '.join(BLENDS)}")
    stride = model.net.stride
    if tile % stride or not 0 <= overlap < tile:
        raise InputError(f"tile {tile} must be a multiple of the model's stride {stride} (a ViT's patch size), and overlap in 0..{tile - 1}")
    height, width = scene.shape[:2]
    image = torch.from_numpy(model.preprocessing.cube(scene.cube, scene.valid))[None]  # (1, C, H, W)
    padded_h, padded_w = max(height, tile), max(width, tile)
    image = torch.nn.functional.pad(image, (0, padded_w - width, 0, padded_h - height))
    weight = _window_weight(tile, blend)
    scores = torch.zeros(len(model.class_names), padded_h, padded_w)
    total = torch.zeros(padded_h, padded_w)
    with torch.no_grad():
        for window in covering_windows(padded_h, padded_w, tile, tile - overlap):
            rows, cols = window.slices
            scores[:, rows, cols] += model(image[:, :, rows, cols])[0].softmax(0) * weight
            total[rows, cols] += weight
    classes = (scores / total).argmax(0)[:height, :width].numpy().astype(np.uint8) + 1
    return np.where(scene.valid, classes, 0).astype(np.uint8)


def class_colours(class_ids: list[int]) -> dict[int, tuple[int, int, int, int]]:
    """A fixed colour per class id (tab20), black for 0 = no data."""
    palette = plt.get_cmap("tab20")
    colours = {0: (0, 0, 0, 255)}
    for i, class_id in enumerate(class_ids):
        r, g, b, _ = palette(i % 20)
        colours[int(class_id)] = (int(255 * r), int(255 * g), int(255 * b), 255)
    return colours


def write_class_map(class_map: np.ndarray, scene: Scene, out, class_ids: list[int], names: list[str] | None = None,
                    reference: np.ndarray | None = None) -> tuple[Path, Path]:
    """GeoTIFF with the scene's CRS/transform and a colour table, plus a PNG with a legend (``names``
    of the classes, in the order of ``class_ids``, or "class N"): the scene in true colour beside the
    map, and beside the ``reference`` (same codes, 0 = unlabelled) when one is given."""
    colours = class_colours(class_ids)
    tif = write_geotiff(out, class_map, like=scene, nodata=0, colormap=colours)
    png = Path(out).with_suffix(".png")
    panels = [("scene", stretch(scene.cube[..., true_colour_bands(scene.wavelengths, scene.shape[2])]))]
    if reference is not None:
        panels.append(("reference", _coloured(reference, colours)))
    panels.append(("prediction", _coloured(class_map, colours)))
    aspect = class_map.shape[0] / max(class_map.shape[1], 1)
    figure, axes = plt.subplots(1, len(panels), figsize=(4 * len(panels), 4 * aspect + 0.6), squeeze=False)
    for axis, (title, picture) in zip(axes[0], panels):
        axis.imshow(picture, interpolation="nearest")
        axis.set_axis_off()
        axis.set_title(title)
    figure.suptitle(Path(scene.path).name or "scene")
    labels = names or [f"class {c}" for c in class_ids]
    handles = [Patch(color=np.array(colours[c][:3]) / 255, label=label) for c, label in zip(class_ids, labels)]
    if reference is not None:
        handles.append(Patch(color="black", label="unlabelled / no data"))
    axes[0, -1].legend(handles=handles, loc="upper left", bbox_to_anchor=(1.01, 1), frameon=False)
    figure.savefig(png, bbox_inches="tight", dpi=120)
    plt.close(figure)
    return tif, png


def _coloured(class_map: np.ndarray, colours: dict) -> np.ndarray:
    rgb = np.zeros((*class_map.shape, 3), dtype=np.uint8)
    for class_id, colour in colours.items():
        rgb[class_map == class_id] = colour[:3]
    return rgb
