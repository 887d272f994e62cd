"""Galileo-Nano (the real weights) in every role an encoder has: linear probe, a per-pixel teacher
(patch size 1) whose checkpoint teaches the BLM student, and a task checkpoint that rebuilds the
encoder without its weights file, and Mask-CDKD's teacher under MMoA adapters. UPerNet, the pixel
classifier, the HyperKD teacher and Mask-CDKD also run one batch each from their recipes in
``configs/galileo`` (``test_task_vocabulary``)."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import torch

from rsdistill.cli import main
from rsdistill.experiments.pretrain import probe_accuracy, probe_tiles
from rsdistill.io.readers import read_scene
from rsdistill.models.registry import load_encoder
from rsdistill.tasks.classification import load_classifier

REPO = Path(__file__).resolve().parents[1]
QUICK = ["--trainer.max_epochs", "1", "--trainer.limit_train_batches", "2", "--trainer.limit_val_batches", "1",
         "--trainer.enable_progress_bar", "false"]


def test_linear_probe_of_galileo_on_enmap_tiles_aligned_to_sentinel2(real_file):
    lists = {"train": str(real_file("enmap_potsdam_specdeepmap/validation_files.csv")),
             "test": str(real_file("enmap_potsdam_specdeepmap/test_files.csv"))}
    encoder = load_encoder("galileo-nano", patch_size=4, gsd_m=30)
    tiles = probe_tiles(lists, encoder, align="srf")
    first = read_scene(real_file("enmap_potsdam_specdeepmap/images/enmap_potsdam_tile_128_0.tif"))
    scores = probe_accuracy(encoder.for_scene(first, "srf").encoder, tiles)
    classes = np.unique(tiles["test"][1][tiles["test"][1] > 0])
    assert scores["test"] > 1.5 / len(classes), "Galileo features should beat chance on held-out EnMAP tiles"


def test_a_per_pixel_galileo_teacher_teaches_the_blm_student(data_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("RSDISTILL_DATA", str(data_dir))
    monkeypatch.chdir(tmp_path)
    assert main(["fit", "-c", str(REPO / "configs/galileo/classify_enmap.yaml"), *QUICK]) == 0
    teacher_ckpt = tmp_path / "runs/galileo/classify_enmap/last.ckpt"
    # the checkpoint holds the encoder: it loads with the weights nowhere to be found
    monkeypatch.setenv("RSDISTILL_DATA", str(tmp_path / "nowhere"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    teacher = load_classifier(teacher_ckpt)
    card = teacher.hparams["encoder_card"]
    assert card["architecture"]["name"] == "galileo" and card["architecture"]["patch_size"] == 1
    assert card["input"]["live_groups"] == ["S2_RGB", "S2_Red_Edge", "S2_NIR_10m", "S2_NIR_20m", "S2_SWIR"]
    patches = torch.rand(3, teacher.preprocessing.bands, 9, 9) * 3000
    assert teacher(patches).shape == (3, len(teacher.class_ids))
    monkeypatch.setenv("RSDISTILL_DATA", str(data_dir))
    assert main(["fit", "-c", str(REPO / "configs/galileo/student_kd.yaml"), "--model.init_args.teacher_ckpt", str(teacher_ckpt), *QUICK]) == 0
    assert (tmp_path / "runs/galileo/student_kd/last.ckpt").is_file()


def test_galileo_as_the_mask_cdkd_teacher_sees_photos_through_its_rgb_group(data_dir, tmp_path, monkeypatch, capsys):
    """Mask-CDKD takes Galileo under MMoA adapters; photos reach it by band alignment only (its RGB
    group live, the others masked), and without teacher_options the mismatch is one line saying so.
    One batch of the recipe runs in test_task_vocabulary."""
    from rsdistill.preprocessing import Preprocessing
    from rsdistill.tasks.mask_cdkd import MaskCDKD

    monkeypatch.setenv("RSDISTILL_DATA", str(data_dir))
    monkeypatch.chdir(tmp_path)
    assert main(["fit", "-c", str(REPO / "configs/mask_cdkd/distill_cpu.yaml"), "--model.init_args.teacher", "galileo-nano",
                 "--trainer.fast_dev_run", "true"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "takes 10 bands but the tiles have 3" in err and "teacher_options" in err
    info = {"preprocessing": Preprocessing.create(3, [100.0] * 3, [50.0] * 3).to_dict(), "tile_size": 32}
    task = MaskCDKD(info, teacher="galileo-nano", teacher_options={"patch_size": 8, "align": "srf", "sensor": "rgb", "scale": 10000 / 255},
                    embed_dim=32, depth=3, num_heads=2, decoder_depth=1, kd_layers=[[1, 1], [3, 3]])
    assert task.teacher.name == "galileo_mmoa" and task.teacher.encoder.groups == ("S2_RGB",) and task.student.patch_size == 8
    assert task.hparams.teacher_card["architecture"]["groups"] == ["S2_RGB"]


def test_galileo_weights_folder_can_live_anywhere(real_file, tmp_path):
    folder = tmp_path / "my weights"
    shutil.copytree(real_file("weights/galileo_nano/encoder.pt").parent, folder)
    encoder = load_encoder(folder, patch_size=8)
    assert encoder.card["path"] == str(folder) and encoder.encoder.patch_size == 8
