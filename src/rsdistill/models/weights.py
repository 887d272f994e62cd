"""Encoders on disk: safetensors weights + a JSON card (bands, wavelengths, normalisation, recipe,
metrics), written atomically; loaded back as a ``ViTEncoder`` backbone for later tasks.

Pickled checkpoints are never unpickled here: ``.ckpt`` files are read with ``weights_only=True``.
"""

from __future__ import annotations

import json
from pathlib import Path

from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from rsdistill.errors import InputError
from rsdistill.files import atomic_write, write_json
from rsdistill.models.vit import ViTEncoder

CARD_SUFFIX = ".json"


def save_encoder(encoder: ViTEncoder, path, card: dict) -> tuple[Path, Path]:
    """Write ``path`` (.safetensors) and ``path`` with .json (the card). Returns both paths."""
    path = Path(path)
    tensors = {k: v.detach().contiguous().cpu() for k, v in encoder.state_dict().items()}
    architecture = {
        "bands": encoder.bands, "patch_size": encoder.patch_size, "embed_dim": encoder.embed_dim, "depth": encoder.depth,
        "num_heads": encoder.blocks[0].attn.heads, "mlp_ratio": encoder.blocks[0].mlp.fc1.out_features / encoder.embed_dim,
        "img_size": int(round((encoder.pos_embed.shape[1] - 1) ** 0.5)) * encoder.patch_size,
        "position_style": encoder.position_style,
    }
    full_card = {"format": "rsdistill-encoder/1", "architecture": architecture, **card}
    atomic_write(path, lambda tmp: save_file(tensors, tmp))
    card_path = write_json(path.with_suffix(CARD_SUFFIX), full_card)
    return path, card_path


def load_encoder(path) -> tuple[ViTEncoder, dict]:
    """A pretrained encoder and its card. Raises ``InputError`` naming missing/mismatched keys."""
    path = Path(path)
    card_path = path.with_suffix(CARD_SUFFIX)
    if not path.is_file() or not card_path.is_file():
        raise InputError(f"{path}: an encoder needs both {path.name} and {card_path.name}")
    card = json.loads(card_path.read_text())
    encoder = ViTEncoder(**card["architecture"])
    try:
        tensors = load_file(path)
    except (SafetensorError, OSError) as error:
        raise InputError(f"{path}: not a readable safetensors file ({error})") from None
    expected = encoder.state_dict()
    missing, unexpected = sorted(set(expected) - set(tensors)), sorted(set(tensors) - set(expected))
    wrong = [f"{k} {tuple(tensors[k].shape)} != {tuple(v.shape)}" for k, v in expected.items() if k in tensors and tensors[k].shape != v.shape]
    if missing or unexpected or wrong:
        raise InputError(f"{path}: missing keys {missing[:5]}, unexpected keys {unexpected[:5]}, shape mismatches {wrong[:5]}")
    encoder.load_state_dict(tensors)
    return encoder, card
