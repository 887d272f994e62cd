"""Distillation losses.

Logits (Hinton et al., 2015) with the ramped weight of BLM-KD:
L = (1 − λ_t)·CE(y, z_S) + λ_t·T²·KL(softmax(z_T/T) ‖ softmax(z_S/T)),  λ_t = min(t / T_warmup, 1).
The T² factor keeps the soft-target gradients on the scale of the hard-label ones.

Features (HyperKD, arXiv 2508.09453): a projected student token against the teacher's token at the
same place, by KL over channels (softmax with temperature), MSE or cosine distance.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def logit_kd_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """T²·KL(softmax(z_T/T) ‖ softmax(z_S/T)), averaged over the batch. Logits: (N, K); computed in
    float32 whatever the autocast dtype (a KL of soft targets is lost in bf16)."""
    student_logits, teacher_logits = student_logits.float(), teacher_logits.float()
    return temperature**2 * F.kl_div(
        F.log_softmax(student_logits / temperature, dim=1),
        F.log_softmax(teacher_logits / temperature, dim=1),
        log_target=True,
        reduction="batchmean",
    )


FEATURE_LOSSES = ("kl", "mse", "cosine")


def feature_kd_loss(student: torch.Tensor, teacher: torch.Tensor, kind: str = "kl", temperature: float = 1.0) -> torch.Tensor:
    """Mean over tokens of the distance between student and teacher features, both (N, L, D).

    ``kl``: T²·KL(softmax(t/T) ‖ softmax(s/T)) over the D channels of each token (HyperKD).
    ``mse``: squared error against the teacher token layer-normalised without affine parameters,
    so the target's scale is the same whatever the teacher layer. ``cosine``: 1 − cos(s, t).
    Computed in float32 whatever the autocast dtype.
    """
    student, teacher = student.float(), teacher.float()
    if kind == "kl":
        kl = F.kl_div(F.log_softmax(student / temperature, -1), F.log_softmax(teacher / temperature, -1), log_target=True, reduction="none")
        return temperature**2 * kl.sum(-1).mean()
    if kind == "mse":
        return F.mse_loss(student, F.layer_norm(teacher, teacher.shape[-1:]))
    if kind == "cosine":
        return (1 - F.cosine_similarity(student, teacher, dim=-1)).mean()
    raise ValueError(f"unknown feature loss {kind!r}; choose one of {', '.join(FEATURE_LOSSES)}")


def ramped_weight(progress: float, warmup: float) -> float:
    """λ_t = min(t / T_warmup, 1); ``progress`` and ``warmup`` in the same unit (epochs here)."""
    return 1.0 if warmup <= 0 else min(progress / warmup, 1.0)


def distillation_loss(student_logits, teacher_logits, targets, temperature: float, weight: float,
                      unlabelled_student=None, unlabelled_teacher=None) -> tuple[torch.Tensor, dict]:
    """The BLM-KD objective and its parts (for logging), in float32. With the logits of unlabelled
    pixels (N_u, K), the KD term averages over labelled and unlabelled pixels alike; CE stays on
    the labelled ones."""
    ce = F.cross_entropy(student_logits.float(), targets)
    if unlabelled_student is not None:
        student_logits, teacher_logits = torch.cat([student_logits, unlabelled_student]), torch.cat([teacher_logits, unlabelled_teacher])
    kd = logit_kd_loss(student_logits, teacher_logits, temperature)
    return (1 - weight) * ce + weight * kd, {"ce": ce.detach(), "kd": kd.detach(), "kd_weight": weight}
