"""A trained task from its checkpoint alone. Every task is registered here by name (``TASKS``);
a checkpoint names its task (``BaseTask.on_save_checkpoint``), and one written before it did is
told by its hyper-parameters (a teacher card: Mask-CDKD) and what its ``data_info`` holds (class
names, class ids, else an MAE).

Checkpoints are read with ``weights_only=True`` (tensors and plain containers only); a file that
holds other pickled objects is refused in one line naming it.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import torch

from rsdistill.errors import InputError
from rsdistill.models.state_dicts import untrusted_pickle
from rsdistill.registry import Registry
from rsdistill.tasks.base import TASK_KEY, BaseTask

# task name -> its class, imported only when a checkpoint of it is loaded. A new task is one line
# here; what the verbs do with it follows from its ``KIND`` (tasks.base).
TASKS = Registry("task", {
    "PixelClassifier": "rsdistill.tasks.classification:PixelClassifier",
    "SemanticSegmenter": "rsdistill.tasks.segmentation:SemanticSegmenter",
    "MAEPretrainer": "rsdistill.tasks.pretrain:MAEPretrainer",
    "MaskCDKD": "rsdistill.tasks.mask_cdkd:MaskCDKD",
})


def task_name(checkpoint: dict) -> str:
    """The task a checkpoint holds: its saved name, else told by its hyper-parameters (older checkpoints)."""
    if TASK_KEY in checkpoint:
        return checkpoint[TASK_KEY]
    hparams = checkpoint.get("hyper_parameters", {})
    data_info = hparams.get("data_info") or {}
    if "teacher_card" in hparams:
        return "MaskCDKD"
    if "class_names" in data_info:
        return "SemanticSegmenter"
    if "class_ids" in data_info:
        return "PixelClassifier"
    return "MAEPretrainer"


def load_task(path, expect: str | None = None, expect_bands: int | None = None) -> BaseTask:
    """The task saved in ``path``, in eval mode with frozen weights; ``expect``: the registered name
    of the task it must be (or a subclass of); ``expect_bands``: the raw band count of the data it will see."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such checkpoint")
    try:
        cls = TASKS[task_name(torch.load(path, map_location="cpu", weights_only=True, mmap=True))]
        if expect is not None and not issubclass(cls, TASKS[expect]):
            raise InputError(f"{path}: a {cls.__name__} checkpoint, but a {expect} is needed here")
        model = cls.load_from_checkpoint(path, map_location="cpu", weights_only=True)
    except InputError:
        raise
    except pickle.UnpicklingError:
        raise InputError(untrusted_pickle(path, "unpickle it yourself and save its state_dict")) from None
    except Exception as error:  # torch/Lightning raise many types for foreign or broken checkpoints
        raise InputError(f"{path}: not an rsdistill checkpoint ({type(error).__name__}: {error})") from None
    bands = model.preprocessing.bands
    if expect_bands is not None and bands != expect_bands:
        raise InputError(f"{path}: checkpoint was trained on {bands} bands, the data has {expect_bands}")
    model.eval().requires_grad_(False)
    return model


def load_classifier(path, expect_bands: int | None = None):
    """A trained ``PixelClassifier`` from its checkpoint alone."""
    return load_task(path, "PixelClassifier", expect_bands)
