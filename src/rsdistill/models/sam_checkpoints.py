"""Reading a SAM checkpoint (``sam_vit_b_01ec64.pth``, ``sam_vit_l_0b3195.pth``, ...) into ``SAMImageEncoder``.

- Tensors only (``read_state_dict``: ``weights_only=True``). The image encoder's keys are those
  under ``image_encoder.`` (an encoder-only state dict without the prefix is read too);
  ``prompt_encoder.*`` and ``mask_decoder.*`` are counted in the load report and skipped.
- The architecture is read from the shapes: width and bands from ``patch_embed.proj``, depth from
  the block indices, head width from ``rel_pos_h`` (heads = C / head_dim), the window from the
  windowed blocks' tables (2·window − 1 rows) and the global blocks from the tables sized to the
  whole grid. With ``variant`` (vit_b, vit_l, vit_h) the checkpoint must be that size.
- Strict on the backbone: a missing key or a shape mismatch is an error naming the key and both
  shapes; an unknown backbone key is an error too.
- Another input size than the checkpoint's (``img_size``): ``pos_embed`` is resized bicubically
  and the global blocks' relative-position tables linearly to 2·grid − 1 (SAM itself interpolates
  the tables on the fly; resizing them once keeps the module's shapes true to its input).
- Preprocessing: SAM's pixel mean/std on 0–255 RGB (they are buffers, not in the checkpoint).
"""

from __future__ import annotations

import re

import torch.nn.functional as F

from rsdistill.errors import InputError
from rsdistill.models.sam import SAM_MEAN, SAM_STD, VARIANTS, SAMImageEncoder
from rsdistill.models.state_dicts import load_strict
from rsdistill.preprocessing import Preprocessing

PREFIX = "image_encoder."
OTHER_PARTS = ("prompt_encoder.", "mask_decoder.")
_BLOCK = re.compile(r"^blocks\.(\d+)\.")


def is_sam_state(state: dict) -> bool:
    return any(k.startswith(PREFIX) for k in state) or "blocks.0.attn.rel_pos_h" in state


def sam_architecture(path, state: dict) -> dict:
    """The ``SAMImageEncoder`` arguments the shapes of an (unprefixed) encoder state dict imply."""
    patch = state.get("patch_embed.proj.weight")
    if patch is None or patch.ndim != 4 or "pos_embed" not in state:
        raise InputError(f"{path}: not a SAM image encoder: expected patch_embed.proj.weight (C, 3, p, p) and pos_embed (1, g, g, C)")
    dim, bands, patch_size = patch.shape[0], patch.shape[1], patch.shape[-1]
    depth = 1 + max((int(m.group(1)) for k in state if (m := _BLOCK.match(k))), default=-1)
    tables = {i: state.get(f"blocks.{i}.attn.rel_pos_h") for i in range(depth)}
    if depth == 0 or any(t is None for t in tables.values()):
        raise InputError(f"{path}: every SAM block needs attn.rel_pos_h; missing in blocks {[i for i, t in tables.items() if t is None]}")
    grid = state["pos_embed"].shape[1]
    lengths = {i: t.shape[0] for i, t in tables.items()}
    global_blocks = [i + 1 for i, n in lengths.items() if n == 2 * grid - 1]
    windowed = {n for i, n in lengths.items() if i + 1 not in global_blocks}
    if len(windowed) > 1:
        raise InputError(f"{path}: windowed blocks with different relative-position tables {sorted(windowed)}")
    head_dim = tables[0].shape[1]
    return {"bands": bands, "img_size": grid * patch_size, "patch_size": patch_size, "embed_dim": dim, "depth": depth,
            "num_heads": dim // head_dim, "window_size": (windowed.pop() + 1) // 2 if windowed else 14,
            "global_blocks": global_blocks, "out_chans": state["neck.0.weight"].shape[0] if "neck.0.weight" in state else 256}


def load_sam_checkpoint(path, state: dict, img_size: int | None = None, variant: str | None = None) -> tuple[SAMImageEncoder, dict]:
    """The image encoder of a SAM checkpoint's tensors ``state`` and its card (format, preprocessing, load report)."""
    encoder_state = {k.removeprefix(PREFIX): v for k, v in state.items() if k.startswith(PREFIX)} or dict(state)
    skipped = sum(k.startswith(OTHER_PARTS) for k in state)
    encoder_state = {k: v for k, v in encoder_state.items() if not k.startswith(OTHER_PARTS)}
    architecture = sam_architecture(path, encoder_state)
    if variant is not None:
        if variant not in VARIANTS:
            raise InputError(f"unknown SAM variant {variant!r}; known: {', '.join(VARIANTS)}")
        expected = VARIANTS[variant]
        found = {k: architecture[k] for k in expected}
        if found != expected:
            raise InputError(f"{path}: the checkpoint is a SAM encoder with {found}, but the config asks for {variant} {expected}")
    grid = architecture["img_size"] // architecture["patch_size"]
    resized = {}
    if img_size is not None and img_size != architecture["img_size"]:
        new_grid = img_size // architecture["patch_size"]
        encoder_state["pos_embed"] = F.interpolate(encoder_state["pos_embed"].permute(0, 3, 1, 2), size=(new_grid, new_grid),
                                                   mode="bicubic", align_corners=False).permute(0, 2, 3, 1)
        for block in architecture["global_blocks"]:
            for axis in ("h", "w"):
                key = f"blocks.{block - 1}.attn.rel_pos_{axis}"
                encoder_state[key] = F.interpolate(encoder_state[key].T[None], size=2 * new_grid - 1, mode="linear")[0].T
        resized = {"pos_embed": [grid, new_grid], "global_rel_pos": [2 * grid - 1, 2 * new_grid - 1]}
        architecture["img_size"] = img_size
    encoder = SAMImageEncoder(**architecture)
    load_strict(path, encoder, encoder_state, "a SAM image encoder")
    encoder.requires_grad_(False)
    if architecture["bands"] != len(SAM_MEAN):
        raise InputError(f"{path}: a {architecture['bands']}-band SAM encoder; SAM's normalisation is known for RGB only")
    preprocessing = Preprocessing.create(3, SAM_MEAN, SAM_STD, sensor="rgb")
    variant_name = next((name for name, v in VARIANTS.items() if all(architecture[k] == v[k] for k in v)), None)
    report = {"prompt_and_mask_decoder_keys_skipped": skipped, "resized": resized}
    return encoder, {"format": "sam", "variant": variant_name, "preprocessing": preprocessing.to_dict(), "load_report": report}
