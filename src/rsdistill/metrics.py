"""Scores the tasks report: classification scores from a confusion matrix (accumulated by torchmetrics
in the tasks), and SpecDeepMap's per-batch segmentation IoU.

OA = trace / total; AA = mean recall over the classes present in the reference; Cohen's kappa =
(p_o − p_e) / (1 − p_e). Computed once from the matrix so all scores agree with each other.
"""

from __future__ import annotations

import numpy as np
import torch
from torchmetrics.functional.classification import multiclass_jaccard_index

from rsdistill.io.masks import IGNORE_INDEX


def scores_from_confusion(confusion) -> dict:
    """confusion: (K, K) counts, rows = reference class, columns = prediction."""
    cm = np.asarray(confusion, dtype=np.float64)
    total = cm.sum()
    support = cm.sum(axis=1)
    present = support > 0
    recall = np.divide(np.diag(cm), support, out=np.zeros_like(support), where=present)
    observed = np.trace(cm) / total
    expected = (support * cm.sum(axis=0)).sum() / total**2
    return {
        "oa": float(observed),
        "aa": float(recall[present].mean()),
        "kappa": float((observed - expected) / (1 - expected)) if expected < 1 else 0.0,
        "per_class": [float(r) if p else None for r, p in zip(recall, present)],
        "confusion": cm.astype(int).tolist(),
    }


def specdeepmap_numbering(classes: torch.Tensor) -> torch.Tensor:
    """rsdistill class indices 0..K-1 (255 = ignored) -> SpecDeepMap's 1..K (0 = background, ignored)."""
    return torch.where(classes == IGNORE_INDEX, 0, classes + 1)


def specdeepmap_batch_iou(predictions: torch.Tensor, labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """SpecDeepMap's ``val_iou`` of one batch (EnMAP-Box ``SpecDeepMap/core_deep_learning_trainer.py``).

    predictions, labels: (N, H, W) in SpecDeepMap's numbering (``specdeepmap_numbering``): classes
    1..K, 0 the background; ``num_classes`` = K + 1. SpecDeepMap scores each batch with torchmetrics'
    ``JaccardIndex(task="multiclass", num_classes=K + 1, ignore_index=0)``: background labels are
    dropped, and the macro mean runs over the classes present in the batch's labels or predictions,
    background excluded. Lightning averages the batch values over an epoch (``on_epoch=True``) and
    SpecDeepMap's validation loader drops the last partial batch, so the value depends on the batch
    size, unlike the mIoU of the whole set.
    """
    return multiclass_jaccard_index(predictions, labels, num_classes, average="macro", ignore_index=0)
