"""Teacher→student logit distillation (BLM-KD, IEEE TGRS 63, 2025; Hinton et al., 2015).

L = (1 − λ_t)·CE(y, z_S) + λ_t·T²·KL(softmax(z_T/T) ‖ softmax(z_S/T)),
λ_t = λ_max · min(t / T_warmup, 1), with t in epochs (``losses.distillation``). BLM-KD takes
λ_max = 1, so after the warm-up the labels no longer enter the loss; λ_max < 1 keeps them.

The teacher is one classifier or an ensemble (``EnsembleTeacher``: the mean of its members' logits).
"""

from __future__ import annotations

import torch
from torch import nn

from rsdistill.distill.teacher import Distiller
from rsdistill.losses.distillation import distillation_loss, ramped_weight


class EnsembleTeacher(nn.Module):
    """Classifiers of the same classes and bands as one teacher: raw patches (N, B, p, p) -> the
    mean of their logits (N, K)."""

    def __init__(self, members: list[nn.Module]):
        super().__init__()
        self.members = nn.ModuleList(members)

    def forward(self, patches: torch.Tensor) -> torch.Tensor:
        return torch.stack([member(patches) for member in self.members]).mean(dim=0)


class LogitDistiller(Distiller):
    """A frozen classifier teacher (raw patches -> logits) and the ramped KD objective."""

    def __init__(self, teacher: nn.Module, temperature: float, warmup_epochs: float, max_weight: float = 1.0):
        super().__init__(teacher)
        self.temperature, self.warmup_epochs, self.max_weight = temperature, warmup_epochs, max_weight

    def forward(self, student_logits: torch.Tensor, patches: torch.Tensor, targets: torch.Tensor, progress: float,
                unlabelled_logits: torch.Tensor | None = None, unlabelled: torch.Tensor | None = None):
        """student_logits (N, K); patches (N, B, p, p) raw, as the student saw them; targets (N,);
        progress in epochs; optionally the student's logits (M, K) of ``unlabelled`` patches
        (M, B, p, p), which enter the KD term only. Returns the loss and its parts for logging."""
        with torch.no_grad():
            teacher_logits = self.teacher(patches)
            unlabelled_teacher = None if unlabelled is None else self.teacher(unlabelled)
        weight = self.max_weight * ramped_weight(progress, self.warmup_epochs)
        return distillation_loss(student_logits, teacher_logits, targets, self.temperature, weight, unlabelled_logits, unlabelled_teacher)
