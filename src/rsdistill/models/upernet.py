"""UPerNet on a plain ViT: dense class scores from features of four encoder blocks.

As MMSegmentation's ``upernet_mae`` (``Feature2Pyramid`` neck + ``UPerHead``; Xiao et al., "Unified
Perceptual Parsing for Scene Understanding", ECCV 2018) and terratorch's ``UperNetDecoder``:

1. taps: the patch tokens of four blocks (1-based; default 4, 6, 8, 12 of a depth-12 ViT,
   mmseg's ``out_indices=(3, 5, 7, 11)``), as maps (N, D, H/p, W/p) from ``forward_features``;
2. ``Feature2Pyramid`` turns the one-scale maps into strides p/4, p/2, p, 2p (4, 8, 16, 32 for
   p = 16): ×4 by ConvT(2, 2)-BN-GELU-ConvT(2, 2), ×2 by ConvT(2, 2), ×1 identity, ×0.5 MaxPool(2);
3. ``UPerHead``: a pyramid pooling module (PPM, pool scales 1, 2, 3, 6) on the coarsest level and a
   3×3 bottleneck; 1×1 lateral convs on the others; a top-down path adding each level, upsampled
   bilinearly, to the next finer one; 3×3 FPN convs; all levels upsampled to the finest and
   concatenated; a 3×3 fused bottleneck; dropout 0.1; a 1×1 classifier. Every conv is conv (no
   bias) + BatchNorm + ReLU (mmseg's ``ConvModule``). ``channels`` is the head's width (mmseg 512,
   terratorch 256; about 192 fits the Mask-CDKD paper's 29.65 M total for ViT-S);
4. scores upsampled bilinearly to the input size.

Shapes: input (N, C, H, W) with H, W multiples of the encoder's patch size -> (N, K, H, W) logits.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from rsdistill.errors import InputError

POOL_SCALES = (1, 2, 3, 6)
RESCALES = (4, 2, 1, 0.5)


def conv_bn_relu(in_channels: int, out_channels: int, kernel: int) -> nn.Sequential:
    """mmseg's ``ConvModule``: conv without bias, BatchNorm, ReLU."""
    return nn.Sequential(nn.Conv2d(in_channels, out_channels, kernel, padding=kernel // 2, bias=False),
                         nn.BatchNorm2d(out_channels), nn.ReLU(inplace=True))


def _upsample(x: torch.Tensor, size) -> torch.Tensor:
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False)


class Feature2Pyramid(nn.Module):
    """Four (N, D, h, w) maps -> maps at 4×, 2×, 1× and 0.5× their resolution (mmseg ``Feature2Pyramid``)."""

    def __init__(self, dim: int):
        super().__init__()
        self.up4 = nn.Sequential(nn.ConvTranspose2d(dim, dim, 2, 2), nn.BatchNorm2d(dim), nn.GELU(), nn.ConvTranspose2d(dim, dim, 2, 2))
        self.up2 = nn.ConvTranspose2d(dim, dim, 2, 2)
        self.down2 = nn.MaxPool2d(2, 2)

    def forward(self, features: list[torch.Tensor]) -> list[torch.Tensor]:
        return [self.up4(features[0]), self.up2(features[1]), features[2], self.down2(features[3])]


class UPerHead(nn.Module):
    """Pyramid maps, finest first, [(N, D_i, h_i, w_i)] -> (N, K, h_0, w_0) scores (mmseg ``UPerHead``)."""

    def __init__(self, in_channels: list[int], channels: int, num_classes: int, dropout: float = 0.1):
        super().__init__()
        top = in_channels[-1]
        self.ppm = nn.ModuleList(nn.Sequential(nn.AdaptiveAvgPool2d(scale), conv_bn_relu(top, channels, 1)) for scale in POOL_SCALES)
        self.bottleneck = conv_bn_relu(top + len(POOL_SCALES) * channels, channels, 3)
        self.lateral_convs = nn.ModuleList(conv_bn_relu(c, channels, 1) for c in in_channels[:-1])
        self.fpn_convs = nn.ModuleList(conv_bn_relu(channels, channels, 3) for _ in in_channels[:-1])
        self.fpn_bottleneck = conv_bn_relu(len(in_channels) * channels, channels, 3)
        self.dropout = nn.Dropout2d(dropout)
        self.conv_seg = nn.Conv2d(channels, num_classes, 1)

    def psp(self, x: torch.Tensor) -> torch.Tensor:
        """Pyramid pooling on the coarsest map: (N, D, h, w) -> (N, channels, h, w)."""
        pooled = [_upsample(module(x), x.shape[2:]) for module in self.ppm]
        return self.bottleneck(torch.cat([x, *pooled], dim=1))

    def forward(self, pyramid: list[torch.Tensor]) -> torch.Tensor:
        laterals = [conv(x) for conv, x in zip(self.lateral_convs, pyramid)] + [self.psp(pyramid[-1])]
        for i in range(len(laterals) - 1, 0, -1):  # top-down: each level adds the coarser one
            laterals[i - 1] = laterals[i - 1] + _upsample(laterals[i], laterals[i - 1].shape[2:])
        outputs = [conv(x) for conv, x in zip(self.fpn_convs, laterals)] + [laterals[-1]]
        finest = outputs[0].shape[2:]
        fused = self.fpn_bottleneck(torch.cat([outputs[0], *(_upsample(x, finest) for x in outputs[1:])], dim=1))
        return self.conv_seg(self.dropout(fused))


class UPerNet(nn.Module):
    """An encoder with ``forward_features`` (any rsdistill ViT) + neck + UPer head.

    ``layers``: the four blocks tapped (1-based); default the depth's 1/3, 1/2, 2/3 and last
    (4, 6, 8, 12 at depth 12). ``freeze_encoder``: train the neck and head only.
    """

    def __init__(self, encoder: nn.Module, num_classes: int, layers: tuple[int, ...] | None = None, channels: int = 192,
                 dropout: float = 0.1, freeze_encoder: bool = True):
        super().__init__()
        depth = encoder.depth
        self.layers = tuple(layers) if layers else (max(depth // 3, 1), max(depth // 2, 1), max(2 * depth // 3, 1), depth)
        if len(self.layers) != 4 or not all(1 <= layer <= depth for layer in self.layers):
            raise InputError(f"UPerNet taps four encoder blocks in 1..{depth} (the encoder's depth), got {list(self.layers)}")
        self.encoder, self.freeze_encoder = encoder, freeze_encoder
        self.encoder.requires_grad_(not freeze_encoder)
        self.neck = Feature2Pyramid(encoder.embed_dim)
        self.head = UPerHead([encoder.embed_dim] * 4, channels, num_classes, dropout)

    @property
    def stride(self) -> int:
        """Input sides must be multiples of this: the encoder's patch size."""
        return self.encoder.patch_size

    def train(self, mode: bool = True):
        super().train(mode)
        if self.freeze_encoder:
            self.encoder.eval()  # a frozen encoder keeps inference behaviour (no dropout)
        return self

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """images (N, C, H, W) normalised, H and W multiples of the patch size -> logits (N, K, H, W)."""
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.freeze_encoder):
            features = self.encoder.forward_features(images, self.layers)
        return _upsample(self.head(self.neck(features)), images.shape[2:])
