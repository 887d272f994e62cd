"""Whole-scene class maps from a trained ``PixelClassifier``: GeoTIFF (with colour table) and PNG legend."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from matplotlib.patches import Patch  # noqa: E402

from rsdistill.data.patches import all_pixel_patches, check_patch_size, padded_cube  # noqa: E402
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


def class_colours(class_ids: list[int]) -> dict[int, tuple[int, int, int, int]]:
    """A fixed colour per class id (tab20), black for 0 = no data."""
    palette = plt.get_cmap("tab20")
    colours = {0: (0, 0, 0, 255)}
    for i, class_id in enumerate(class_ids):
        r, g, b, _ = palette(i % 20)
        colours[int(class_id)] = (int(255 * r), int(255 * g), int(255 * b), 255)
    return colours


def write_class_map(class_map: np.ndarray, scene: Scene, out, class_ids: list[int]) -> tuple[Path, Path]:
    """GeoTIFF with the scene's CRS/transform and a colour table, plus a PNG with a legend."""
    colours = class_colours(class_ids)
    tif = write_geotiff(out, class_map, like=scene, nodata=0, colormap=colours)
    png = Path(out).with_suffix(".png")
    rgb = np.zeros((*class_map.shape, 3), dtype=np.uint8)
    for class_id, colour in colours.items():
        rgb[class_map == class_id] = colour[:3]
    figure, axis = plt.subplots(figsize=(6, 6 * class_map.shape[0] / max(class_map.shape[1], 1) + 0.5))
    axis.imshow(rgb, interpolation="nearest")
    axis.set_axis_off()
    axis.set_title(Path(scene.path).name or "scene")
    handles = [Patch(color=np.array(colours[c][:3]) / 255, label=f"class {c}") for c in class_ids]
    axis.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.01, 1), frameon=False)
    figure.savefig(png, bbox_inches="tight", dpi=120)
    plt.close(figure)
    return tif, png
