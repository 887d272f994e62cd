"""``PixelClassifier``: pixel classification with optional teacher→student logit distillation (BLM-KD).

Normalisation (per-band mean/std of the training pixels) is a buffer of the module, so a
checkpoint classifies raw scene values on its own (``rsdistill map``). With ``teacher_ckpt`` the
frozen teacher's logits enter the loss of ``rsdistill.losses.distillation``; the teacher is not a
submodule, so it is neither trained nor saved in the student's checkpoint.
"""

from __future__ import annotations

from pathlib import Path

import lightning as L
import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics.classification import MulticlassConfusionMatrix

from rsdistill.errors import InputError
from rsdistill.evaluation.classification import scores_from_confusion
from rsdistill.losses.distillation import distillation_loss, ramped_weight
from rsdistill.models.blm import BLMClassifier
from rsdistill.models.encoder_classifier import EncoderPixelClassifier
from rsdistill.models.hybrid_cnn import HybridCNN

ARCHITECTURES = ("blm", "hybrid_cnn", "encoder")


class PixelClassifier(L.LightningModule):
    def __init__(
        self,
        num_bands: int,
        num_classes: int,
        arch: str = "blm",
        d_model: int = 64,
        n_layers: int = 3,
        d_state: int = 128,
        expand: int = 2,
        dropout: float = 0.1,
        lr: float = 2e-3,
        weight_decay: float = 1e-4,
        teacher_ckpt: str | None = None,
        kd_temperature: float = 4.0,
        kd_warmup_epochs: float = 5.0,
        class_ids: list[int] | None = None,
        band_mean: list[float] | None = None,
        band_std: list[float] | None = None,
        patch_size: int = 9,
        cuda_kernels: bool = False,
        encoder: str | None = None,
        freeze_encoder: bool = False,
    ):
        super().__init__()
        self.save_hyperparameters()
        if arch == "blm":
            self.net: nn.Module = BLMClassifier(
                num_bands, num_classes, d_model, n_layers, d_state, expand, dropout, cuda_kernels=cuda_kernels
            )
        elif arch == "hybrid_cnn":
            self.net = HybridCNN(num_bands, num_classes, dropout=dropout)
        elif arch == "encoder":
            if encoder is None:
                raise InputError("arch 'encoder' needs encoder: the path of a pretrained encoder.safetensors")
            self.net = EncoderPixelClassifier(
                encoder, num_bands, num_classes, band_mean or [0.0] * num_bands, band_std or [1.0] * num_bands, freeze_encoder
            )
        else:
            raise InputError(f"unknown architecture {arch!r}; choose one of {', '.join(ARCHITECTURES)}")
        self.register_buffer("band_mean", torch.tensor(band_mean or [0.0] * num_bands, dtype=torch.float32))
        self.register_buffer("band_std", torch.tensor(band_std or [1.0] * num_bands, dtype=torch.float32))
        self._teacher = [load_classifier(teacher_ckpt, expect_bands=num_bands)] if teacher_ckpt else []
        self.confusion = nn.ModuleDict(
            {stage: MulticlassConfusionMatrix(num_classes) for stage in ("val", "test")}
        )
        self.test_scores: dict | None = None

    @property
    def teacher(self) -> PixelClassifier | None:
        return self._teacher[0] if self._teacher else None

    def forward(self, patches: torch.Tensor) -> torch.Tensor:
        """patches: (N, B, p, p) raw values -> (N, K) logits."""
        normalised = (patches - self.band_mean[:, None, None]) / self.band_std[:, None, None]
        return self.net(normalised)

    def training_step(self, batch, batch_idx):
        logits = self(batch["image"])
        if self.teacher is None:
            loss = F.cross_entropy(logits, batch["label"])
            self.log("train/ce", loss, prog_bar=True)
            return loss
        self.teacher.to(self.device).eval()
        with torch.no_grad():
            teacher_logits = self.teacher(batch["image"])
        progress = self.current_epoch + batch_idx / max(self.trainer.num_training_batches, 1)
        weight = ramped_weight(progress, self.hparams.kd_warmup_epochs)
        loss, parts = distillation_loss(logits, teacher_logits, batch["label"], self.hparams.kd_temperature, weight)
        self.log_dict({f"train/{k}": v for k, v in parts.items()}, prog_bar=True)
        return loss

    def _evaluation_step(self, batch, stage: str):
        logits = self(batch["image"])
        self.log(f"{stage}/loss", F.cross_entropy(logits, batch["label"]))
        self.confusion[stage].update(logits.argmax(dim=1), batch["label"])

    def validation_step(self, batch, batch_idx):
        self._evaluation_step(batch, "val")

    def test_step(self, batch, batch_idx):
        self._evaluation_step(batch, "test")

    def _log_scores(self, stage: str) -> dict:
        scores = scores_from_confusion(self.confusion[stage].compute().cpu())
        self.confusion[stage].reset()
        self.log_dict({f"{stage}/{k}": scores[k] for k in ("oa", "aa", "kappa")}, prog_bar=stage == "val")
        return scores

    def on_validation_epoch_end(self):
        self._log_scores("val")

    def on_test_epoch_end(self):
        self.test_scores = self._log_scores("test")

    def predict_step(self, batch, batch_idx):
        """Class ids (as in the label maps) of a batch of patches."""
        ids = torch.as_tensor(self.hparams.class_ids or range(self.hparams.num_classes), device=self.device)
        return ids[self(batch["image"]).argmax(dim=1)]

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        # The global RNG drives dropout; saving it makes a resumed run continue exactly like an uninterrupted one.
        checkpoint["torch_rng_state"] = torch.get_rng_state()

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        if "torch_rng_state" in checkpoint:
            torch.set_rng_state(checkpoint["torch_rng_state"])

    def configure_optimizers(self):
        optimizer = torch.optim.AdamW(self.parameters(), lr=self.hparams.lr, weight_decay=self.hparams.weight_decay, fused=True)
        epochs = self.trainer.max_epochs if self.trainer and self.trainer.max_epochs else 1
        scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(epochs, 1))
        return {"optimizer": optimizer, "lr_scheduler": scheduler}

    def count_parameters(self) -> int:
        return sum(p.numel() for p in self.net.parameters())


def load_classifier(path, expect_bands: int | None = None) -> PixelClassifier:
    """A trained ``PixelClassifier`` from a Lightning checkpoint (tensors only, ``weights_only``)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such checkpoint")
    try:
        model = PixelClassifier.load_from_checkpoint(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch/Lightning raise many types for foreign or broken checkpoints
        raise InputError(f"{path}: not a PixelClassifier checkpoint ({type(error).__name__}: {error})") from None
    if expect_bands is not None and model.hparams.num_bands != expect_bands:
        raise InputError(f"{path}: checkpoint was trained on {model.hparams.num_bands} bands, the data has {expect_bands}")
    model.eval().requires_grad_(False)
    return model
