"""Lightning DDP on this CPU: a real ``rsdistill fit`` of a BLM recipe in two processes (gloo).

Checked: the training pixels are sharded by Lightning's distributed sampler (half the steps per
epoch), the validation scores are reduced across ranks (they equal a single-process validation of
the same checkpoint), and the run folder holds one run's files, written by rank 0 only.
"""

import csv
import math
import subprocess
import sys

import pytest
import torch
import yaml
from fixtures import classifier_recipe

from rsdistill.recipes import parse_recipe
from rsdistill.tasks.loading import load_task


@pytest.mark.skipif(not torch.distributed.is_available() or not torch.distributed.is_gloo_available(), reason="torch without gloo")
def test_ddp_fit_shards_training_and_reduces_validation(tmp_path):
    recipe = classifier_recipe(tmp_path / "run", 2)
    recipe["trainer"].update({"strategy": "ddp", "accelerator": "cpu", "devices": 2})
    (tmp_path / "recipe.yaml").write_text(yaml.safe_dump(recipe))
    done = subprocess.run([sys.executable, "-m", "rsdistill", "fit", "-c", str(tmp_path / "recipe.yaml")], cwd=tmp_path,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    run = tmp_path / "run"
    assert {p.name for p in run.iterdir()} == {"config.yaml", "hparams.yaml", "last.ckpt", "metrics.csv", "split.json"}
    rows = list(csv.DictReader((run / "metrics.csv").open()))
    train = len(yaml.safe_load((run / "split.json").read_text())["train"])
    steps_per_rank = math.ceil(math.ceil(train / 2) / recipe["data"]["init_args"]["batch_size"])
    assert sum(1 for r in rows if r["train/ce"]) == 2 * steps_per_rank  # 2 epochs, each rank half of the pixels
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
