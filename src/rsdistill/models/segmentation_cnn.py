"""Small convolutional segmentation baselines, trained end to end (no pretrained encoder).

- ``SpecDeepMapCNN``: EnMAP-Box SpecDeepMap's ``JustoUNetSimple`` (after Justo et al., "Sea-land-
  cloud segmentation in satellite hyperspectral imagery by deep learning", 2023): conv3×3(C→6)-BN-
  ReLU, max-pool 2, conv3×3(6→12)-BN-ReLU, max-pool 2, nearest ×2, conv3×3(12→6)-BN-ReLU, nearest ×2,
  conv3×3(6→K)-BN. The parameter names are SpecDeepMap's (``enc_conv1`` … ``dec_bn2``), so its
  checkpoints load unchanged (``evaluation.specdeepmap``). SpecDeepMap ends with a softmax and feeds
  it to the cross-entropy; here the BN output is returned as logits (the same arg-max).
- ``UNet``: a U-Net (Ronneberger et al., MICCAI 2015) with ``depth`` down/up levels, two
  conv3×3-BN-ReLU per level, widths ``width·2^level``, max-pool down, ConvT(2, 2) up, skip
  concatenation, a 1×1 classifier.

Shapes: (N, C, H, W) normalised images, H and W multiples of ``stride`` -> (N, K, H, W) logits.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class SpecDeepMapCNN(nn.Module):
    stride = 4

    def __init__(self, in_channels: int, num_classes: int):
        super().__init__()
        self.enc_conv1, self.enc_bn1 = nn.Conv2d(in_channels, 6, 3, padding=1), nn.BatchNorm2d(6)
        self.enc_conv2, self.enc_bn2 = nn.Conv2d(6, 12, 3, padding=1), nn.BatchNorm2d(12)
        self.dec_conv1, self.dec_bn1 = nn.Conv2d(12, 6, 3, padding=1), nn.BatchNorm2d(6)
        self.dec_conv2, self.dec_bn2 = nn.Conv2d(6, num_classes, 3, padding=1), nn.BatchNorm2d(num_classes)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = F.max_pool2d(F.relu(self.enc_bn1(self.enc_conv1(images))), 2)
        x = F.max_pool2d(F.relu(self.enc_bn2(self.enc_conv2(x))), 2)
        x = F.relu(self.dec_bn1(self.dec_conv1(F.interpolate(x, scale_factor=2, mode="nearest"))))
        return self.dec_bn2(self.dec_conv2(F.interpolate(x, scale_factor=2, mode="nearest")))


def double_conv(in_channels: int, out_channels: int) -> nn.Sequential:
    """Two conv3×3 (no bias) - BN - ReLU, as every U-Net level."""
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False), nn.BatchNorm2d(out_channels), nn.ReLU(inplace=True),
        nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False), nn.BatchNorm2d(out_channels), nn.ReLU(inplace=True))


class UNet(nn.Module):
    def __init__(self, in_channels: int, num_classes: int, width: int = 32, depth: int = 4):
        super().__init__()
        widths = [width * 2**level for level in range(depth + 1)]
        self.stride = 2**depth
        self.down = nn.ModuleList([double_conv(in_channels, widths[0])] + [double_conv(a, b) for a, b in zip(widths, widths[1:])])
        self.up = nn.ModuleList(nn.ConvTranspose2d(b, a, 2, 2) for a, b in zip(widths, widths[1:]))
        self.merge = nn.ModuleList(double_conv(2 * a, a) for a in widths[:-1])
        self.classifier = nn.Conv2d(widths[0], num_classes, 1)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        skips, x = [], images
        for level, block in enumerate(self.down):
            x = block(x if level == 0 else F.max_pool2d(x, 2))
            skips.append(x)
        for up, merge, skip in zip(reversed(self.up), reversed(self.merge), reversed(skips[:-1])):
            x = merge(torch.cat([skip, up(x)], dim=1))
        return self.classifier(x)
