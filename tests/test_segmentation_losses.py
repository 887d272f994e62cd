"""Rare-class losses of segmentation (``losses.segmentation``) by hand, and the training masks'
class counts that ``class_weights: frequency`` is computed from."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from rsdistill.data.segmentation import SegmentationData
from rsdistill.errors import InputError
from rsdistill.io.masks import IGNORE_INDEX
from rsdistill.losses.segmentation import dice_loss, focal_loss, median_frequency_weights
from rsdistill.tasks.segmentation import SemanticSegmenter
from test_segmentation import COLOURS, LEGEND, write_pair

# two labelled pixels and one ignored, three classes
LOGITS = torch.tensor([[[[2.0, 0.0, 5.0]], [[0.0, 1.0, 5.0]], [[0.0, 0.0, 5.0]]]])  # (1, 3, 1, 3)
MASK = torch.tensor([[[0, 1, IGNORE_INDEX]]])


def softmax(row):
    e = np.exp(row)
    return e / e.sum()


def test_focal_and_dice_losses_by_hand():
    p0, p1 = softmax([2.0, 0.0, 0.0]), softmax([0.0, 1.0, 0.0])  # the two labelled pixels' probabilities
    weights = torch.tensor([1.0, 3.0, 1.0])
    gamma = 2.0
    # α_t (1 − p_t)^γ (−log p_t), normalised by the α of the labelled pixels (as weighted cross-entropy is)
    by_hand = (1 * (1 - p0[0]) ** gamma * -math.log(p0[0]) + 3 * (1 - p1[1]) ** gamma * -math.log(p1[1])) / (1 + 3)
    assert focal_loss(LOGITS, MASK, weights, gamma).item() == pytest.approx(by_hand, rel=1e-6)
    # γ = 0 is the weighted cross-entropy
    ce = F.cross_entropy(LOGITS, MASK, weight=weights, ignore_index=IGNORE_INDEX)
    assert focal_loss(LOGITS, MASK, weights, 0.0).item() == pytest.approx(ce.item(), rel=1e-6)
    # soft Dice per class over the two labelled pixels: (2 Σ p·g + 1) / (Σ p + Σ g + 1)
    p = np.stack([p0, p1])
    g = np.array([[1, 0, 0], [0, 1, 0]])
    dice = (2 * (p * g).sum(0) + 1) / (p.sum(0) + g.sum(0) + 1)
    assert dice_loss(LOGITS, MASK).item() == pytest.approx(1 - dice.mean(), rel=1e-6)


def test_median_frequency_weights_by_hand():
    # present classes 100, 10, 40 px: median 40; the absent class gets the largest weight
    assert median_frequency_weights([100, 10, 0, 40]) == pytest.approx([0.4, 4.0, 4.0, 1.0])
    with pytest.raises(InputError, match="no"):
        median_frequency_weights([0, 0])


@pytest.mark.filterwarnings(r"ignore:You are trying to `self.log\(\)`")  # a training step outside a Trainer
def test_frequency_weights_come_from_the_training_masks(tmp_path):
    masks = [write_pair(tmp_path, f"img{k}", seed=k)[2] for k in range(3)]
    data = SegmentationData({"train": [str(tmp_path / "img0.tif"), str(tmp_path / "img1.tif")], "test": [str(tmp_path / "img2.tif")]},
                            LEGEND, masks=[[".tif", "_mask.tif"]], tile_size=16, augment=False)
    counts = [int(sum((m == k).sum() for m in masks[:2])) for k in range(len(COLOURS))]  # training images only, ignored pixels out
    assert data.info["class_pixels"] == counts
    options = {"arch": "unet", "cnn": {"width": 4, "depth": 2}}
    model = SemanticSegmenter(data_info=data.info, class_weights="frequency", loss="focal", **options)
    assert model.class_weight.tolist() == pytest.approx(median_frequency_weights(counts))
    batch = next(iter(data.train_dataloader()))
    assert torch.isfinite(model.training_step(batch, 0))
    with pytest.raises(InputError, match=r"class_weights: 'frequency' or one weight per class \(3: "):
        SemanticSegmenter(data_info=data.info, class_weights=[1.0, 2.0], **options)
    with pytest.raises(InputError, match="loss: one of ce, focal, dice, ce\\+dice, got 'lovasz'"):
        SemanticSegmenter(data_info=data.info, loss="lovasz", **options)
