"""What a teacher could transfer: a teacher against the student trained without it, on validation.

Logit KD can only move the student towards what the teacher predicts; when the teacher is right
mostly where the student already is, or its probabilities are badly calibrated, KD has little to
give (Hinton et al. 2015; Stanton et al., "Does knowledge distillation really work?", NeurIPS
2021). An experiment's ``diagnose: [[teacher, student], ...]`` reports per seed, on the
validation pixels (never the test ones): both accuracies, their agreement, the share of pixels
only the teacher gets right (what it knows that the student does not) and only the student gets
right, and the teacher's expected calibration error (15 bins, torchmetrics) and mean confidence.
"""

from __future__ import annotations

import numpy as np
import torch
from torchmetrics.functional.classification import multiclass_calibration_error

from rsdistill.tasks.loading import load_task

MEASURES = ("teacher_oa", "student_oa", "agreement", "teacher_only", "student_only", "teacher_ece", "teacher_confidence")


def logits_of(model, patches: torch.Tensor, batch: int = 512) -> torch.Tensor:
    """(N, B, p, p) raw patches -> (N, K) logits, in batches."""
    with torch.no_grad():
        return torch.cat([model(chunk) for chunk in patches.split(batch)]).float()


def transfer_record(teacher_logits: torch.Tensor, student_logits: torch.Tensor, labels: torch.Tensor) -> dict:
    """The measures of ``MEASURES`` from (N, K) logits of both models and (N,) class indices."""
    teacher_right = teacher_logits.argmax(1) == labels
    student_right = student_logits.argmax(1) == labels
    probabilities = teacher_logits.softmax(1)
    return {
        "teacher_oa": teacher_right.float().mean().item(),
        "student_oa": student_right.float().mean().item(),
        "agreement": (teacher_logits.argmax(1) == student_logits.argmax(1)).float().mean().item(),
        "teacher_only": (teacher_right & ~student_right).float().mean().item(),
        "student_only": (student_right & ~teacher_right).float().mean().item(),
        "teacher_ece": multiclass_calibration_error(probabilities, labels, teacher_logits.shape[1], n_bins=15).item(),
        "teacher_confidence": probabilities.max(1).values.mean().item(),
    }


def diagnose(teacher_ckpt, student_ckpt, data, subset: str = "val") -> dict:
    """``transfer_record`` of two classifier checkpoints on ``subset`` of a ``PixelClassificationData``."""
    dataset = data.dataset(subset)
    patches = torch.stack([dataset[i]["image"] for i in range(len(dataset))])
    labels = torch.as_tensor(np.asarray([int(dataset[i]["label"]) for i in range(len(dataset))]))
    teacher, student = load_task(teacher_ckpt), load_task(student_ckpt)  # a frozen encoder's features: the process's memo (models.feature_memo)
    return {**transfer_record(logits_of(teacher, patches), logits_of(student, patches), labels), "pixels": len(labels), "subset": subset}


def diagnosis_table(rows: list[dict]) -> str:
    """Markdown: per (teacher, student), each measure in % as mean ± std over seeds."""
    names = {"teacher_oa": "teacher OA", "student_oa": "student OA", "agreement": "agreement", "teacher_only": "only teacher right",
             "student_only": "only student right", "teacher_ece": "teacher ECE", "teacher_confidence": "teacher confidence"}
    lines = [f"| teacher → student | {' | '.join(names[m] for m in MEASURES)} | seeds |", "|---|" + "---|" * (len(MEASURES) + 1)]
    for teacher, student in dict.fromkeys((r["teacher"], r["student"]) for r in rows):
        runs = [r for r in rows if (r["teacher"], r["student"]) == (teacher, student)]
        cells = [f"{100 * np.mean([r[m] for r in runs]):.1f} ± {100 * np.std([r[m] for r in runs]):.1f}" for m in MEASURES]
        lines.append(f"| {teacher} → {student} | {' | '.join(cells)} | {len(runs)} |")
    return "\n".join(lines)
