"""A pretrained encoder (MAE, HyperKD student, Galileo) as the backbone of pixel classification.

The classifier feeds it patches already prepared with the encoder's own ``Preprocessing`` (its kept
bands and pretraining statistics: ``PixelClassifier`` with ``arch: encoder``). Patches whose side is
not a multiple of the encoder's patch size are padded with 0, the band mean after normalisation.
The logits come from the feature of the encoder patch that contains the centre pixel (as in the
linear probe); with Galileo at patch size 1 that is the centre pixel's own token, seen in the
context of the whole patch. A frozen encoder's features are memoised per distinct patch, in one
memo per process for every frozen encoder of the same weights (``feature_memo.shared_memo``): a
frozen teacher is asked for the same pixels every epoch, seed and fold.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from rsdistill.models.feature_memo import FeatureMemo, encoder_key, fingerprint, shared_memo


class EncoderPixelClassifier(nn.Module):
    """(N, C, p, p) normalised encoder inputs -> (N, K) logits."""

    def __init__(self, encoder: nn.Module, num_classes: int, freeze: bool = False):
        super().__init__()
        self.encoder = encoder
        self.encoder.requires_grad_(not freeze)
        self.head = nn.Linear(self.encoder.embed_dim, num_classes)
        self.frozen = freeze
        self._fingerprint = fingerprint(self.encoder) if freeze else None
        self.register_load_state_dict_post_hook(self._new_weights)

    @staticmethod
    def _new_weights(module, incompatible_keys) -> None:
        """New encoder weights: another memo (the memoised features belong to the old weights)."""
        if module.frozen:
            module._fingerprint = fingerprint(module.encoder)

    @property
    def memo(self) -> FeatureMemo | None:
        """The memo of this encoder's features (shared with every frozen encoder of the same
        weights and settings in the process); None when the encoder trains."""
        return shared_memo(encoder_key(self.encoder, self._fingerprint)) if self.frozen else None

    def centre_features(self, x: torch.Tensor) -> torch.Tensor:
        """(N, C, p, p) -> (N, D): the encoder's feature of the patch that holds the centre pixel."""
        size, step = x.shape[-1], self.encoder.patch_size
        x = F.pad(x, (0, (-size) % step, 0, (-size) % step))
        features = self.encoder.forward_features(x)[0]  # (N, D, h, w)
        centre = (size // 2) // step
        return features[:, :, centre, centre]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        exporting = torch.jit.is_tracing() or torch.onnx.is_in_onnx_export()  # a graph must hold the encoder, not a lookup
        return self.head(self.centre_features(x) if not self.frozen or exporting else self.memo(x, self.centre_features))
