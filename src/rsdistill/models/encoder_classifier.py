"""A pretrained encoder (MAE, HyperKD student, Galileo) as the backbone of pixel classification.

The classifier feeds it patches already prepared with the encoder's own ``Preprocessing`` (its kept
bands and pretraining statistics: ``PixelClassifier`` with ``arch: encoder``). Patches whose side is
not a multiple of the encoder's patch size are padded with 0, the band mean after normalisation.
The logits come from the feature of the encoder patch that contains the centre pixel (as in the
linear probe); with Galileo at patch size 1 that is the centre pixel's own token, seen in the
context of the whole patch.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class EncoderPixelClassifier(nn.Module):
    """(N, C, p, p) normalised encoder inputs -> (N, K) logits."""

    def __init__(self, encoder: nn.Module, num_classes: int, freeze: bool = False):
        super().__init__()
        self.encoder = encoder
        self.encoder.requires_grad_(not freeze)
        self.head = nn.Linear(self.encoder.embed_dim, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size, step = x.shape[-1], self.encoder.patch_size
        x = F.pad(x, (0, (-size) % step, 0, (-size) % step))
        features = self.encoder.forward_features(x)[0]  # (N, D, h, w)
        centre = (size // 2) // step
        return self.head(features[:, :, centre, centre])
