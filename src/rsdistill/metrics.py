"""Classification scores from a confusion matrix (accumulated by torchmetrics in the tasks).

OA = trace / total; AA = mean recall over the classes present in the reference; Cohen's kappa =
(p_o − p_e) / (1 − p_e). Computed once from the matrix so all scores agree with each other.
"""

from __future__ import annotations

import numpy as np


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
