"""A trained task from its checkpoint alone: the task is told by its hyper-parameters (a teacher
card: Mask-CDKD) and what its ``data_info`` holds (class names, class ids, else an MAE).

Checkpoints are read with ``weights_only=True`` (tensors and plain containers only); a file that
holds other pickled objects is refused in one line naming it.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import torch

from rsdistill.errors import InputError
from rsdistill.models.state_dicts import untrusted_pickle
from rsdistill.tasks.base import BaseTask


def task_class(hparams: dict) -> type[BaseTask]:
    """The task a checkpoint's hyper-parameters belong to."""
    from rsdistill.tasks.classification import PixelClassifier
    from rsdistill.tasks.mask_cdkd import MaskCDKD
    from rsdistill.tasks.pretrain import MAEPretrainer
    from rsdistill.tasks.segmentation import SemanticSegmenter

    data_info = hparams.get("data_info") or {}
    if "teacher_card" in hparams:
        return MaskCDKD
    if "class_names" in data_info:
        return SemanticSegmenter
    if "class_ids" in data_info:
        return PixelClassifier
    return MAEPretrainer


def load_task(path, expect: type[BaseTask] | None = None, expect_bands: int | None = None) -> BaseTask:
    """The task saved in ``path``, in eval mode with frozen weights; ``expect``: the class it must be;
    ``expect_bands``: the raw band count of the data it will see."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such checkpoint")
    try:
        hparams = torch.load(path, map_location="cpu", weights_only=True, mmap=True).get("hyper_parameters", {})
        cls = task_class(hparams)
        if expect is not None and not issubclass(cls, expect):
            raise InputError(f"{path}: a {cls.__name__} checkpoint, but a {expect.__name__} is needed here")
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
