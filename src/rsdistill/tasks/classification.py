"""``PixelClassifier``: pixel classification with optional teacher→student logit distillation (BLM-KD).

The model takes raw patches: its ``Preprocessing`` (the training pixels' per-band statistics, or a
pretrained encoder's own preprocessing with ``arch: encoder``) is part of its hyper-parameters, so a
checkpoint classifies raw scene values on its own (``rsdistill map``), in any folder. With
``teacher_ckpt`` a frozen teacher classifier (or an ensemble: a list of checkpoints) is loaded when
fitting starts (``distill`` policy: never saved in, nor reloaded with, the student's checkpoint);
``kd_max_weight`` caps the KD weight λ_t so that the labels keep a share of the loss.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics.classification import MulticlassConfusionMatrix

from rsdistill.data.info import PixelDataInfo
from rsdistill.distill.logits import EnsembleTeacher, LogitDistiller
from rsdistill.errors import InputError
from rsdistill.io.masks import Legend
from rsdistill.metrics import scores_from_confusion
from rsdistill.models.encoder_classifier import EncoderPixelClassifier
from rsdistill.models.registry import PIXEL_CLASSIFIERS, pretrained_backbone
from rsdistill.preprocessing import Preprocessing
from rsdistill.tasks.base import BaseTask
from rsdistill.tasks.loading import load_classifier


class PixelClassifier(BaseTask):
    """Raw patches (N, B, p, p) around pixels -> (N, K) logits over the data's classes.

    data_info: ``PixelClassificationData.info`` (preprocessing, class_ids, patch_size).
    encoder: with ``arch: encoder``, a pretrained encoder (any ``load_encoder`` path, or a weights
    name such as ``galileo-nano``) read once when the task is first built; its architecture and
    preprocessing are then kept in ``encoder_card``, so a checkpoint rebuilds it without the file.
    encoder_options: its load options and ``align``/``scale`` to feed it the scenes' raw bands by
    band alignment (``models.registry.pretrained_backbone``), e.g. Galileo at patch size 1 on
    EnMAP: ``{patch_size: 1, gsd_m: 30, align: srf}``.
    cuda_kernels: with ``arch: blm``, CUDA tensors are scanned by ``mamba-ssm``'s fused kernel where
    it is installed (``models.selective_scan``); the same function, so the checkpoint runs anywhere.
    """

    DATA_INFO = PixelDataInfo
    kind = "pixel_classification"

    def __init__(
        self,
        data_info: dict | None = None,
        arch: str = "blm",
        d_model: int = 64,
        n_layers: int = 3,
        d_state: int = 128,
        expand: int = 2,
        dropout: float = 0.1,
        lr: float = 2e-3,
        weight_decay: float = 1e-4,
        warmup_epochs: float = 0.0,
        teacher_ckpt: str | list[str] | None = None,
        kd_temperature: float = 4.0,
        kd_warmup_epochs: float = 5.0,
        kd_max_weight: float = 1.0,
        cuda_kernels: bool = True,
        encoder: str | None = None,
        encoder_card: dict | None = None,
        freeze_encoder: bool = False,
        encoder_options: dict | None = None,
    ):
        super().__init__()

    @property
    def class_ids(self) -> list[int]:
        return self.data_info.class_ids

    def map_classes(self) -> tuple[list[int], list[str], Legend]:
        """Its maps hold the label values of its classes; reference masks are label maps too."""
        legend = Legend.numbered(self.class_ids)
        return list(self.class_ids), list(legend.names), legend

    def configure_models(self) -> None:
        h = self.hparams
        data = self.preprocessing
        classes = len(self.class_ids)
        if h.arch == "encoder":  # a pretrained encoder and its own preprocessing
            encoder, data = self._backbone(data.bands)
            self.net: nn.Module = EncoderPixelClassifier(encoder, classes, h.freeze_encoder)
        elif h.arch not in PIXEL_CLASSIFIERS:
            raise InputError(f"unknown architecture {h.arch!r}; choose encoder or one of {', '.join(PIXEL_CLASSIFIERS)}")
        else:  # a registered network (models.registry.PIXEL_CLASSIFIERS) with the options it takes
            self.net = PIXEL_CLASSIFIERS.build(h.arch, data.channels, classes, options=dict(h))
        self.input_preprocessing = data

    def _backbone(self, raw_bands: int) -> tuple[nn.Module, Preprocessing]:
        """The pretrained encoder and its preprocessing: from the file on first build, else from ``encoder_card``."""
        h = self.hparams
        encoder, preprocessing, self.hparams["encoder_card"] = pretrained_backbone(h.encoder, h.encoder_card, h.encoder_options, self.preprocessing)
        if preprocessing.bands != raw_bands:
            raise InputError(f"{h.encoder}: the encoder takes {preprocessing.bands} raw bands but the classification scenes have {raw_bands} "
                             f"(encoder_options.align feeds it by band alignment)")
        return encoder, preprocessing

    def configure_metrics(self) -> None:
        self.confusion = nn.ModuleDict({stage: MulticlassConfusionMatrix(len(self.class_ids)) for stage in ("val", "test")})

    def configure_distiller(self) -> LogitDistiller | None:
        """The teacher of ``teacher_ckpt``: one classifier checkpoint (any architecture), or a list
        of them as an ensemble (mean logits). Each must classify the same bands, classes and patch size."""
        h = self.hparams
        if h.teacher_ckpt is None:
            return None
        if not 0.0 <= h.kd_max_weight <= 1.0:
            raise InputError(f"kd_max_weight is the ceiling of the KD weight λ_t, in [0, 1]; got {h.kd_max_weight}")
        paths = [h.teacher_ckpt] if isinstance(h.teacher_ckpt, str) else list(h.teacher_ckpt)
        if not paths:
            raise InputError("teacher_ckpt: an empty list; give a checkpoint path or a list of them (an ensemble)")
        members = []
        for path in paths:
            teacher = load_classifier(path, expect_bands=self.preprocessing.bands)
            if list(teacher.class_ids) != list(self.class_ids) or teacher.data_info.patch_size != self.data_info.patch_size:
                raise InputError(f"{path}: the teacher classifies class ids {list(teacher.class_ids)} from {teacher.data_info.patch_size}² patches, "
                                 f"the student {list(self.class_ids)} from {self.data_info.patch_size}² patches")
            members.append(teacher)
        return LogitDistiller(members[0] if len(members) == 1 else EnsembleTeacher(members), h.kd_temperature, h.kd_warmup_epochs, h.kd_max_weight)

    def forward(self, patches: torch.Tensor) -> torch.Tensor:
        """patches: (N, B, p, p) raw values -> (N, K) logits. A net with a per-pixel first stage
        (``pixelwise``) takes the preprocessing folded into it."""
        if hasattr(self.net, "pixelwise"):
            return self.net(patches, preprocessing=self.input_preprocessing)
        return self.net(self.input_preprocessing(patches))

    def training_step(self, batch, batch_idx):
        unlabelled = None
        if "labelled" in batch:  # with kd_unlabelled: {"labelled": batch, "unlabelled": batch}
            batch, unlabelled = batch["labelled"], batch["unlabelled"]["image"]
            if self.distiller is None:
                raise InputError("data.kd_unlabelled draws pixels for a distillation term; give the student a teacher_ckpt")
        logits = self(batch["image"] if unlabelled is None else torch.cat([batch["image"], unlabelled]))
        logits, unlabelled_logits = (logits, None) if unlabelled is None else logits.split([len(batch["image"]), len(unlabelled)])
        if self.distiller is None:
            loss = F.cross_entropy(logits.float(), batch["label"])  # float32 under bf16 autocast
            parts = {"ce": loss}
        else:
            progress = self.current_epoch + batch_idx / max(self.trainer.num_training_batches, 1)
            loss, parts = self.distiller(logits, batch["image"], batch["label"], progress, unlabelled_logits, unlabelled)
        self.check_finite({"total": loss})
        self.log_dict({f"train/{k}": v for k, v in parts.items()}, prog_bar=True)
        return loss

    def _evaluation_step(self, batch, stage: str):
        logits = self(batch["image"])
        self.log(f"{stage}/loss", F.cross_entropy(logits.float(), batch["label"]), sync_dist=True)  # mean over ranks under DDP
        self.confusion[stage].update(logits.argmax(dim=1), batch["label"])

    def validation_step(self, batch, batch_idx):
        self._evaluation_step(batch, "val")

    def test_step(self, batch, batch_idx):
        self._evaluation_step(batch, "test")

    def _log_scores(self, stage: str) -> None:
        scores = scores_from_confusion(self.confusion[stage].compute().cpu())
        self.confusion[stage].reset()
        self.log_dict({f"{stage}/{k}": scores[k] for k in ("oa", "aa", "kappa")}, prog_bar=stage == "val")
        self.scores[stage] = scores

    def on_validation_epoch_end(self):
        self._log_scores("val")

    def on_test_epoch_end(self):
        self._log_scores("test")

    def predict_step(self, batch, batch_idx):
        """Class ids (as in the label maps) of a batch of patches."""
        ids = torch.as_tensor(self.class_ids, device=self.device)
        return ids[self(batch["image"]).argmax(dim=1)]

