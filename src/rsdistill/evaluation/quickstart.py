"""The README's main job: teacher → distilled student on the synthetic scene (or a scene you name).

Trains a BLM teacher, distils a student from it, trains the same student without distillation,
and prints the comparison. A few minutes on 2 CPU cores.
"""

from __future__ import annotations

from pathlib import Path

from rsdistill.errors import InputError
from rsdistill.evaluation.experiment import run_experiment

TEACHER = {"arch": "blm", "d_model": 32, "n_layers": 2, "d_state": 128, "lr": 0.002}
STUDENT = {"arch": "blm", "d_model": 16, "n_layers": 1, "d_state": 64, "lr": 0.002}


def quickstart_config(scene: str | None, labels: str | None, sensor: str, seed: int, epochs: int) -> dict:
    if scene is None:
        data = {"synthetic": {"sensor": sensor, "height": 64, "width": 64, "seed": seed}}
    elif labels is None:
        raise InputError(f"{scene}: the quickstart needs a label map too (--labels PATH)")
    else:
        data = {"images": [str(Path(scene).resolve())], "labels": [str(Path(labels).resolve())]}
    return {
        "data": {**data, "split": "stratified", "train": 0.1, "val": 0.05, "patch_size": 9, "batch_size": 128},
        "trainer": {"max_epochs": epochs, "enable_model_summary": False, "log_every_n_steps": 1},
        "models": {
            "teacher": TEACHER,
            "student_kd": {**STUDENT, "distill_from": "teacher", "kd_temperature": 4.0, "kd_warmup_epochs": 2},
            "student": STUDENT,
        },
    }


def run_quickstart(scene, labels, sensor: str, seed: int, epochs: int, out, overwrite: bool = False) -> list[dict]:
    """The experiment's runs in ``out``: a run of the same settings is reused, one of other settings
    (another scene, seed or epoch count) refused unless ``overwrite``."""
    return run_experiment(quickstart_config(scene, labels, sensor, seed, epochs), out, seeds=[seed], overwrite=overwrite)
