"""Patches centred on labelled pixels, for pixel classification (BLM-KD preprocessing).

Each scene is reflect-padded once by r = (p - 1) / 2, so a patch is a slice of the padded cube:
pixels labelled 0 are never centres but do appear as context, and border pixels get mirrored
context (BLM-KD, Sec. III-A).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from rsdistill.errors import InputError
from rsdistill.io.scene import Scene


def check_patch_size(patch_size: int, scenes: list[Scene]) -> None:
    if patch_size < 1 or patch_size % 2 == 0:
        raise InputError(f"patch size must be odd (a centre pixel), got {patch_size}")
    for scene in scenes:
        if patch_size > min(scene.shape[:2]):
            raise InputError(f"patch size {patch_size} is larger than scene {scene.path} ({scene.shape[0]}×{scene.shape[1]})")


def padded_cube(scene: Scene, patch_size: int) -> torch.Tensor:
    """(B, H + p - 1, W + p - 1) float32, reflect-padded."""
    radius = patch_size // 2
    cube = torch.from_numpy(scene.cube).permute(2, 0, 1)
    return F.pad(cube.unsqueeze(0), (radius,) * 4, mode="reflect").squeeze(0) if radius else cube


class PixelPatches(Dataset):
    """Patches at ``coords`` (N, 3) = (scene, row, col) with class indices ``targets`` (N,).

    Items: {"image": (B, p, p) float32 raw values, "label": int64 class index}.
    """

    def __init__(self, padded: list[torch.Tensor], coords: np.ndarray, targets: np.ndarray, patch_size: int):
        self.padded, self.patch_size = padded, patch_size
        self.coords = torch.as_tensor(coords, dtype=torch.long)
        self.targets = torch.as_tensor(targets, dtype=torch.long)

    def __len__(self) -> int:
        return self.coords.shape[0]

    def __getitem__(self, index: int) -> dict:
        scene, row, col = self.coords[index].tolist()
        image = self.padded[scene][:, row:row + self.patch_size, col:col + self.patch_size]
        return {"image": image, "label": self.targets[index]}


def channels_last_patches(padded: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor, patch_size: int) -> torch.Tensor:
    """(N, C, p, p) patches centred at (rows, cols) of a padded (H, W, C) image, in channels-last
    memory (a gather of whole pixels: CPU convolutions run several times faster on this layout
    than on the strided view ``all_pixel_patches`` gives)."""
    offsets = torch.arange(patch_size)
    r = (rows[:, None] + offsets)[:, :, None]  # (N, p, 1)
    c = (cols[:, None] + offsets)[:, None, :]  # (N, 1, p)
    return padded[r, c].permute(0, 3, 1, 2)  # (N, p, p, C) -> (N, C, p, p), channels-last strides


def all_pixel_patches(padded: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor, patch_size: int) -> torch.Tensor:
    """(N, B, p, p) patches centred at (rows, cols) of one padded scene, gathered without a Python loop."""
    offsets = torch.arange(patch_size)
    r = (rows[:, None] + offsets)[:, :, None]  # (N, p, 1)
    c = (cols[:, None] + offsets)[:, None, :]  # (N, 1, p)
    return padded[:, r, c].permute(1, 0, 2, 3)  # (B, N, p, p) -> (N, B, p, p)
