"""Reconstruction losses of the masked autoencoders; weights come from the recipe YAML.

All terms take patchified tensors (N, L, p²·C), the indices of the masked patches (N, L_mask) and
a per-pixel validity (N, L, p²) so nodata pixels never count. Terms:

- ``mse`` and ``huber`` on the masked patches (MAE; KARMA uses Huber for robustness);
- ``ssim``: 1 − SSIM of the full reconstructed tile, visible patches taken from the input
  (HyperKD: λ·(MSE + (1 − SSIM)));
- ``sam``: spectral angle between reconstructed and true spectra of masked pixels, in the data's
  units (normalisation undone by the model's ``Preprocessing``), since angles are not preserved by
  per-band z-scores (KARMA);
- ``physics``: the linear-mixing reconstruction E·a against the target on every valid pixel, plus
  its agreement with the pixel head on masked pixels (KARMA's physics-consistency term);
- ``volume``: the log-volume of the endmember simplex (``simplex_log_volume``), a minimum-volume
  prior against a simplex that grows past the data (Miao & Qi, MVC-NMF, IEEE TGRS 45(3), 2007, Eq. 8,
  in the log-determinant form of Fu et al., IEEE TSP 64(19), 2016). Unbounded below, it can shrink
  a simplex whose endmembers learn fast until it degenerates; ``volume_floor`` δ bounds it, as the
  τ of Fu et al.'s log det(DᵀD + τI) does: edges shorter than √δ per band
  (in standardised units) no longer lower the term.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torchmetrics.functional.image import structural_similarity_index_measure

from rsdistill.errors import InputError
from rsdistill.tokens import take_tokens, unpatchify

LOSS_TERMS = ("mse", "huber", "ssim", "sam", "physics", "volume")


def _masked_mean(per_pixel: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    return (per_pixel * weight).sum() / weight.sum().clamp_min(1.0)


def spectral_angle(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Angle (radians) between spectra along the last axis."""
    cosine = F.cosine_similarity(a, b, dim=-1, eps=1e-8).clamp(-1 + 1e-7, 1 - 1e-7)
    return torch.acos(cosine)


def simplex_log_volume(endmembers: torch.Tensor, floor: float = 0.0, eps: float = 1e-6) -> torch.Tensor:
    """½·log det(DᵀD + (ε + δ·C)·I) of endmembers (C, M), D = [e₂ − e₁, …, e_M − e₁] (C, M−1): the
    log of the (M−1)-volume of their simplex up to a constant, defined for any band count C ≥ M − 1.
    ``floor`` δ ≥ 0, a squared edge length per band: the term is bounded below by ½·(M−1)·log(δ·C)."""
    edges = (endmembers[:, 1:] - endmembers[:, :1]).float()
    gram = edges.T @ edges
    return 0.5 * torch.logdet(gram + (eps + floor * edges.shape[0]) * torch.eye(gram.shape[0], device=gram.device))


def check_loss_weights(weights: dict[str, float]) -> dict[str, float]:
    """The non-zero weights of known terms; an unknown term is an error naming the known ones."""
    unknown = set(weights) - set(LOSS_TERMS)
    if unknown:
        raise InputError(f"unknown loss terms {sorted(unknown)}; known: {', '.join(LOSS_TERMS)}")
    return {k: float(v) for k, v in weights.items() if v}


def reconstruction_terms(
    weights: dict[str, float], outputs: dict, target: torch.Tensor, valid: torch.Tensor, patch_size: int,
    tile_shape: tuple[int, int], denormalise: Callable[[torch.Tensor], torch.Tensor], huber_delta: float = 1.0,
    volume_floor: float = 0.0,
) -> dict[str, torch.Tensor]:
    """Weighted terms and "total", computed in float32 whatever the autocast dtype.

    outputs of ``MaskedAutoencoder`` (``pred_masked`` (N, L_mask, p²C) at ``ids_masked`` (N, L_mask),
    and ``mixture`` for the physics term); target (N, L, p²C) of tiles of ``tile_shape`` (H, W); valid (N, L, p²); ``denormalise``
    takes spectra (..., C) back to the data's units (for ``sam``); ``volume_floor``: δ of
    ``simplex_log_volume``.
    """
    ids, pred, target = outputs["ids_masked"], outputs["pred_masked"].float(), target.float()  # float32 under bf16 autocast: SSIM, angles
    spectra = lambda patches: patches.view(*patches.shape[:2], patch_size * patch_size, -1)  # noqa: E731 - (N, L, p², C)
    valid_masked = take_tokens(valid, ids)  # (N, L_mask, p²)
    pred_px, target_px = spectra(pred), spectra(take_tokens(target, ids))
    terms = {}
    if "mse" in weights:
        terms["mse"] = _masked_mean(F.mse_loss(pred_px, target_px, reduction="none").mean(-1), valid_masked)
    if "huber" in weights:
        huber = F.huber_loss(pred_px, target_px, reduction="none", delta=huber_delta).mean(-1)
        terms["huber"] = _masked_mean(huber, valid_masked)
    if "ssim" in weights:
        height, width = tile_shape
        composite = target.scatter(1, ids[..., None].expand_as(pred), pred)
        with torch.autocast(pred.device.type, enabled=False):  # its Gaussian window is a convolution, which autocast runs in bf16
            terms["ssim"] = 1 - structural_similarity_index_measure(
                unpatchify(composite, patch_size, height, width), unpatchify(target, patch_size, height, width),
                data_range=float(target.max() - target.min()) or 1.0,
            )
    if "sam" in weights:
        terms["sam"] = _masked_mean(spectral_angle(denormalise(pred_px), denormalise(target_px)), valid_masked)
    if "physics" in weights:
        if "mixture" not in outputs:
            raise InputError("loss term 'physics' needs the linear-mixing branch (set endmembers > 0)")
        mixture = outputs["mixture"].float()  # (N, L, p²C)
        # E·a against the target on every valid pixel: on visible patches the branch unmixes
        # pixels the encoder saw (what ``unmix`` does at inference), on masked ones it predicts
        # them; and agreement with the pixel head where that head is trained (masked patches).
        to_target = _masked_mean(F.mse_loss(spectra(mixture), spectra(target), reduction="none").mean(-1), valid)
        mixture_masked = spectra(take_tokens(mixture, ids))
        to_pixel_head = _masked_mean(F.mse_loss(mixture_masked, pred_px.detach(), reduction="none").mean(-1), valid_masked)
        terms["physics"] = to_target + to_pixel_head
    if "volume" in weights:
        if "endmembers" not in outputs:
            raise InputError("loss term 'volume' needs the linear-mixing branch (set endmembers > 0)")
        terms["volume"] = simplex_log_volume(outputs["endmembers"], volume_floor)
    terms["total"] = sum(weights[k] * v for k, v in terms.items())
    return terms
