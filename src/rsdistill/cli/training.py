"""``rsdistill fit|validate|test|predict -c recipe.yaml``: LightningCLI over rsdistill's tasks.

A recipe names its task at the top (``task: classification`` (default) or ``task: mae``); the
task fixes the LightningModule and data module. The data module reads the scenes when it is
built, so what it finds (band count, classes, training-pixel statistics, wavelengths) is linked
into the model's arguments.
"""

from __future__ import annotations

import yaml
from lightning.pytorch.cli import LightningCLI

from rsdistill.data.classification import PixelClassificationData
from rsdistill.data.tiles import TileData
from rsdistill.errors import InputError
from rsdistill.tasks.classification import PixelClassifier
from rsdistill.tasks.pretrain import MAEPretrainer

LIGHTNING_VERBS = ("fit", "validate", "test", "predict")
TASKS = {
    "classification": (PixelClassifier, PixelClassificationData, {
        "num_bands": "num_bands", "num_classes": "num_classes", "class_ids": "class_ids",
        "band_mean": "band_mean", "band_std": "band_std", "patch_size": "patch_size",
    }),
    "mae": (MAEPretrainer, TileData, {
        "num_bands": "num_bands", "band_mean": "band_mean", "band_std": "band_std",
        "wavelengths": "wavelengths", "data_range": "data_range", "tile_size": "img_size",
    }),
}


def task_of(argv: list[str]) -> str:
    """The ``task`` named by the last config file on the command line (or ``--task``)."""
    task = "classification"
    for flag, value in zip(argv, argv[1:]):
        if flag in ("-c", "--config"):
            try:
                task = (yaml.safe_load(open(value)) or {}).get("task", task)
            except (OSError, yaml.YAMLError) as error:
                raise InputError(f"{value}: cannot read recipe ({error})") from None
        elif flag == "--task":
            task = value
    if task not in TASKS:
        raise InputError(f"unknown task {task!r}; choose one of {', '.join(TASKS)}")
    return task


def run_lightning(argv: list[str]) -> None:
    task = task_of(argv)
    model_class, data_class, links = TASKS[task]

    class TaskCLI(LightningCLI):
        def add_arguments_to_parser(self, parser) -> None:
            parser.add_argument("--task", default=task, help="classification or mae (selects model and data)")
            for source, target in links.items():
                parser.link_arguments(f"data.{source}", f"model.{target}", apply_on="instantiate")

    TaskCLI(model_class, data_class, args=argv, seed_everything_default=0, save_config_kwargs={"overwrite": True})
