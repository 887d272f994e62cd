"""Lightning tasks, all on ``BaseTask``: ``PixelClassifier`` (BLM-KD and backbones) and ``MAEPretrainer`` (MAE, KARMA, HyperKD)."""

from rsdistill.tasks.base import BaseTask
from rsdistill.tasks.classification import PixelClassifier, load_classifier
from rsdistill.tasks.pretrain import MAEPretrainer

__all__ = ["BaseTask", "MAEPretrainer", "PixelClassifier", "load_classifier"]
