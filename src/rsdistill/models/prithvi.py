"""Prithvi-EO-1.0 checkpoints (official layout) as a ``ViTEncoder`` teacher.

The official ``Prithvi_100M.pt`` is a flat state dict of a 3-D MAE over (time, H, W):
``patch_embed.proj.weight`` (768, 6, 1, 16, 16) is a Conv3d with a tubelet of one frame,
``pos_embed`` (1, 1 + 3·14·14, 768) is a fixed 3-D sin-cos code for three frames, then
``cls_token``, ``blocks.N.*`` and ``norm.*`` (timm names, as ours), and the decoder keys
(``mask_token``, ``decoder_*``), which a teacher does not need. One frame is used: the Conv3d
kernel loses its time axis and the position code is regenerated for time 0 (``position_style
="prithvi"``); the checkpoint's first-frame code is compared with it and the difference reported.

Input: the six HLS bands Blue, Green, Red, NIR-narrow, SWIR1, SWIR2 as reflectance × 10000,
normalised with ``PRITHVI_MEAN``/``PRITHVI_STD`` (the model's config.yaml).

Pickled files are read by ``models.state_dicts.read_state_dict`` (``weights_only=True``).
"""

from __future__ import annotations

import re

import torch

from rsdistill.errors import InputError
from rsdistill.models.state_dicts import check_keys, read_state_dict
from rsdistill.models.vit import ViTEncoder
from rsdistill.preprocessing import Preprocessing

PRITHVI_MEAN = [775.2290211032589, 1080.992780391705, 1228.5855250417867, 2497.2022620507532, 2204.2139147975554, 1610.8324823273745]
PRITHVI_STD = [1281.526139861424, 1270.0297974547493, 1399.4802505642526, 1368.3446143747644, 1291.6764008585435, 1154.505683480695]
DECODER_KEYS = re.compile(r"^(mask_token|decoder_)")
_BLOCK = re.compile(r"^blocks\.(\d+)\.")


def load_prithvi(path, num_heads: int | None = None, img_size: int = 224, trust_pickle: bool = False) -> tuple[ViTEncoder, dict]:
    """Prithvi encoder for one time step, and a card (format, preprocessing, load report).

    ``num_heads`` is not stored in the weights; default ``embed_dim // 64`` (12 for Prithvi-100M).
    Raises ``InputError`` on missing keys or a shape mismatch (naming the key, both shapes).
    """
    state = read_state_dict(path, trust_pickle)
    patch = state.get("patch_embed.proj.weight")
    if patch is None or patch.ndim != 5:
        found = None if patch is None else tuple(patch.shape)
        raise InputError(f"{path}: not a Prithvi checkpoint: patch_embed.proj.weight should be (D, bands, frames, p, p), found {found}")
    dim, bands, tubelet, patch_size = patch.shape[0], patch.shape[1], patch.shape[2], patch.shape[3]
    if tubelet != 1:
        raise InputError(f"{path}: tubelet size {tubelet}; only one-frame tubelets map to a 2-D encoder")
    depth = 1 + max((int(m.group(1)) for k in state if (m := _BLOCK.match(k))), default=-1)
    if depth == 0:
        raise InputError(f"{path}: no encoder blocks (blocks.N.*) found")
    encoder = ViTEncoder(bands, img_size, patch_size, dim, depth, num_heads or dim // 64, position_style="prithvi")
    expected = encoder.state_dict()
    mapped = {k: v for k, v in state.items() if k in expected and k != "pos_embed"}
    mapped["patch_embed.proj.weight"] = patch[:, :, 0]
    mapped["pos_embed"] = expected["pos_embed"]
    check_keys(path, mapped, expected)
    encoder.load_state_dict(mapped)
    encoder.requires_grad_(False)
    unused = sorted(k for k in state if k not in expected)
    report = {
        "decoder_keys_unused": sum(bool(DECODER_KEYS.match(k)) for k in unused),
        "unmapped_keys": [k for k in unused if not DECODER_KEYS.match(k)],
        "pos_embed_max_difference": _position_difference(state.get("pos_embed"), expected["pos_embed"]),
    }
    if bands != len(PRITHVI_MEAN):
        raise InputError(f"{path}: {bands} input bands; Prithvi-EO-1.0's normalisation is known for its {len(PRITHVI_MEAN)} HLS bands only")
    preprocessing = Preprocessing.create(bands, PRITHVI_MEAN, PRITHVI_STD, sensor="hls")
    return encoder, {"format": "prithvi", "preprocessing": preprocessing.to_dict(), "load_report": report}


def _position_difference(checkpoint: torch.Tensor | None, regenerated: torch.Tensor) -> float | None:
    """Largest |difference| between the checkpoint's first-frame code and the regenerated one."""
    if checkpoint is None or checkpoint.shape[-1] != regenerated.shape[-1] or checkpoint.shape[1] < regenerated.shape[1]:
        return None
    return float((checkpoint[0, : regenerated.shape[1]].float() - regenerated[0]).abs().max())
