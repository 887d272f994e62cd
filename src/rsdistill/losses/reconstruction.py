"""Reconstruction losses of the masked autoencoders; weights come from the recipe YAML.

All terms take patchified tensors (N, L, p²·C), the indices of the masked patches (N, L_mask) and
a per-pixel validity (N, L, p²) so nodata pixels never count. Terms:

- ``mse`` and ``huber`` on the masked patches (MAE; KARMA uses Huber for robustness);
- ``ssim``: 1 − SSIM of the full reconstructed tile, visible patches taken from the input
  (HyperKD: λ·(MSE + (1 − SSIM)));
- ``sam``: spectral angle between reconstructed and true spectra of masked pixels, in reflectance
  units (normalisation undone), since angles are not preserved by per-band z-scores (KARMA);
- ``physics``: the linear-mixing reconstruction E·a against the target on every valid pixel, plus
  its agreement with the pixel head on masked pixels (KARMA's physics-consistency term).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torchmetrics.functional.image import structural_similarity_index_measure

from rsdistill.errors import InputError
from rsdistill.models.vit import take_tokens

LOSS_TERMS = ("mse", "huber", "ssim", "sam", "physics")


def _masked_mean(per_pixel: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    return (per_pixel * weight).sum() / weight.sum().clamp_min(1.0)


def spectral_angle(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Angle (radians) between spectra along the last axis."""
    cosine = F.cosine_similarity(a, b, dim=-1, eps=1e-8).clamp(-1 + 1e-7, 1 - 1e-7)
    return torch.acos(cosine)


class ReconstructionLoss(torch.nn.Module):
    """Weighted sum of the terms above. ``weights`` e.g. {"mse": 1.0, "ssim": 1.0}."""

    def __init__(self, weights: dict[str, float], bands: int, band_mean=None, band_std=None, huber_delta: float = 1.0):
        super().__init__()
        unknown = set(weights) - set(LOSS_TERMS)
        if unknown:
            raise InputError(f"unknown loss terms {sorted(unknown)}; known: {', '.join(LOSS_TERMS)}")
        self.weights, self.bands, self.huber_delta = {k: float(v) for k, v in weights.items() if v}, bands, huber_delta
        self.register_buffer("band_mean", torch.as_tensor(band_mean if band_mean is not None else [0.0] * bands, dtype=torch.float32))
        self.register_buffer("band_std", torch.as_tensor(band_std if band_std is not None else [1.0] * bands, dtype=torch.float32))

    def _spectra(self, patches: torch.Tensor) -> torch.Tensor:
        """(N, L, p²C) -> (N, L, p², C)."""
        return patches.view(*patches.shape[:2], -1, self.bands)

    def forward(self, outputs: dict, target: torch.Tensor, valid: torch.Tensor, unpatchify) -> dict[str, torch.Tensor]:
        """outputs of ``MaskedAutoencoder`` (``pred_masked`` (N, L_mask, p²C) at ``ids_masked``
        (N, L_mask), and ``mixture`` for the physics term); target (N, L, p²C); valid (N, L, p²).
        Returns the weighted terms and "total"."""
        ids, pred = outputs["ids_masked"], outputs["pred_masked"]
        valid_masked = take_tokens(valid, ids)  # (N, L_mask, p²)
        pred_px, target_px = self._spectra(pred), self._spectra(take_tokens(target, ids))
        terms = {}
        if "mse" in self.weights:
            terms["mse"] = _masked_mean(F.mse_loss(pred_px, target_px, reduction="none").mean(-1), valid_masked)
        if "huber" in self.weights:
            huber = F.huber_loss(pred_px, target_px, reduction="none", delta=self.huber_delta).mean(-1)
            terms["huber"] = _masked_mean(huber, valid_masked)
        if "ssim" in self.weights:
            composite = target.scatter(1, ids[..., None].expand_as(pred), pred)
            terms["ssim"] = 1 - structural_similarity_index_measure(
                unpatchify(composite), unpatchify(target), data_range=float(target.max() - target.min()) or 1.0
            )
        if "sam" in self.weights:
            scale, shift = self.band_std, self.band_mean
            terms["sam"] = _masked_mean(spectral_angle(pred_px * scale + shift, target_px * scale + shift), valid_masked)
        if "physics" in self.weights:
            if "mixture" not in outputs:
                raise InputError("loss term 'physics' needs the linear-mixing branch (set endmembers > 0)")
            mixture = outputs["mixture"]  # (N, L, p²C)
            # E·a against the target on every valid pixel: on visible patches the branch unmixes
            # pixels the encoder saw (what ``unmix`` does at inference), on masked ones it predicts
            # them; and agreement with the pixel head where that head is trained (masked patches).
            to_target = _masked_mean(F.mse_loss(self._spectra(mixture), self._spectra(target), reduction="none").mean(-1), valid)
            mixture_masked = self._spectra(take_tokens(mixture, ids))
            to_pixel_head = _masked_mean(F.mse_loss(mixture_masked, pred_px.detach(), reduction="none").mean(-1), valid_masked)
            terms["physics"] = to_target + to_pixel_head
        terms["total"] = sum(self.weights[k] * v for k, v in terms.items())
        return terms
