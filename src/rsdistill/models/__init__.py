"""Networks and the encoder registry. Every model says its tensor shapes in its docstrings."""

from rsdistill.models.registry import PretrainedEncoder, build_encoder, load_encoder, save_encoder
from rsdistill.models.vit import ViTEncoder

__all__ = ["PretrainedEncoder", "ViTEncoder", "build_encoder", "load_encoder", "save_encoder"]
