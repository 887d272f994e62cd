"""Other people's ViT checkpoints as a ``ViTEncoder``: Prithvi-EO-1.0 and the MAE/timm layout.

Both are flat state dicts with timm names (``cls_token``, ``pos_embed``, ``patch_embed.proj``,
``blocks.N.{norm1,attn.qkv,attn.proj,norm2,mlp.fc1,mlp.fc2}``, ``norm``), as ``ViTEncoder``, plus
MAE decoder keys (``mask_token``, ``decoder_*``) that an encoder does not need. They differ in the
patch embedding and what the input is:

- **Prithvi-EO-1.0** (``Prithvi_100M.pt``), a 3-D MAE over (time, H, W): ``patch_embed.proj.weight``
  (768, 6, 1, 16, 16) is a Conv3d with a tubelet of one frame, ``pos_embed`` (1, 1 + 3·14·14, 768)
  a fixed 3-D sin-cos code for three frames. One frame is used: the Conv3d kernel loses its time
  axis and the position code is regenerated for time 0 (``position_style="prithvi"``). Input: the
  six HLS bands Blue, Green, Red, NIR-narrow, SWIR1, SWIR2 as reflectance × 10000, normalised with
  ``PRITHVI_MEAN``/``PRITHVI_STD`` (the model's config.yaml).
- **MAE/timm** (facebookresearch/mae ``mae_pretrain_vit_*.pth``, under a ``model`` key): a Conv2d
  patch embedding (D, 3, p, p) and MAE's fixed 2-D sin-cos ``pos_embed`` (1, 1 + L, D). Input: RGB
  on 0–255, scaled to 0–1 and normalised with the ImageNet mean/std, as MAE was trained.

In both, the checkpoint's position code is compared with the regenerated one (the difference is in
the load report, with the keys that were not used); a missing key or a shape mismatch is an error
naming it. Pickled files are read by ``models.state_dicts.read_state_dict`` (``weights_only=True``).
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
IMAGENET_MEAN = [0.485, 0.456, 0.406]
IMAGENET_STD = [0.229, 0.224, 0.225]
DECODER_KEYS = re.compile(r"^(mask_token|decoder_)")
_BLOCK = re.compile(r"^blocks\.(\d+)\.")


def load_vit_checkpoint(path, num_heads: int | None = None, img_size: int | None = None, trust_pickle: bool = False,
                        state: dict | None = None) -> tuple[ViTEncoder, dict]:
    """An encoder and a card (format, preprocessing, load report) from a Prithvi or MAE/timm checkpoint.

    ``num_heads`` is not stored in the weights; default ``embed_dim // 64`` (12 for ViT-B and
    Prithvi-100M). ``img_size`` (the tile the fixed position code is cached for; other sizes work
    too): default that of a square MAE position code, 224 for Prithvi (whose code spans 3 frames).
    Raises ``InputError`` on missing keys or a shape mismatch (naming the key, both shapes).
    """
    state = read_state_dict(path, trust_pickle) if state is None else state
    patch = state.get("patch_embed.proj.weight")
    if patch is None or patch.ndim not in (4, 5):
        found = None if patch is None else tuple(patch.shape)
        raise InputError(f"{path}: not a ViT checkpoint: patch_embed.proj.weight should be (D, bands, p, p) or (D, bands, frames, p, p), found {found}")
    prithvi = patch.ndim == 5
    if prithvi and patch.shape[2] != 1:
        raise InputError(f"{path}: tubelet size {patch.shape[2]}; only one-frame tubelets map to a 2-D encoder")
    dim, bands, patch_size = patch.shape[0], patch.shape[1], patch.shape[-1]
    depth = 1 + max((int(m.group(1)) for k in state if (m := _BLOCK.match(k))), default=-1)
    if depth == 0:
        raise InputError(f"{path}: no encoder blocks (blocks.N.*) found")
    if img_size is None:
        side = int(round((state["pos_embed"].shape[1] - 1) ** 0.5)) if "pos_embed" in state and not prithvi else 0
        img_size = side * patch_size if side and side**2 == state["pos_embed"].shape[1] - 1 else 224
    encoder = ViTEncoder(bands, img_size, patch_size, dim, depth, num_heads or dim // 64, position_style="prithvi" if prithvi else "mae")
    expected = encoder.state_dict()
    mapped = {k: v for k, v in state.items() if k in expected and k != "pos_embed"}
    mapped["patch_embed.proj.weight"] = patch[:, :, 0] if prithvi else patch
    mapped["pos_embed"] = expected["pos_embed"]  # fixed sin-cos, regenerated for img_size
    check_keys(path, mapped, expected)
    encoder.load_state_dict(mapped)
    encoder.requires_grad_(False)
    unused = sorted(k for k in state if k not in expected)
    report = {
        "decoder_keys_unused": sum(bool(DECODER_KEYS.match(k)) for k in unused),
        "unmapped_keys": [k for k in unused if not DECODER_KEYS.match(k)],
        "pos_embed_max_difference": _position_difference(state.get("pos_embed"), expected["pos_embed"]),
    }
    if prithvi:
        if bands != len(PRITHVI_MEAN):
            raise InputError(f"{path}: {bands} input bands; Prithvi-EO-1.0's normalisation is known for its {len(PRITHVI_MEAN)} HLS bands only")
        preprocessing = Preprocessing.create(bands, PRITHVI_MEAN, PRITHVI_STD, sensor="hls")
    elif bands == len(IMAGENET_MEAN):
        preprocessing = Preprocessing.create(bands, IMAGENET_MEAN, IMAGENET_STD, scale=1 / 255, sensor="rgb")
    else:
        raise InputError(f"{path}: a {bands}-band MAE/timm checkpoint carries no normalisation; save it as an rsdistill encoder with its Preprocessing")
    return encoder, {"format": "prithvi" if prithvi else "mae", "preprocessing": preprocessing.to_dict(), "load_report": report}


def _position_difference(checkpoint: torch.Tensor | None, regenerated: torch.Tensor) -> float | None:
    """Largest |difference| between the checkpoint's (first-frame) code and the regenerated one."""
    if checkpoint is None or checkpoint.shape[-1] != regenerated.shape[-1] or checkpoint.shape[1] < regenerated.shape[1]:
        return None
    return float((checkpoint[0, : regenerated.shape[1]].float() - regenerated[0]).abs().max())
