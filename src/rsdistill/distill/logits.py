"""Teacher→student logit distillation (BLM-KD, IEEE TGRS 63, 2025; Hinton et al., 2015).

L = (1 − λ_t)·CE(y, z_S) + λ_t·T²·KL(softmax(z_T/T) ‖ softmax(z_S/T)), λ_t = min(t / T_warmup, 1),
with t in epochs (``losses.distillation``).
"""

from __future__ import annotations

import torch
from torch import nn

from rsdistill.distill.teacher import Distiller
from rsdistill.losses.distillation import distillation_loss, ramped_weight


class LogitDistiller(Distiller):
    """A frozen classifier teacher (raw patches -> logits) and the ramped KD objective."""

    def __init__(self, teacher: nn.Module, temperature: float, warmup_epochs: float):
        super().__init__(teacher)
        self.temperature, self.warmup_epochs = temperature, warmup_epochs

    def forward(self, student_logits: torch.Tensor, patches: torch.Tensor, targets: torch.Tensor, progress: float):
        """student_logits (N, K); patches (N, B, p, p) raw, as the student saw them; targets (N,);
        progress in epochs. Returns the loss and its parts for logging."""
        with torch.no_grad():
            teacher_logits = self.teacher(patches)
        weight = ramped_weight(progress, self.warmup_epochs)
        return distillation_loss(student_logits, teacher_logits, targets, self.temperature, weight)
