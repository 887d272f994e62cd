"""Mask-CDKD's feature distillation between a student ViT and an MMoA teacher (Shu, Zhang et al. 2026, Sec. 3.3).

At each layer pair (student s, teacher t; default 1-based student 3, 6, 9 ↔ teacher 6, 12, 18 as the
official code, clipped to the depths) the student's tokens are projected by their own
``Linear(D_student → D_teacher, bias=False)`` and compared with the teacher's tokens at the same
visible positions by MSE; the loss is the mean over pairs. Bidirectional (the paper): the teacher's
features are not detached, so the KD loss also trains the teacher's adapters and gates;
``unidirectional`` detaches them (the ablation).

Shapes: {layer: (N, L_visible, D)} on both sides, the same positions in the same order.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from rsdistill.distill.cross_spectral import resolve_layer_pairs

DEFAULT_PAIRS = ((3, 6), (6, 12), (9, 18))  # (student, teacher), 1-based


class FeatureKD(nn.Module):
    def __init__(self, student_dim: int, teacher_dim: int, student_depth: int, teacher_depth: int,
                 layers: list[list[int]] | None = None, bidirectional: bool = True):
        super().__init__()
        self.pairs = resolve_layer_pairs(layers, student_depth, teacher_depth, DEFAULT_PAIRS)
        self.bidirectional = bidirectional
        self.projections = nn.ModuleList(nn.Linear(student_dim, teacher_dim, bias=False) for _ in self.pairs)

    @property
    def student_layers(self) -> tuple[int, ...]:
        return tuple(sorted({s for s, _ in self.pairs}))

    @property
    def teacher_layers(self) -> tuple[int, ...]:
        return tuple(sorted({t for _, t in self.pairs}))

    def forward(self, student: dict[int, torch.Tensor], teacher: dict[int, torch.Tensor]) -> torch.Tensor:
        losses = []
        for (s, t), projection in zip(self.pairs, self.projections):
            target = teacher[t] if self.bidirectional else teacher[t].detach()
            losses.append(F.mse_loss(projection(student[s]).float(), target.float()))  # float32 under bf16 autocast
        return torch.stack(losses).mean()
