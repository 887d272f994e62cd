"""``rsdistill fit|validate|test|predict -c recipe.yaml``: LightningCLI over the classification task.

The data module reads the scenes and draws the split when it is built, so the band count, classes
and training-pixel statistics it finds are linked into the model's arguments.
"""

from __future__ import annotations

from lightning.pytorch.cli import LightningCLI

from rsdistill.data.classification import PixelClassificationData
from rsdistill.tasks.classification import PixelClassifier

LIGHTNING_VERBS = ("fit", "validate", "test", "predict")
_LINKED = ("num_bands", "num_classes", "class_ids", "band_mean", "band_std", "patch_size")


class ClassificationCLI(LightningCLI):
    def add_arguments_to_parser(self, parser) -> None:
        for name in _LINKED:
            parser.link_arguments(f"data.{name}", f"model.{name}", apply_on="instantiate")


def run_lightning(argv: list[str]) -> None:
    ClassificationCLI(
        PixelClassifier, PixelClassificationData, args=argv, seed_everything_default=0,
        save_config_kwargs={"overwrite": True},
    )
