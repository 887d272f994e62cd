"""The one teacher policy of rsdistill, for HyperKD, BLM-KD and Mask-CDKD alike.

A teacher is frozen (eval mode, no parameter gradients) and lives outside the student's module
tree: it is not in the student's ``state_dict`` (so checkpoints do not carry it and load without
it), not among its ``parameters()`` (so no optimizer sees it), and never wrapped by DDP. It still
follows the student to its device and dtype (``Distiller._apply``).

A ``Distiller`` is the student-side module of a distillation: it holds the teacher this way and
owns whatever is trained for the distillation only (projections, a learnable band alignment).
Tasks build it when fitting starts (``BaseTask.configure_distiller``), never when a checkpoint is
loaded for inference, so a student checkpoint loads alone, anywhere.

The one exception is Mask-CDKD (``tasks.mask_cdkd``): its teacher is trained too (the MMoA
adapters and the teacher's decoder learn with the student, bidirectional KD), so it sits in the
task's module tree as ``teacher``, frozen SAM weights included, and its checkpoint carries them
(about 0.5 GB for ViT-B); the exported student (``rsdistill export``) does not.
"""

from __future__ import annotations

from torch import nn


class Distiller(nn.Module):
    """Base class: ``teacher`` is frozen and held outside the module tree."""

    def __init__(self, teacher: nn.Module):
        super().__init__()
        teacher.eval().requires_grad_(False)
        self.__dict__["_teacher"] = teacher  # bypasses nn.Module registration on purpose

    @property
    def teacher(self) -> nn.Module:
        return self.__dict__["_teacher"]

    def _apply(self, fn, recurse: bool = True):
        super()._apply(fn, recurse)
        self.teacher._apply(fn)
        return self
