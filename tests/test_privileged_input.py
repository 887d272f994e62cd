"""A student that sees a cheaper sensor than its teacher (privileged-input distillation): the
student's input is the scene's bands resampled to a registered sensor by band alignment, computed
inside its own preprocessing, so the loaders, the teacher and ``rsdistill map`` keep the raw bands."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import yaml

from rsdistill.cli import main
from rsdistill.data.classification import PixelClassificationData
from rsdistill.errors import InputError
from rsdistill.experiments.quickstart import quickstart_config
from rsdistill.spectral.alignment import simulated_bands
from rsdistill.tasks.classification import load_classifier

SYNTHETIC = {"sensor": "enmap", "height": 64, "width": 64, "seed": 0}


def test_the_student_input_is_the_raw_bands_resampled_and_standardised_on_the_training_pixels():
    data = PixelClassificationData(synthetic=SYNTHETIC, input_sensor="sentinel2", patch_size=5)
    scene = data.scenes[0]
    alignment, simulated = simulated_bands(scene.sensor(), "sentinel2", "srf")
    assert data.preprocessing.bands == 224 and data.preprocessing.channels == len(simulated) == alignment.shape[0]
    aligned = data._centre_spectra(data.split.train) @ alignment.T.astype(np.float64)
    np.testing.assert_allclose(data.preprocessing.mean, aligned.mean(axis=0), rtol=1e-6)
    raw = data.dataset("train")[0]["image"][None]
    expected = (torch.einsum("ts,nshw->nthw", torch.from_numpy(alignment), raw) - torch.tensor(aligned.mean(0), dtype=torch.float32)[:, None, None]) \
        / torch.tensor(aligned.std(0), dtype=torch.float32)[:, None, None]
    torch.testing.assert_close(data.preprocessing(raw), expected, rtol=1e-4, atol=1e-4)


def test_an_unknown_input_sensor_is_one_line_naming_it():
    with pytest.raises(InputError, match="not-a-sensor"):
        PixelClassificationData(synthetic=SYNTHETIC, input_sensor="not-a-sensor")


def test_a_teacher_on_every_band_distils_into_an_rgb_student(tmp_path):
    config = quickstart_config(None, None, "enmap", epochs=1)
    student = {k: v for k, v in config["models"]["student_kd"].items()}
    config["models"]["student_kd"] = {**student, "data": {"input_sensor": "rgb"}}
    # the synthetic scene is fully labelled: KD on the labelled pixels
    config["data"] = {**{k: v for k, v in config["data"].items() if k not in ("train", "val")}, "split": "blocks", "train": 0.5, "val": 0.2}
    config["models"] = {name: config["models"][name] for name in ("teacher", "student_kd")}
    config.update(seeds=[0], pairs=[])
    config["trainer"].update(limit_train_batches=2, limit_val_batches=1, limit_test_batches=1)
    (tmp_path / "kd.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    assert main(["experiment", "-c", str(tmp_path / "kd.yaml"), "--out", str(tmp_path / "kd")]) == 0
    teacher = load_classifier(tmp_path / "kd/teacher/seed_0/last.ckpt")
    student = load_classifier(tmp_path / "kd/student_kd/seed_0/last.ckpt")
    assert teacher.input_preprocessing.channels == 224
    assert student.input_preprocessing.bands == 224 and student.input_preprocessing.channels == 3
    raw = torch.rand(2, 224, 7, 7)
    assert student(raw).shape == teacher(raw).shape == (2, len(teacher.class_ids))
