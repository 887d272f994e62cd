"""The README's main job: the distillation regime that paid under spatial cross-validation
(docs/results-distillation.md, "Distilling from a real teacher"), at a size that runs in about a minute on 2
CPU cores, on the synthetic EnMAP scene (or a scene you name).

The regime: few labels (10 training pixels per class), whole 16-px blocks for training, validation
and test with a buffer of the patch radius between them; a teacher about 11 times larger than the
student (the hybrid CNN) on every band of the scene; the compact BLM student on a cheaper sensor's
bands made from the scene's by spectral response (``student_sensor``, Sentinel-2 by default for the
synthetic scene), distilled on unlabelled pixels of the training region, against the identical
student without distillation. The comparison is paired per seed (``evaluation.paired``); one seed
gives one difference and no test.
"""

from __future__ import annotations

from pathlib import Path

from rsdistill.errors import InputError
from rsdistill.experiments.experiment import run_experiment

TEACHER = {"arch": "hybrid_cnn", "lr": 0.002}
STUDENT = {"arch": "blm", "d_model": 16, "n_layers": 1, "d_state": 64, "lr": 0.002}
PAIR = ("student_kd", "student")


def quickstart_config(scene: str | None, labels: str | None, sensor: str, epochs: int, student_sensor: str | None = "sentinel2") -> dict:
    """The experiment config; ``student_sensor`` None: the student sees the scene's own bands
    (only the teacher's size and the unlabelled pixels differ). The synthetic scene is the same for
    every seed (drawn with seed 0); the seeds draw the split, the label budget and the training."""
    if scene is None:
        data = {"synthetic": {"sensor": sensor, "height": 64, "width": 64, "seed": 0}}
    elif labels is None:
        raise InputError(f"{scene}: the quickstart needs a label map too (--labels PATH)")
    else:
        data = {"images": [str(Path(scene).resolve())], "labels": [str(Path(labels).resolve())]}
    student_data = {"input_sensor": student_sensor} if student_sensor else {}
    return {
        "data": {**data, "split": "blocks", "block_size": 16, "train": 0.5, "val": 0.2, "patch_size": 7, "batch_size": 128,
                 "max_train_per_class": 10, "train_pixels_per_epoch": 512},
        "trainer": {"max_epochs": epochs, "enable_model_summary": False, "log_every_n_steps": 1},
        "models": {
            "teacher": TEACHER,
            "student_kd": {**STUDENT, "distill_from": "teacher", "kd_temperature": 4.0, "kd_warmup_epochs": 1,
                           "data": {**student_data, "kd_unlabelled": 1024}},
            "student": {**STUDENT, "data": student_data},
        },
        "pairs": [list(PAIR)],
    }


def student_sensor_of(scene: str | None, asked: str | None) -> str | None:
    """The student's sensor: the one asked for (``none``: the scene's own bands), else Sentinel-2
    for the synthetic scene and the scene's own bands for a user's scene."""
    if asked is None:
        return "sentinel2" if scene is None else None
    return None if asked == "none" else asked


def run_quickstart(scene, labels, sensor: str, seeds: list[int], epochs: int, out, student_sensor: str | None,
                   overwrite: bool = False) -> list[dict]:
    """The experiment's runs in ``out``: a run of the same settings is reused, one of other settings
    (another scene, student sensor or epoch count) refused unless ``overwrite``."""
    config = quickstart_config(scene, labels, sensor, epochs, student_sensor)
    return run_experiment(config, out, seeds=seeds, overwrite=overwrite)
