"""Masking as one mechanism: a significance score per patch, then mask the top ``ratio`` of patches.

Scores (HyperKD, arXiv 2508.09453, Sec. 3.3: spatial-feature-guided masking):
- ``random``: uniform noise (plain MAE masking is this case);
- ``gabor``: energy of a Gabor filter bank (4 orientations × 2 frequencies) applied to the
  band-mean image, summed per patch: textured and edge-rich patches score high;
- ``wavelet``: energy of the detail coefficients (horizontal, vertical, diagonal) of a one-level
  2-D Haar transform (``ptwt``), summed per patch.

``mask_from_scores`` standardises the scores per tile and adds ``noise`` × N(0, 1) before ranking.
Default noise 0.5: with none, a tile would be masked identically every epoch and the encoder would
never see its most significant patches; 0.5 keeps a clear preference for masking significant
patches while every patch is visible now and then: two draws of the same tile share 89 % of their
masked patches at ratio 0.75 (100 % without noise, 75 % for random masking), as printed by
``benchmarks/masking_cost.py``. All of it is batched in torch on the input's device.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import NamedTuple

import ptwt
import torch
import torch.nn.functional as F

from rsdistill.errors import InputError

SCORES = ("random", "gabor", "wavelet")


def gabor_bank(size: int = 7, orientations: int = 4, wavelengths: tuple[float, ...] = (3.0, 6.0)) -> torch.Tensor:
    """(K, 1, size, size) real Gabor kernels, zero-mean, K = orientations × len(wavelengths)."""
    half = size // 2
    y, x = torch.meshgrid(torch.arange(-half, half + 1.0), torch.arange(-half, half + 1.0), indexing="ij")
    kernels = []
    for wavelength in wavelengths:
        sigma = 0.56 * wavelength
        for k in range(orientations):
            theta = math.pi * k / orientations
            xr = x * math.cos(theta) + y * math.sin(theta)
            yr = -x * math.sin(theta) + y * math.cos(theta)
            kernel = torch.exp(-(xr**2 + yr**2) / (2 * sigma**2)) * torch.cos(2 * math.pi * xr / wavelength)
            kernels.append(kernel - kernel.mean())
    return torch.stack(kernels)[:, None]


def patch_scores(images: torch.Tensor, method: str, patch_size: int) -> torch.Tensor:
    """images: (N, C, H, W) normalised tiles -> (N, L) significance per patch (L = H W / p²)."""
    n, _, height, width = images.shape
    grid = (height // patch_size, width // patch_size)
    if method == "random":
        return torch.rand(n, grid[0] * grid[1], device=images.device)
    gray = images.mean(dim=1, keepdim=True)  # band-reduced image (N, 1, H, W)
    if method == "gabor":
        bank = gabor_bank().to(gray)
        response = F.conv2d(F.pad(gray, (3, 3, 3, 3), mode="reflect"), bank)
        energy = response.pow(2).sum(dim=1, keepdim=True)  # (N, 1, H, W)
    elif method == "wavelet":
        _, (horizontal, vertical, diagonal) = ptwt.wavedec2(gray.squeeze(1), "haar", level=1)
        energy = (horizontal**2 + vertical**2 + diagonal**2).unsqueeze(1)  # (N, 1, H/2, W/2)
    else:
        raise InputError(f"unknown masking score {method!r}; choose one of {', '.join(SCORES)}")
    return F.adaptive_avg_pool2d(energy, grid).flatten(1)


class PatchMask(NamedTuple):
    """Which patches of each tile are masked.

    mask (N, L) with 1 = masked; ids_keep (N, L_keep) and ids_masked (N, L_mask) the patch indices
    of each part; ids_restore (N, L) (MAE's convention: ``gather(cat(kept, masked), ids_restore)``
    puts tokens back in place).
    """

    mask: torch.Tensor
    ids_keep: torch.Tensor
    ids_masked: torch.Tensor
    ids_restore: torch.Tensor


def mask_from_scores(scores: torch.Tensor, ratio: float, noise: float = 0.5, generator: torch.Generator | None = None) -> PatchMask:
    """Mask the top ``ratio`` of patches of each tile by (standardised score + noise · N(0, 1)).

    scores: (N, L) significance; ``generator`` draws the noise (the global RNG by default).
    """
    if not 0 < ratio < 1:
        raise InputError(f"mask ratio must be in (0, 1), got {ratio}")
    n, length = scores.shape
    z = (scores - scores.mean(dim=1, keepdim=True)) / (scores.std(dim=1, keepdim=True) + 1e-8)
    if noise:
        z = z + noise * torch.randn(z.shape, generator=generator, device=z.device)
    ids_shuffle = torch.argsort(z, dim=1)  # ascending: least significant first, kept
    ids_restore = torch.argsort(ids_shuffle, dim=1)
    keep = int(round(length * (1 - ratio)))
    keep = min(max(keep, 1), length - 1)
    mask = torch.ones(n, length, device=scores.device)
    mask[:, :keep] = 0
    return PatchMask(torch.gather(mask, 1, ids_restore), ids_shuffle[:, :keep], ids_shuffle[:, keep:], ids_restore)


def random_patch_mask(n: int, length: int, ratio: float, device=None, generator: torch.Generator | None = None) -> PatchMask:
    """MAE's uniform random mask: ``ratio`` of the ``length`` patches of each of ``n`` tiles."""
    return mask_from_scores(torch.rand(n, length, device=device, generator=generator), ratio, noise=0.0)


def held_out_mask(keys: torch.Tensor, draw: Callable[[int, torch.Generator], PatchMask], device=None) -> PatchMask:
    """One mask per held-out tile: ``draw(i, generator)`` masks the batch's tile i with a generator
    seeded by its key (its index in the held-out set), so a tile is scored on the same mask whatever
    batch, batch size or DDP rank it falls in. keys: (N,) -> masks of N tiles (on ``device``)."""
    masks = [draw(i, torch.Generator().manual_seed(int(key))) for i, key in enumerate(keys)]
    return PatchMask(*(torch.cat(parts).to(device) for parts in zip(*masks)))


def strided_grid_mask(n: int, grid_h: int, grid_w: int, device=None, generator: torch.Generator | None = None) -> PatchMask:
    """Mask-CDKD's "teacher-safe" 75 % mask: keep every second patch in both directions from a
    random (row, column) shift in {0, 1}² per tile, so the visible patches form a (grid_h/2) ×
    (grid_w/2) grid a windowed-attention teacher can run on (the official code's only 4 masks).

    Returns a ``PatchMask`` whose ``ids_keep`` are in row-major order of that visible grid.
    """
    if grid_h % 2 or grid_w % 2:
        raise InputError(f"a strided-grid mask needs an even token grid, got {grid_h}×{grid_w}")
    shifts = torch.randint(0, 2, (n, 2), device=device, generator=generator)
    rows = torch.arange(0, grid_h, 2, device=device)[None, :, None] + shifts[:, 0, None, None]
    cols = torch.arange(0, grid_w, 2, device=device)[None, None, :] + shifts[:, 1, None, None]
    ids_keep = (rows * grid_w + cols).flatten(1)  # (N, L/4), row-major over the visible grid
    mask = torch.ones(n, grid_h * grid_w, device=device)
    mask.scatter_(1, ids_keep, 0)
    ids_masked = torch.nonzero(mask)[:, 1].view(n, -1)  # ascending per tile
    ids_restore = torch.argsort(torch.cat([ids_keep, ids_masked], dim=1), dim=1)
    return PatchMask(mask, ids_keep, ids_masked, ids_restore)
