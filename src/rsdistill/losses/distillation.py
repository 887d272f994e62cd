"""Logit distillation (Hinton et al., 2015) with the ramped weight of BLM-KD.

L = (1 − λ_t)·CE(y, z_S) + λ_t·T²·KL(softmax(z_T/T) ‖ softmax(z_S/T)),  λ_t = min(t / T_warmup, 1).
The T² factor keeps the soft-target gradients on the scale of the hard-label ones.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def logit_kd_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """T²·KL(softmax(z_T/T) ‖ softmax(z_S/T)), averaged over the batch. Logits: (N, K)."""
    return temperature**2 * F.kl_div(
        F.log_softmax(student_logits / temperature, dim=1),
        F.log_softmax(teacher_logits / temperature, dim=1),
        log_target=True,
        reduction="batchmean",
    )


def ramped_weight(progress: float, warmup: float) -> float:
    """λ_t = min(t / T_warmup, 1); ``progress`` and ``warmup`` in the same unit (epochs here)."""
    return 1.0 if warmup <= 0 else min(progress / warmup, 1.0)


def distillation_loss(student_logits, teacher_logits, targets, temperature: float, weight: float) -> tuple[torch.Tensor, dict]:
    """The BLM-KD objective and its parts (for logging)."""
    ce = F.cross_entropy(student_logits, targets)
    kd = logit_kd_loss(student_logits, teacher_logits, temperature)
    return (1 - weight) * ce + weight * kd, {"ce": ce.detach(), "kd": kd.detach(), "kd_weight": weight}
