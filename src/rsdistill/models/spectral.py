"""Per-pixel spectral baselines: what a practitioner fits before a spatial-spectral model.

Both classify the centre pixel's spectrum of each patch, ignoring its neighbours, so they answer
"does the patch model beat the spectrum alone?" at a fraction of its cost (issue 15).

- ``SpectralMLP``: two hidden layers (Linear, BatchNorm, ReLU, dropout) on the spectrum.
- ``SpectralCNN1d``: the 1-D CNN of Hu et al., "Deep convolutional neural networks for
  hyperspectral image classification", J. Sensors 2015, 258619 (Sec. 3, Fig. 4): one convolution
  along the bands with 20 kernels of size k1 = ⌈B / 9⌉, tanh, max pooling of size k2 = ⌈k1 / 5⌉,
  a fully connected layer of 100 tanh units and the output layer (⌈·⌉ as DeepHyperX's HuEtAl
  reads the paper's k1 = n1 / 9: 25 kernels and 40 pooled values at 224 bands).
"""

from __future__ import annotations

import math

import torch
from torch import nn


def centre_spectrum(patches: torch.Tensor) -> torch.Tensor:
    """(N, B, p, p) patches -> (N, B) spectra of their centre pixels."""
    return patches[:, :, patches.shape[2] // 2, patches.shape[3] // 2]


class SpectralMLP(nn.Module):
    """(N, B, p, p) patches -> (N, K) logits from the centre pixel's spectrum."""

    def __init__(self, bands: int, classes: int, hidden: int = 256, dropout: float = 0.2):
        super().__init__()
        self.body = nn.Sequential(
            nn.Linear(bands, hidden), nn.BatchNorm1d(hidden), nn.ReLU(), nn.Dropout(dropout),
            nn.Linear(hidden, hidden // 2), nn.BatchNorm1d(hidden // 2), nn.ReLU(), nn.Dropout(dropout),
        )
        self.head = nn.Linear(hidden // 2, classes)

    def forward(self, patches: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(centre_spectrum(patches)))


class SpectralCNN1d(nn.Module):
    """(N, B, p, p) patches -> (N, K) logits from the centre pixel's spectrum (Hu et al. 2015)."""

    def __init__(self, bands: int, classes: int, kernels: int = 20, hidden: int = 100, dropout: float = 0.0):
        super().__init__()
        k1 = math.ceil(bands / 9)
        k2 = math.ceil(k1 / 5)
        pooled = (bands - k1 + 1) // k2  # ≥ 1 for any band count
        self.features = nn.Sequential(nn.Conv1d(1, kernels, k1), nn.Tanh(), nn.MaxPool1d(k2))
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(kernels * pooled, hidden), nn.Tanh(), nn.Dropout(dropout), nn.Linear(hidden, classes))

    def forward(self, patches: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(centre_spectrum(patches)[:, None]))  # (N, 1, B) -> (N, kernels, pooled)
