"""Tiny inputs for the tests, made by code (nothing committed as data).

- ``tile_info`` / ``pixel_info``: the ``data_info`` a data module would give a task, for tasks
  built directly in a test; ``classifier_recipe``: a tiny BLM run on the synthetic scene;
- ``write_fixture_scenes``: a folder of tiny labelled GeoTIFF scenes with EnMAP-like band metadata
  and tile lists, the shape of ``../shared/data/enmap_potsdam_specdeepmap``; run as a script it
  writes them where you say (``python tests/fixtures.py OUT``);
- ``shell_commands``: the ``rsdistill`` commands of a Markdown file's bash blocks (README, tutorial);
- ``RecordTiles``: a callback that writes the keys of the streamed tiles each rank trains on;
  ``KillJob``: one that SIGKILLs the whole process group (every DDP rank) at a given batch;
  ``ReportDDP``: one that writes, per rank, what DDP wraps and where the frozen teacher is.
"""

from __future__ import annotations

import csv
import json
import os
import re
import shlex
import signal
import sys
from pathlib import Path

import lightning as L
import numpy as np

from rsdistill.data.classification import PixelClassificationData
from rsdistill.data.synthetic import make_synthetic_scene
from rsdistill.io import write_geotiff
from rsdistill.preprocessing import Preprocessing
from rsdistill.recipes import make_recipe
from rsdistill.tasks.classification import PixelClassifier

TINY_BLM = {"arch": "blm", "d_model": 8, "n_layers": 1, "d_state": 8, "lr": 0.01}
SYNTHETIC_PIXELS = {"synthetic": {"sensor": "sentinel2", "height": 24, "width": 24, "seed": 1}, "train": 0.2, "val": 0.1,
                    "patch_size": 5, "batch_size": 16, "seed": 0}
QUIET = {"enable_progress_bar": False, "enable_model_summary": False, "log_every_n_steps": 1, "deterministic": True}


def classifier_recipe(run_dir, epochs: int, **model) -> dict:
    """A tiny BLM classifier run on the synthetic scene, in the recipe dialect."""
    return make_recipe(PixelClassifier, PixelClassificationData, {**TINY_BLM, **model}, SYNTHETIC_PIXELS, {**QUIET, "max_epochs": epochs}, run_dir, 0)


class RecordTiles(L.Callback):
    """Appends each training batch's tile keys (file, row, col) to ``folder/rank_<r>_epoch_<e>.txt``."""

    def __init__(self, folder: str):
        self.folder = Path(folder)

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        with open(self.folder / f"rank_{trainer.global_rank}_epoch_{trainer.current_epoch}.txt", "a") as f:
            np.savetxt(f, batch["tile"].numpy(), fmt="%d")


class KillJob(L.Callback):
    """SIGKILLs this process group (the launcher and every DDP rank, as a scheduler ends a job) when
    batch ``batch`` of epoch ``epoch`` starts."""

    def __init__(self, epoch: int, batch: int):
        self.epoch, self.batch = epoch, batch

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if (trainer.current_epoch, batch_idx) == (self.epoch, self.batch):
            os.killpg(os.getpgid(0), signal.SIGKILL)


class ReportDDP(L.Callback):
    """Writes ``folder/rank_<r>.json`` when training starts: the wrapper of the trained module, its
    parameter count, and the frozen teacher's parameter count, whether any of its parameters is
    inside the wrapper and whether any is trainable."""

    def __init__(self, folder: str):
        self.folder = Path(folder)

    def on_train_start(self, trainer, pl_module) -> None:
        wrapped = trainer.strategy.model
        inside = {id(p) for p in wrapped.parameters()}
        teacher = pl_module.distiller.teacher if pl_module.distiller is not None else None
        report = {"wrapper": type(wrapped).__name__, "params": sum(p.numel() for p in wrapped.parameters()),
                  "teacher_params": sum(p.numel() for p in teacher.parameters()) if teacher is not None else 0,
                  "teacher_in_wrapper": teacher is not None and any(id(p) in inside for p in teacher.parameters()),
                  "teacher_trainable": teacher is not None and any(p.requires_grad for p in teacher.parameters())}
        self.folder.mkdir(parents=True, exist_ok=True)
        (self.folder / f"rank_{trainer.global_rank}.json").write_text(json.dumps(report))


def tile_info(bands: int, tile_size: int = 8, wavelengths=None, **extra) -> dict:
    preprocessing = Preprocessing.create(bands, [0.0] * bands, [1.0] * bands, wavelengths=wavelengths)
    return {"preprocessing": preprocessing.to_dict(), "tile_size": tile_size, "data_range": 1.0, **extra}


def pixel_info(bands: int, classes: int, patch_size: int = 5) -> dict:
    preprocessing = Preprocessing.create(bands, [0.0] * bands, [1.0] * bands)
    return {"preprocessing": preprocessing.to_dict(), "class_ids": list(range(1, classes + 1)), "patch_size": patch_size}


def write_fixture_scenes(out, sensor: str = "sentinel2", size: int = 24, tiles: int = 4) -> dict[str, Path]:
    """``tiles`` labelled scenes of ``size``² px (GeoTIFF cube + label map) and train/val/test CSV
    lists in ``out``; returns {"train": csv, "val": csv, "test": csv}."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for index in range(tiles):
        synthetic = make_synthetic_scene(sensor, size, size, seed=index)
        image = write_geotiff(out / f"tile_{index}.tif", synthetic.scene.cube, like=synthetic.scene)
        label = write_geotiff(out / f"tile_{index}_labels.tif", synthetic.scene.labels.astype(np.uint8))
        rows.append((image.name, label.name))
    lists = {"train": rows[: max(tiles - 2, 1)], "val": rows[-2:-1], "test": rows[-1:]}
    paths = {}
    for subset, subset_rows in lists.items():
        paths[subset] = out / f"{subset}_files.csv"
        with open(paths[subset], "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["image", "mask"])
            writer.writerows(subset_rows)
    return paths


if __name__ == "__main__":
    print(write_fixture_scenes(sys.argv[1] if len(sys.argv) > 1 else "fixture_scenes"))


def checkpoint_test_oa(checkpoint, run_dir) -> float:
    """OA of a classifier checkpoint, reloaded alone, on the test pixels of the split its run saved:
    an independent count of what a test record should report."""
    import torch
    import yaml

    from rsdistill.tasks.loading import load_classifier

    model = load_classifier(checkpoint)
    options = yaml.safe_load((Path(run_dir) / "config.yaml").read_text())["data"]["init_args"]
    data = PixelClassificationData(**{**options, "split_file": str(Path(run_dir) / "split.json")})
    correct = total = 0
    with torch.no_grad():
        for batch in data.test_dataloader():
            correct += int((model(batch["image"]).argmax(dim=1) == batch["label"]).sum())
            total += len(batch["label"])
    return correct / total


# what a documented command is shortened by when a test runs it, per verb (appended to its own arguments)
SHORTER = {
    "fit": ["--trainer.max_epochs", "1", "--trainer.limit_train_batches", "1", "--trainer.limit_val_batches", "1"],
    "test": ["--trainer.limit_test_batches", "1"],
    "predict": ["--trainer.limit_predict_batches", "1"],
    "quickstart": ["--epochs", "1", "--seeds", "0"],
    "export": ["--samples", "64", "--calibration", "16"],
    "benchmark": ["--rounds", "1", "--memory", "false", "--pixels", "64"],
    "unmixing-eval": ["--epochs", "1", "--seeds", "[0]"],
}


def shell_commands(text: str, variables: dict[str, str] | None = None) -> list[tuple[str, list[tuple[str, bool]]]]:
    """(the line as written, its words after ``rsdistill`` as (word, quoted)) of every command in the
    Markdown ``text``'s bash blocks, as the shell would see them: continuations joined,
    ``for x in …; do …; done`` unrolled, ``NAME=value`` lines setting ``$NAME``, and ``pip … &&
    rsdistill …`` or ``torchrun … -m rsdistill …`` read from the ``rsdistill`` word on."""
    variables, found = dict(variables or {}), []
    for block in re.findall(r"```bash\n(.*?)```", text, re.S):
        for line in block.replace("\\\n", " ").splitlines():
            line = re.sub(r"\$(\w+)", lambda m: variables.get(m[1], m[0]), line)
            loop = re.fullmatch(r"\s*for (\w+) in ([^;]+); do (.+?); done\s*", line)
            for body in [loop[3].replace(f"${loop[1]}", value) for value in loop[2].split()] if loop else [line]:
                words = shlex.split(body, comments=True)
                if len(words) == 1 and re.fullmatch(r"\w+=.*", words[0]):
                    name, value = words[0].split("=", 1)
                    variables[name] = value
                elif "rsdistill" in words:
                    quoted = {a or b for a, b in re.findall(r'"([^"]*)"|\'([^\']*)\'', body)}
                    found.append((line.strip(), [(w, w in quoted) for w in words[words.index("rsdistill") + 1:]]))
    return found
