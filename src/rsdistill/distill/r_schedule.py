"""Mask-CDKD's r-schedule: the weights (KD, teacher MAE, student MAE) follow the ratio of the two MAE losses.

Shu, Zhang et al., "Mask-CDKD" (2026), Sec. 3.4; values from the official ``mask_cdkd_losses.py``:
r = L_T_MAE / L_S_MAE; a one-way state machine early → middle once r < 0.85, middle → late once
r > 0.95 (never back), with λ = (KD, T_MAE, S_MAE) = (0.2, 0.4, 0.4) early, (0.6, 0.2, 0.2) middle,
(0.7, 0.15, 0.15) late. Modes:

- ``faithful``: decided per batch on the raw r, as the official code (one noisy batch can move the
  stage for good);
- ``ema``: on an exponential moving average of r (``beta``), and only after ``patience``
  consecutive batches meeting the condition;
- ``static``: the fixed ``static_weights`` (the ablation).

The state (stage, r's average, the patience count) is in ``state_dict`` so a resumed run continues
exactly (the official code does not save it).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from rsdistill.errors import InputError

STAGES = ("early", "middle", "late")


@dataclass
class RSchedule:
    mode: str = "faithful"
    to_middle_below: float = 0.85
    to_late_above: float = 0.95
    weights: dict[str, list[float]] = field(default_factory=lambda: {
        "early": [0.2, 0.4, 0.4], "middle": [0.6, 0.2, 0.2], "late": [0.7, 0.15, 0.15]})
    static_weights: list[float] = field(default_factory=lambda: [0.6, 0.2, 0.2])
    beta: float = 0.9
    patience: int = 5
    eps: float = 1e-8
    stage: str = "early"
    average: float | None = None
    count: int = 0

    def __post_init__(self):
        if self.mode not in ("faithful", "ema", "static"):
            raise InputError(f"r-schedule mode must be faithful, ema or static, got {self.mode!r}")
        if set(self.weights) != set(STAGES) or any(len(w) != 3 for w in self.weights.values()):
            raise InputError(f"r-schedule weights: (KD, teacher MAE, student MAE) for each of {STAGES}, got {self.weights}")

    def update(self, teacher_mae: float, student_mae: float) -> tuple[float, list[float]]:
        """One batch's MAE losses -> (r, weights (KD, T_MAE, S_MAE) for this batch's total loss)."""
        r = float(teacher_mae) / (float(student_mae) + self.eps)
        if self.mode == "static":
            return r, list(self.static_weights)
        if self.mode == "faithful":
            signal, needed = r, 1
        else:
            self.average = r if self.average is None else self.beta * self.average + (1 - self.beta) * r
            signal, needed = self.average, self.patience
        condition = (self.stage == "early" and signal < self.to_middle_below) or (self.stage == "middle" and signal > self.to_late_above)
        self.count = self.count + 1 if condition else 0
        if self.count >= needed:
            self.stage, self.count = STAGES[STAGES.index(self.stage) + 1], 0
        return r, list(self.weights[self.stage])

    def state_dict(self) -> dict:
        return {"stage": self.stage, "average": self.average, "count": self.count}

    def load_state_dict(self, state: dict) -> None:
        self.stage, self.average, self.count = state["stage"], state["average"], state["count"]
