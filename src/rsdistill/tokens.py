"""Patch layout of ViT-style models, in one place: tiles <-> patch sequences, and token gathers.

A tile (N, C, H, W) is cut into L = (H / p)·(W / p) non-overlapping p×p patches in row-major
order. ``patchify`` lays each patch out pixel-major, (p, p, C), as facebookresearch/mae's
``patchify``; ``PatchEmbed`` in ``models.vit`` projects the same patches channel-major, as a
Conv2d kernel does (``patch_vectors``).
"""

from __future__ import annotations

import torch


def patchify(images: torch.Tensor, patch_size: int) -> torch.Tensor:
    """(N, C, H, W) -> (N, L, p²·C), pixel-major within a patch (p, p, C)."""
    n, c, h, w = images.shape
    p = patch_size
    x = images.reshape(n, c, h // p, p, w // p, p)
    return torch.einsum("nchpwq->nhwpqc", x).reshape(n, (h // p) * (w // p), p * p * c)


def unpatchify(patches: torch.Tensor, patch_size: int, height: int, width: int) -> torch.Tensor:
    """(N, L, p²·C) -> (N, C, H, W), the inverse of ``patchify``."""
    n, p = patches.shape[0], patch_size
    channels = patches.shape[-1] // (p * p)
    x = patches.reshape(n, height // p, width // p, p, p, channels)
    return torch.einsum("nhwpqc->nchpwq", x).reshape(n, channels, height, width)


def patch_vectors(images: torch.Tensor, patch_size: int) -> torch.Tensor:
    """(N, C, H, W) -> (N, L, C·p²), channel-major within a patch (the layout of a Conv2d kernel)."""
    n, c, h, w = images.shape
    p = patch_size
    x = images.reshape(n, c, h // p, p, w // p, p).permute(0, 2, 4, 1, 3, 5)
    return x.reshape(n, (h // p) * (w // p), c * p * p)


def patch_validity(valid: torch.Tensor, patch_size: int) -> torch.Tensor:
    """Per-pixel validity (N, H, W) bool -> (N, L, p²) float, pixel-major like ``patchify``."""
    return patchify(valid[:, None].float(), patch_size)


def take_tokens(tokens: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
    """The tokens ``ids`` of each sample: (N, L, K) and (N, L_sel) -> (N, L_sel, K)."""
    return torch.gather(tokens, 1, ids[..., None].expand(-1, -1, tokens.shape[-1]))


def tokens_to_grid(tokens: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
    """Patch tokens (N, h·w, D) in row-major order -> feature maps (N, D, h, w) for dense heads."""
    n, _, d = tokens.shape
    return tokens.transpose(1, 2).reshape(n, d, *grid)
