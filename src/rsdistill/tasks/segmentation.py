"""``SemanticSegmenter``: dense class scores from image/mask tiles, UPerNet on any encoder or a CNN baseline.

``arch: upernet`` (default): UPerNet on an encoder that is a pretrained one (``encoder``: any
``load_encoder`` path or weights name; its architecture and preprocessing are copied into
``encoder_card``, so a checkpoint rebuilds it without the file; ``encoder_options``: its load
options and ``align``/``scale`` to feed it the images' bands, e.g. Galileo on RGB tiles: only its
RGB group is live) or, with ``backbone``, a randomly initialised ViT of that
shape on the data's bands. Frozen by default (``freeze_encoder``), as Mask-CDKD evaluates its
students; the neck and head always train. ``arch: unet`` or ``specdeepmap_cnn``: a convolutional
baseline (``models.segmentation_cnn``, options in ``cnn``) trained end to end on the data's bands.

Loss: cross-entropy with ``ignore_index`` 255. Metrics (torchmetrics, ignore 255, over the real
classes): mIoU (macro Jaccard), OA (micro accuracy), mF1 (macro F1), per-class IoU and the
confusion matrix; with ``specdeepmap_iou`` also SpecDeepMap's per-batch IoU
(``metrics.specdeepmap_batch_iou``) averaged over the full batches. ``scores[stage]`` holds the last
validation's and test's values.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics import MeanMetric, MetricCollection
from torchmetrics.classification import MulticlassAccuracy, MulticlassConfusionMatrix, MulticlassF1Score, MulticlassJaccardIndex

from rsdistill.data.info import SegmentationDataInfo
from rsdistill.errors import InputError
from rsdistill.io.masks import IGNORE_INDEX, Legend
from rsdistill.losses.segmentation import LOSSES, median_frequency_weights, segmentation_loss
from rsdistill.metrics import specdeepmap_batch_iou, specdeepmap_numbering
from rsdistill.models.registry import SEGMENTATION_NETS, pretrained_backbone
from rsdistill.models.upernet import UPerNet
from rsdistill.models.vit import ViTEncoder
from rsdistill.tasks.base import BaseTask


def segmentation_metrics(classes: int) -> MetricCollection:
    """mIoU, OA, mF1, per-class IoU and the confusion matrix over ``classes`` real classes, 255 ignored."""
    return MetricCollection({
        "miou": MulticlassJaccardIndex(classes, average="macro", ignore_index=IGNORE_INDEX),
        "oa": MulticlassAccuracy(classes, average="micro", ignore_index=IGNORE_INDEX),
        "mf1": MulticlassF1Score(classes, average="macro", ignore_index=IGNORE_INDEX),
        "iou": MulticlassJaccardIndex(classes, average="none", ignore_index=IGNORE_INDEX),
        "confusion": MulticlassConfusionMatrix(classes, ignore_index=IGNORE_INDEX),
    })


class SemanticSegmenter(BaseTask):
    """Normalised tiles (N, C, H, W) -> class scores (N, K, H, W). data_info: ``SegmentationData.info``."""

    DATA_INFO = SegmentationDataInfo
    kind = "segmentation"

    def __init__(
        self,
        data_info: dict | None = None,
        arch: str = "upernet",
        cnn: dict | None = None,
        encoder: str | None = None,
        encoder_card: dict | None = None,
        encoder_options: dict | None = None,
        backbone: dict | None = None,
        freeze_encoder: bool = True,
        layers: list[int] | None = None,
        channels: int = 192,
        dropout: float = 0.1,
        lr: float = 1e-3,
        weight_decay: float = 0.01,
        warmup_epochs: float = 0.0,
        specdeepmap_iou: bool = False,
        loss: str = "ce",
        class_weights: list[float] | str | None = None,
        focal_gamma: float = 2.0,
    ):
        """``loss``: ce, focal, dice or ce+dice (``losses.segmentation``); ``class_weights``: one
        weight per class, or ``frequency`` (median frequency balancing of the training masks), for
        ce and focal; ``focal_gamma``: the focal loss's γ."""
        super().__init__()

    @property
    def class_names(self) -> list[str]:
        return self.data_info.class_names

    def map_classes(self) -> tuple[list[int], list[str], Legend]:
        """Its maps hold class index + 1; reference masks are read through the training masks' legend."""
        return list(range(1, len(self.class_names) + 1)), list(self.class_names), self.data_info.mask_legend()

    def configure_models(self) -> None:
        h = self.hparams
        if h.arch != "upernet":  # a registered network trained end to end (models.registry.SEGMENTATION_NETS)
            if h.arch not in SEGMENTATION_NETS:
                raise InputError(f"arch must be upernet or one of {', '.join(SEGMENTATION_NETS)}, got {h.arch!r}")
            self.input_preprocessing = self.preprocessing
            self.net = SEGMENTATION_NETS.build(h.arch, self.preprocessing.channels, len(self.class_names), **(h.cnn or {}))
            if self.data_info.tile_size % self.net.stride:
                raise InputError(f"arch {h.arch}: the tile size {self.data_info.tile_size} must be a multiple of {self.net.stride}")
            return
        if (h.encoder is None) == (h.backbone is None) and h.encoder_card is None:
            raise InputError("give either encoder (a pretrained encoder's path) or backbone (the shape of a new ViT), not both or neither")
        if h.encoder_card is not None or h.encoder is not None:
            encoder, preprocessing, self.hparams["encoder_card"] = pretrained_backbone(h.encoder, h.encoder_card, h.encoder_options, self.preprocessing)
        else:
            preprocessing = self.preprocessing
            encoder = ViTEncoder(preprocessing.channels, self.data_info.tile_size, **h.backbone)
        if preprocessing.bands != self.preprocessing.bands:
            raise InputError(f"{h.encoder}: the encoder takes {preprocessing.bands} raw bands but the images have {self.preprocessing.bands} "
                             f"(encoder_options.align feeds it by band alignment)")
        self.input_preprocessing = preprocessing
        self.net = UPerNet(encoder, len(self.class_names), tuple(h.layers) if h.layers else None, h.channels, h.dropout, h.freeze_encoder)

    def configure_losses(self) -> None:
        h = self.hparams
        if h.loss not in LOSSES:
            raise InputError(f"loss: one of {', '.join(LOSSES)}, got {h.loss!r}")
        weights = h.class_weights
        if weights == "frequency":
            if self.data_info.class_pixels is None:
                raise InputError("class_weights: frequency needs the training masks' class counts, which this checkpoint's data_info lacks")
            weights = median_frequency_weights(self.data_info.class_pixels)
        elif isinstance(weights, str) or (weights is not None and len(weights) != len(self.class_names)):
            raise InputError(f"class_weights: 'frequency' or one weight per class ({len(self.class_names)}: "
                             f"{', '.join(self.class_names)}), got {weights!r}")
        if weights is not None and h.loss == "dice":
            raise InputError("class_weights: the dice loss weighs every class equally already; use them with ce, focal or ce+dice")
        self.register_buffer("class_weight", None if weights is None else torch.tensor(weights, dtype=torch.float32), persistent=False)

    def configure_metrics(self) -> None:
        self.metrics = nn.ModuleDict({stage: segmentation_metrics(len(self.class_names)) for stage in ("val", "test")})
        self.batch_iou = nn.ModuleDict({stage: MeanMetric() for stage in ("val", "test")})
        self.full_batch: int | None = None  # SpecDeepMap's loaders drop the last partial batch

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """images: (N, C, H, W) normalised with the data's statistics -> logits (N, K, H, W).

        A pretrained encoder sees its own normalisation: the data's is undone and the encoder's applied.
        """
        if self.input_preprocessing is not self.preprocessing:
            images = self.input_preprocessing(self.preprocessing.denormalise(images))
        return self.net(images)

    def training_step(self, batch, batch_idx):
        h = self.hparams
        terms = segmentation_loss(h.loss, self(batch["image"]), batch["mask"], self.class_weight, h.focal_gamma)  # float32 under bf16 autocast
        self.check_finite(terms)
        self.log_dict({f"train/{name}": value for name, value in terms.items()}, prog_bar=True)
        return sum(terms.values())

    def _evaluate(self, batch, stage: str) -> None:
        logits = self(batch["image"])
        self.log(f"{stage}/loss", F.cross_entropy(logits.float(), batch["mask"], ignore_index=IGNORE_INDEX), sync_dist=True)
        predictions = logits.argmax(1)
        self.metrics[stage].update(predictions, batch["mask"])
        if self.hparams.specdeepmap_iou:
            self.full_batch = self.full_batch or len(predictions)
            if len(predictions) == self.full_batch:
                self.batch_iou[stage].update(specdeepmap_batch_iou(
                    specdeepmap_numbering(predictions), specdeepmap_numbering(batch["mask"]), len(self.class_names) + 1))

    def _log_scores(self, stage: str) -> None:
        values = self.metrics[stage].compute()
        self.metrics[stage].reset()
        scores = {k: float(values[k]) for k in ("miou", "oa", "mf1")}
        if self.hparams.specdeepmap_iou:
            scores["specdeepmap_iou"] = float(self.batch_iou[stage].compute())
            self.batch_iou[stage].reset()
            self.full_batch = None
        self.log_dict({f"{stage}/{k}": v for k, v in scores.items()}, prog_bar=stage == "val")
        self.scores[stage] = {**scores, "iou": dict(zip(self.class_names, values["iou"].tolist())),
                              "confusion": values["confusion"].tolist()}

    def validation_step(self, batch, batch_idx):
        self._evaluate(batch, "val")

    def on_validation_epoch_end(self):
        self._log_scores("val")

    def test_step(self, batch, batch_idx):
        self._evaluate(batch, "test")

    def on_test_epoch_end(self):
        """Test scores logged, and the full record (per-class IoU, confusion matrix: rows the
        reference, columns the prediction) printed and written as ``test/scores.json`` in the run folder."""
        self._log_scores("test")
        folder = self.run_folder()
        if folder is None:
            return
        from rsdistill.files import write_json

        scores = self.scores["test"]
        write_json(folder / "scores.json", scores)
        width = max(len(name) for name in self.class_names)
        rows = [f"{name:<{width}}  IoU {100 * iou:6.2f}  " + " ".join(f"{int(n):>8}" for n in row)
                for (name, iou), row in zip(scores["iou"].items(), scores["confusion"])]
        print("\nper-class IoU (%) and confusion (rows: reference, columns: prediction, in this order):\n" + "\n".join(rows))

    def predict_step(self, batch, batch_idx):
        """Class indices (N, H, W) of a batch of tiles."""
        return self(batch["image"]).argmax(1)
