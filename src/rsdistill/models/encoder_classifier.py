"""A pretrained ``ViTEncoder`` (MAE, HyperKD student) as the backbone of pixel classification.

The classification task normalises patches with its training pixels' statistics over all the
scene's bands; the encoder was pretrained on its kept bands with its own statistics. The backbone
selects the kept bands (card ``kept_band_indices``) and maps one normalisation onto the other,
x_enc = (x_cls·σ_cls + μ_cls − μ_enc) / σ_enc, so the encoder sees inputs as in pretraining.
The logits come from the token of the encoder patch that contains the centre pixel (as in the
linear probe).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from rsdistill.errors import InputError
from rsdistill.models.weights import load_encoder


class EncoderPixelClassifier(nn.Module):
    """(N, B, p, p) patches normalised with the classification statistics -> (N, K) logits."""

    def __init__(self, encoder_path, num_bands: int, num_classes: int, band_mean, band_std, freeze: bool = False):
        super().__init__()
        self.encoder, card = load_encoder(encoder_path)
        kept = card.get("kept_band_indices") or list(range(num_bands))
        if len(kept) != self.encoder.bands or max(kept) >= num_bands:
            raise InputError(
                f"{encoder_path}: the encoder takes {self.encoder.bands} bands (indices up to {max(kept)}) "
                f"but the classification scenes have {num_bands}"
            )
        norm = card.get("normalisation") or {}
        encoder_mean = torch.as_tensor(norm.get("mean") or [0.0] * len(kept), dtype=torch.float32)
        encoder_std = torch.as_tensor(norm.get("std") or [1.0] * len(kept), dtype=torch.float32)
        index = torch.as_tensor(kept, dtype=torch.long)
        mean, std = torch.as_tensor(band_mean, dtype=torch.float32)[index], torch.as_tensor(band_std, dtype=torch.float32)[index]
        self.register_buffer("kept", index)
        self.register_buffer("scale", (std / encoder_std)[:, None, None])
        self.register_buffer("shift", ((mean - encoder_mean) / encoder_std)[:, None, None])
        self.encoder.requires_grad_(not freeze)
        self.head = nn.Linear(self.encoder.embed_dim, num_classes)

    def forward(self, patches: torch.Tensor) -> torch.Tensor:
        x = patches[:, self.kept] * self.scale + self.shift
        size, step = x.shape[-1], self.encoder.patch_size
        x = F.pad(x, (0, (-size) % step, 0, (-size) % step))  # 0 is the band mean after normalisation
        tokens, _ = self.encoder(x)  # (N, 1 + L, D)
        centre, grid_w = (size // 2) // step, x.shape[-1] // step
        return self.head(tokens[:, 1 + centre * grid_w + centre])
