"""Lightning tasks, all on ``BaseTask``: ``PixelClassifier`` (BLM-KD and backbones), ``MAEPretrainer``
(MAE, KARMA, HyperKD), ``SemanticSegmenter`` (UPerNet, CNN baselines) and ``MaskCDKD``."""

from rsdistill.tasks.base import BaseTask
from rsdistill.tasks.classification import PixelClassifier
from rsdistill.tasks.loading import load_classifier, load_task
from rsdistill.tasks.mask_cdkd import MaskCDKD
from rsdistill.tasks.pretrain import MAEPretrainer
from rsdistill.tasks.segmentation import SemanticSegmenter

__all__ = ["BaseTask", "MAEPretrainer", "MaskCDKD", "PixelClassifier", "SemanticSegmenter", "load_classifier", "load_task"]
