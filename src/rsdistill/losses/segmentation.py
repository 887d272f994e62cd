"""Segmentation losses for rare classes (as torchgeo's segmentation task offers them): class-
weighted cross-entropy, focal loss and soft Dice, over logits (N, K, H, W) and masks (N, H, W)
whose ``IGNORE_INDEX`` pixels count nowhere.

- ``median_frequency_weights``: w_k = median(f) / f_k over the classes' pixel frequencies f in the
  training masks (Eigen & Fergus 2015, "median frequency balancing"); a class absent from them
  gets the largest weight of the others.
- ``focal_loss``: Lin et al. 2017 (RetinaNet), eq. 5, FL(p_t) = −α_t (1 − p_t)^γ log p_t, with the
  class weights as α_t; γ = 0 is the weighted cross-entropy.
- ``dice_loss``: 1 − mean over classes of (2 Σ p·g + s) / (Σ p + Σ g + s), softmax probabilities p
  against one-hot g over the labelled pixels of the batch (the soft Dice of Milletari et al. 2016
  without the squares, as segmentation_models_pytorch computes it); every class counts, and s = 1
  gives a class absent from both the batch's masks and its predictions a Dice of about 1.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from rsdistill.errors import InputError
from rsdistill.io.masks import IGNORE_INDEX

LOSSES = ("ce", "focal", "dice", "ce+dice")


def median_frequency_weights(class_pixels: list[int]) -> list[float]:
    """(K,) weights from the training masks' pixel count per class (median frequency balancing)."""
    counts = np.asarray(class_pixels, dtype=float)
    if counts.sum() == 0:
        raise InputError("class_weights: frequency needs labelled training pixels; the training masks hold none")
    present = counts > 0
    weights = np.zeros_like(counts)
    weights[present] = np.median(counts[present]) / counts[present]
    weights[~present] = weights[present].max()
    return weights.tolist()


def focal_loss(logits: torch.Tensor, mask: torch.Tensor, weights: torch.Tensor | None, gamma: float) -> torch.Tensor:
    """Mean over the labelled pixels of −α_t (1 − p_t)^γ log p_t (logits (N, K, H, W), mask (N, H, W))."""
    labelled = mask != IGNORE_INDEX
    log_p = F.log_softmax(logits.float(), dim=1).permute(0, 2, 3, 1)[labelled]  # (P, K)
    target = mask[labelled]
    log_p_t = log_p.gather(1, target[:, None])[:, 0]
    alpha = weights[target] if weights is not None else torch.ones_like(log_p_t)
    terms = -alpha * (1 - log_p_t.exp()) ** gamma * log_p_t
    # as F.cross_entropy with weights: normalised by the weights of the pixels, so γ = 0 is that loss
    return terms.sum() / alpha.sum().clamp_min(1e-12)


def dice_loss(logits: torch.Tensor, mask: torch.Tensor, smooth: float = 1.0) -> torch.Tensor:
    """1 − the mean over the K classes of the soft Dice of the labelled pixels of the batch."""
    labelled = mask != IGNORE_INDEX
    p = F.softmax(logits.float(), dim=1).permute(0, 2, 3, 1)[labelled]  # (P, K)
    g = F.one_hot(mask[labelled], p.shape[1]).to(p.dtype)
    dice = (2 * (p * g).sum(0) + smooth) / (p.sum(0) + g.sum(0) + smooth)
    return 1 - dice.mean()


def _cross_entropy(logits: torch.Tensor, mask: torch.Tensor, weights: torch.Tensor | None) -> torch.Tensor:
    return F.cross_entropy(logits.float(), mask, weight=weights, ignore_index=IGNORE_INDEX)


def segmentation_loss(name: str, logits: torch.Tensor, mask: torch.Tensor, weights: torch.Tensor | None, gamma: float) -> dict[str, torch.Tensor]:
    """The loss ``name`` (one of ``LOSSES``: terms joined by ``+``) as its named terms, to be summed."""
    terms = {"ce": lambda: _cross_entropy(logits, mask, weights), "focal": lambda: focal_loss(logits, mask, weights, gamma),
             "dice": lambda: dice_loss(logits, mask)}
    return {term: terms[term]() for term in name.split("+")}
