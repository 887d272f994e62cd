"""A compact 3-D/2-D CNN baseline in the spirit of HybridSN (Roy et al., IEEE GRSL 2020).

HybridSN reduces the bands with PCA before its 3-D convolutions; here a learned 1×1 spectral
projection does that job so that the model trains end to end on any band count.
"""

from __future__ import annotations

import torch
from torch import nn


class HybridCNN(nn.Module):
    """(N, B, p, p) patches -> (N, K) logits."""

    def __init__(self, bands: int, classes: int, reduced_bands: int = 30, features: int = 64, dropout: float = 0.2):
        super().__init__()
        self.reduce = nn.Sequential(nn.Conv2d(bands, reduced_bands, 1), nn.BatchNorm2d(reduced_bands), nn.ReLU())
        self.spectral_spatial = nn.Sequential(
            nn.Conv3d(1, 8, (7, 3, 3), padding=(0, 1, 1)), nn.ReLU(),
            nn.Conv3d(8, 16, (5, 3, 3), padding=(0, 1, 1)), nn.ReLU(),
        )
        depth = reduced_bands - 6 - 4
        self.spatial = nn.Sequential(nn.Conv2d(16 * depth, features, 3, padding=1), nn.BatchNorm2d(features), nn.ReLU())
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(features, classes))

    def forward(self, patches: torch.Tensor) -> torch.Tensor:
        cube = self.spectral_spatial(self.reduce(patches).unsqueeze(1))  # (N, 16, D, p, p)
        planes = self.spatial(cube.flatten(1, 2))  # (N, F, p, p)
        return self.head(planes.mean(dim=(2, 3)))
