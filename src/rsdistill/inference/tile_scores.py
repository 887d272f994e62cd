"""Any map-making checkpoint scored on labelled tiles with the segmentation metrics.

A pixel classifier (``classify_scene``: every valid pixel from its patch) and a segmenter
(``segment_scene``: sliding windows) both turn each tile of a tile list into a class map; the maps
are scored against the tiles' masks by the segmenter's metrics (``segmentation_metrics``: mIoU, OA,
mF1, per-class IoU, confusion) and SpecDeepMap's per-batch IoU over consecutive batches of
``batch_size`` tiles, the last partial batch dropped (``metrics.specdeepmap_batch_iou``), so the
BLM pixel classifiers and the UPerNet/CNN segmenters sit in one table on the same tiles.
"""

from __future__ import annotations

import numpy as np
import torch

from rsdistill.errors import InputError
from rsdistill.inference.mapping import classify_scene, segment_scene
from rsdistill.io.masks import read_mask
from rsdistill.io.readers import read_scene
from rsdistill.metrics import specdeepmap_batch_iou, specdeepmap_numbering
from rsdistill.tasks.segmentation import segmentation_metrics


def map_maker(model, tile: int, overlap: int):
    """(scene -> (H, W) class indices 0..K-1, -1 where no data; the legend of the model's masks;
    class names). Every kind draws class codes (``map_classes``: 0 = no data), turned into indices
    by ``code_indices``."""
    codes, names, legend = model.map_classes()
    draw = {"segmentation": lambda scene: segment_scene(model, scene, tile, overlap),
            "pixel_classification": lambda scene: classify_scene(model, scene)}[model.kind]
    return (lambda scene: code_indices(draw(scene), codes)), legend, names


def code_indices(class_map: np.ndarray, codes: list[int]) -> np.ndarray:
    """A class map of codes -> the index of each code in ``codes``, -1 where a pixel holds no code
    of them (0: no data)."""
    lookup = np.full(max(max(codes), int(class_map.max(initial=0))) + 1, -1, np.int64)
    lookup[codes] = np.arange(len(codes))
    return lookup[class_map]


def score_tiles(model, pairs: list[tuple], batch_size: int = 2, tile: int = 256, overlap: int = 64) -> dict:
    """mIoU/OA/mF1, SpecDeepMap IoU, per-class IoU and confusion of a model's maps of (image, mask) pairs."""
    make_map, legend, names = map_maker(model, tile, overlap)
    maps, masks = [], []
    for image, mask in pairs:
        predicted = make_map(read_scene(image))
        reference, _ = read_mask(mask, legend)
        if reference.shape != predicted.shape:
            raise InputError(f"{mask}: mask is {reference.shape[0]}×{reference.shape[1]} but its image {image} is {predicted.shape[0]}×{predicted.shape[1]}")
        # a pixel without a prediction (no data) is wrong for every class: count it as an impossible class
        maps.append(torch.from_numpy(np.where(predicted < 0, len(names), predicted)))
        masks.append(torch.from_numpy(reference.astype(np.int64)))
    classes = len(names)
    confusion = segmentation_metrics(classes + 1)["confusion"]  # the last class: labelled pixels left unmapped
    batch_ious = []
    for start in range(0, len(maps), batch_size):
        predicted, reference = torch.stack(maps[start:start + batch_size]), torch.stack(masks[start:start + batch_size])
        confusion.update(predicted, reference)
        if len(predicted) == batch_size:  # SpecDeepMap: an unmapped pixel is its background, wrong for every class
            batch_ious.append(specdeepmap_batch_iou(torch.where(predicted == classes, 0, predicted + 1),
                                                    specdeepmap_numbering(reference), classes + 1))
    scores = scores_of_confusion(confusion.compute().numpy(), classes)
    return {**scores, "iou": dict(zip(names, scores["iou"])),
            "specdeepmap_iou": float(torch.stack(batch_ious).mean()) if batch_ious else float("nan"), "tiles": len(pairs)}


def scores_of_confusion(confusion: np.ndarray, classes: int) -> dict:
    """mIoU, OA, mF1 as ``segmentation_metrics`` defines them (macro over the classes seen in the
    reference or the maps), from a confusion matrix whose extra last column counts unmapped pixels."""
    tp = np.diag(confusion)[:classes].astype(float)
    fn = confusion[:classes].sum(1) - tp
    fp = confusion[:, :classes].sum(0) - tp
    seen = tp + fp + fn > 0
    iou, f1 = tp / np.maximum(tp + fp + fn, 1), 2 * tp / np.maximum(2 * tp + fp + fn, 1)
    return {"miou": float(iou[seen].mean()), "oa": float(tp.sum() / max(confusion.sum(), 1)), "mf1": float(f1[seen].mean()),
            "iou": iou.tolist(), "confusion": confusion[:classes].tolist()}


def summarise_scores(runs: list[dict]) -> dict:
    """Mean and std (population, over the runs, e.g. seeds) of each score."""
    return {k: {"mean": float(np.mean([r[k] for r in runs])), "std": float(np.std([r[k] for r in runs]))}
            for k in ("miou", "oa", "mf1", "specdeepmap_iou")} | {"runs": len(runs)}
