"""Lightning DDP on this CPU: a real ``rsdistill fit`` of a BLM-KD student in two processes (gloo).

Checked: the frozen teacher is loaded on every rank and kept out of what DDP wraps, the training
pixels are sharded by Lightning's distributed sampler (half the steps per epoch), the validation
scores are reduced across ranks (they equal a single-process validation of the same checkpoint),
and the run folder holds one run's files, written by rank 0 only. (The streamed MAE under DDP, with
a kill and resume, is in ``test_streaming.py``.)
"""

import csv
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from fixtures import classifier_recipe
from rsdistill.cli import main
from rsdistill.recipes import parse_recipe
from rsdistill.tasks.loading import load_task


def write(path: Path, recipe: dict) -> Path:
    path.write_text(yaml.safe_dump(recipe))
    return path


@pytest.mark.skipif(not torch.distributed.is_available() or not torch.distributed.is_gloo_available(), reason="torch without gloo")
def test_ddp_fit_of_a_kd_student_shards_training_and_reduces_validation(tmp_path):
    assert main(["fit", "-c", str(write(tmp_path / "teacher.yaml", classifier_recipe(tmp_path / "teacher", 1)))]) == 0
    recipe = classifier_recipe(tmp_path / "run", 2, teacher_ckpt=str(tmp_path / "teacher/last.ckpt"), kd_warmup_epochs=1)
    recipe["trainer"].update({"strategy": "ddp", "accelerator": "cpu", "devices": 2,
                              "callbacks": [{"class_path": "fixtures.ReportDDP", "init_args": {"folder": str(tmp_path / "ddp")}}]})
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).parent), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run([sys.executable, "-m", "rsdistill", "fit", "-c", str(write(tmp_path / "recipe.yaml", recipe))], cwd=tmp_path,
                          capture_output=True, text=True, timeout=600, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    for rank in (0, 1):  # the teacher is loaded on every rank, frozen, outside what DDP wraps
        report = json.loads((tmp_path / "ddp" / f"rank_{rank}.json").read_text())
        assert report["wrapper"] == "DistributedDataParallel" and report["teacher_params"] > 0
        assert not report["teacher_in_wrapper"] and not report["teacher_trainable"]
    run = tmp_path / "run"
    assert {p.name for p in run.iterdir()} == {"config.yaml", "hparams.yaml", "last.ckpt", "metrics.csv", "split.json"}
    rows = list(csv.DictReader((run / "metrics.csv").open()))
    train = len(yaml.safe_load((run / "split.json").read_text())["train"])
    steps_per_rank = math.ceil(math.ceil(train / 2) / recipe["data"]["init_args"]["batch_size"])
    assert sum(1 for r in rows if r["train/kd"]) == 2 * steps_per_rank  # 2 epochs, each rank half of the pixels
    ddp_val = {k: float(v) for k, v in [r for r in rows if r["val/oa"]][-1].items() if k.startswith("val/")}
    single = parse_recipe(classifier_recipe(tmp_path / "single", 2))  # the same data, one process
    model = load_task(run / "last.ckpt")
    [scores] = single.trainer.validate(model, single.datamodule, verbose=False)
    for key in ("val/oa", "val/aa", "val/kappa", "val/loss"):
        assert scores[key] == pytest.approx(ddp_val[key], abs=1e-6), key


def test_the_multi_node_bf16_recipe_builds_its_trainer_without_launching(tmp_path):
    """The README's 2 nodes × 4 devices, bf16-mixed recipe: Lightning's DDP strategy over 8 ranks."""
    from lightning.pytorch.strategies import DDPStrategy

    recipe = classifier_recipe(tmp_path / "run", 1)
    recipe["trainer"].update({"strategy": "ddp", "accelerator": "cpu", "devices": 4, "num_nodes": 2, "precision": "bf16-mixed"})
    trainer = parse_recipe(recipe).trainer
    assert isinstance(trainer.strategy, DDPStrategy) and trainer.num_nodes == 2 and trainer.num_devices == 4
    assert trainer.world_size == 8 and trainer.precision == "bf16-mixed"
