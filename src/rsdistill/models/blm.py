"""BLM: Byte Latent Mamba for hyperspectral pixel classification (BLM-KD, IEEE TGRS 63, 2025).

A patch around the pixel to classify is turned into a short latent sequence by convolutions,
without explicit tokenisation (the "byte latent" encoder: a spectral 1×1 embedding, then C→2C→C
convolutions with dropout, the last one strided so that a 9×9 patch becomes 3×3 = 9 latent
tokens), then a selective state-space model (Mamba) runs over the sequence and a linear head
classifies the pooled output.

Mamba's layers come from ``mambapy``; its selective scan is replaced by ``models.selective_scan``
(``scan``: a fused numba loop on CPU, ``mamba-ssm``'s fused kernel on CUDA where it is installed
and ``cuda_kernels``, a PyTorch loop for export and other devices). The parameter names stay
mambapy's, so the same checkpoint runs any way, on any device.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from mambapy.mamba import Mamba, MambaConfig
from torch import nn

from rsdistill.models.selective_scan import install_scan
from rsdistill.preprocessing import Preprocessing


class ByteLatentEncoder(nn.Module):
    """(N, B, p, p) patches -> (N, L, d) latent sequence, L = (floor((p - 3) / stride) + 1)^2."""

    def __init__(self, bands: int, d_model: int, dropout: float = 0.1, token_stride: int = 3):
        super().__init__()
        self.spectral = nn.Sequential(nn.Conv2d(bands, d_model, 1), nn.BatchNorm2d(d_model), nn.GELU())
        self.expand = nn.Sequential(
            nn.Conv2d(d_model, 2 * d_model, 3, padding=1), nn.BatchNorm2d(2 * d_model), nn.GELU(), nn.Dropout(dropout)
        )
        self.compress = nn.Sequential(
            nn.Conv2d(2 * d_model, d_model, 3, stride=token_stride), nn.BatchNorm2d(d_model), nn.GELU(), nn.Dropout(dropout)
        )

    def forward(self, patches: torch.Tensor) -> torch.Tensor:
        return self.spatial(self.spectral(patches))

    def spatial(self, embedded: torch.Tensor) -> torch.Tensor:
        """(N, d, p, p) spectrally embedded patches -> (N, L, d) latent sequence."""
        latent = self.compress(self.expand(embedded))  # (N, d, h, w)
        return latent.flatten(2).transpose(1, 2)  # (N, h*w, d)


class BLMClassifier(nn.Module):
    """Byte-latent encoder + Mamba + linear head: (N, B, p, p) patches -> (N, K) logits."""

    def __init__(
        self,
        bands: int,
        classes: int,
        d_model: int = 64,
        n_layers: int = 3,
        d_state: int = 128,
        expand: int = 2,
        dropout: float = 0.1,
        token_stride: int = 3,
        cuda_kernels: bool = True,
        scan: str = "auto",
    ):
        super().__init__()
        self.encoder = ByteLatentEncoder(bands, d_model, dropout, token_stride)
        config = MambaConfig(d_model=d_model, n_layers=n_layers, d_state=d_state, expand_factor=expand)
        self.mamba = Mamba(config)
        install_scan(self.mamba, scan, cuda_kernels)
        self.norm = nn.LayerNorm(d_model)
        self.head = nn.Linear(d_model, classes)

    def forward(self, patches: torch.Tensor, preprocessing: Preprocessing | None = None) -> torch.Tensor:
        return self.from_pixelwise(self.pixelwise(patches, preprocessing))

    def pixelwise(self, images: torch.Tensor, preprocessing: Preprocessing | None = None) -> torch.Tensor:
        """(N, B, H, W) -> (N, d, H, W): the stage that sees one pixel at a time (the spectral 1×1
        embedding), so that a scene map computes it once per pixel instead of once per patch.

        ``preprocessing``: ``images`` are then raw bands, and their preprocessing is folded into the
        1×1 convolution (``Preprocessing.fold``): the same function, but the raw input is read once
        instead of being standardised into a copy first."""
        if preprocessing is None:
            return self.encoder.spectral(images)
        conv = self.encoder.spectral[0]
        with torch.autocast(images.device.type, enabled=False):  # fp32 under bf16/16-mixed: the folded
            # terms are each large for raw values far from the band means; their difference is the input
            weight, bias = preprocessing.fold(conv.weight.flatten(1).float(), conv.bias.float(), images)
            folded = F.conv2d(images.float(), weight[..., None, None], bias)
        return self.encoder.spectral[1:](folded)

    def from_pixelwise(self, embedded: torch.Tensor) -> torch.Tensor:
        """(N, d, p, p) patches of ``pixelwise`` output -> (N, K) logits."""
        sequence = self.mamba(self.encoder.spatial(embedded))  # (N, L, d)
        return self.head(self.norm(sequence.mean(dim=1)))
