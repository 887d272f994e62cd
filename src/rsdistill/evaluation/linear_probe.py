"""Linear probe: a frozen encoder's pixel features, a linear classifier, overall accuracy.

Each labelled pixel gets the final-layer feature (``forward_features``) of the patch that contains
it (tiles are encoded whole, no masking; a side that is not a multiple of the patch size is padded
with 0, the band mean). The classifier is trained with the training tiles' labels only and scored on
held-out tiles (validation, to choose between encoders, and test). Features are standardised with training statistics.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


def pixel_features(encoder: nn.Module, tiles: torch.Tensor, labels: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """tiles (T, C, H, W) normalised, labels (T, H, W) -> features (P, D) and class ids (P,) of labelled pixels."""
    encoder.eval()
    p = encoder.patch_size
    features, targets = [], []
    with torch.no_grad():
        for tile, label in zip(tiles, labels):
            padded = F.pad(tile[None], (0, (-tile.shape[2]) % p, 0, (-tile.shape[1]) % p))
            grid = encoder.forward_features(padded)[0][0].permute(1, 2, 0)  # (h, w, D)
            rows, cols = np.nonzero(label > 0)
            features.append(grid[rows // p, cols // p])
            targets.append(torch.as_tensor(label[rows, cols], dtype=torch.long))
    return torch.cat(features), torch.cat(targets)


def linear_probe_accuracy(train_x, train_y, scored: dict[str, tuple], epochs: int = 300, seed: int = 0) -> dict[str, float]:
    """Overall accuracy on each of ``scored`` ({name: (features, class ids)}) of one softmax-regression
    probe trained on (``train_x``, ``train_y``) (full-batch Adam, weight decay 1e-4)."""
    torch.manual_seed(seed)
    classes = torch.unique(train_y)
    index = {int(c): i for i, c in enumerate(classes)}
    y = torch.tensor([index[int(c)] for c in train_y])
    mean, std = train_x.mean(0), train_x.std(0).clamp_min(1e-6)
    x = (train_x - mean) / std
    probe = torch.nn.Linear(x.shape[1], classes.numel())
    optimizer = torch.optim.Adam(probe.parameters(), lr=1e-2, weight_decay=1e-4)
    for _ in range(epochs):
        optimizer.zero_grad()
        F.cross_entropy(probe(x), y).backward()
        optimizer.step()
    with torch.no_grad():
        return {name: float((classes[probe((features - mean) / std).argmax(1)] == labels).float().mean())
                for name, (features, labels) in scored.items()}
