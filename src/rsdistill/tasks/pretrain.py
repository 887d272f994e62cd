"""``MAEPretrainer``: masked-autoencoder pretraining (random / Gabor / wavelet masking, KARMA branch,
and HyperKD's cross-spectral distillation from a frozen teacher when ``distill`` is given).

With ``distill`` (see ``rsdistill.models.cross_spectral.CrossSpectralOptions``) the objective is
λ·(MSE + (1 − SSIM)) + β·KD: λ from ``loss_weights`` ({mse: λ, ssim: λ}), β = ``distill.weight``.

Logs per epoch the reconstruction metrics on the held-out tiles (torchmetrics), in the data's
units (normalisation undone): PSNR, SSIM and SAM on the masked patches and on the whole tile. A loss that becomes NaN/Inf stops the run with
a message naming the step and the term; the exception is raised before any checkpoint of that
epoch is written, so the last good checkpoint is kept.
"""

from __future__ import annotations

from pathlib import Path

import lightning as L
import numpy as np
import torch
from lightning.pytorch.utilities import rank_zero_info
from torchmetrics.image import PeakSignalNoiseRatio, SpectralAngleMapper, StructuralSimilarityIndexMeasure

from rsdistill.errors import InputError
from rsdistill.losses.reconstruction import ReconstructionLoss
from rsdistill.masking import SCORES
from rsdistill.models.cross_spectral import CrossSpectralDistiller
from rsdistill.models.mae import MaskedAutoencoder

ENDMEMBER_INITS = ("random", "vca")
# Held-out tiles are masked with the recipe's own score (``own``), or with random masks seeded by
# the batch index (``random``): the same masks for every recipe, so that their metrics compare.
EVAL_MASKS = ("own", "random")
# Parameter groups of the optimizer: 0 the network (weight decay), 1 a learnable band-alignment
# matrix (no decay), 2 the endmember matrix (no decay, ``endmember_lr``); see configure_optimizers.
PARAMETER_GROUPS = {"distiller.alignment": 1, "mixing.endmembers": 2}


class MAEPretrainer(L.LightningModule):
    def __init__(
        self,
        num_bands: int,
        img_size: int = 16,
        patch_size: int = 4,
        embed_dim: int = 128,
        depth: int = 4,
        num_heads: int = 4,
        decoder_embed_dim: int = 64,
        decoder_depth: int = 2,
        decoder_num_heads: int = 4,
        mask_ratio: float = 0.75,
        mask_score: str = "random",
        mask_noise: float = 0.5,
        eval_mask: str = "own",
        loss_weights: dict[str, float] | None = None,
        endmembers: int = 0,
        endmember_init: str = "random",
        learnable_endmembers: bool = True,
        endmember_lr: float = 1.5e-4,
        lr: float = 1.5e-3,
        weight_decay: float = 0.05,
        band_mean: list[float] | None = None,
        band_std: list[float] | None = None,
        wavelengths: list[float] | None = None,
        data_range: float = 1.0,
        distill: dict | None = None,
    ):
        super().__init__()
        if not 0 < mask_ratio < 1:
            raise InputError(f"mask_ratio must be in (0, 1), got {mask_ratio}")
        if eval_mask not in EVAL_MASKS:
            raise InputError(f"unknown eval_mask {eval_mask!r}; choose one of {', '.join(EVAL_MASKS)}")
        if mask_score not in SCORES:
            raise InputError(f"unknown mask_score {mask_score!r}; choose one of {', '.join(SCORES)}")
        if endmember_init not in ENDMEMBER_INITS:
            raise InputError(f"unknown endmember_init {endmember_init!r}; choose one of {', '.join(ENDMEMBER_INITS)} (or a fixed matrix via learnable_endmembers=False)")
        self.save_hyperparameters()
        self.model = MaskedAutoencoder(
            num_bands, img_size, patch_size, embed_dim, depth, num_heads, decoder_embed_dim, decoder_depth,
            decoder_num_heads, endmembers=endmembers, learnable_endmembers=learnable_endmembers,
        )
        self.distiller = (
            CrossSpectralDistiller(distill, wavelengths, band_mean or [0.0] * num_bands, band_std or [1.0] * num_bands, depth, embed_dim, img_size)
            if distill else None
        )
        self.loss = ReconstructionLoss(loss_weights or {"mse": 1.0}, num_bands, band_mean, band_std)
        # PSNR and SSIM in the data's own units with one fixed range (that of the training pixels),
        # so values are comparable across batches, epochs and recipes.
        self.metrics = torch.nn.ModuleDict({
            "psnr_masked": PeakSignalNoiseRatio(data_range), "psnr_tile": PeakSignalNoiseRatio(data_range),
            "ssim_masked": StructuralSimilarityIndexMeasure(data_range=data_range),
            "ssim_tile": StructuralSimilarityIndexMeasure(data_range=data_range),
            "sam_masked": SpectralAngleMapper(), "sam_tile": SpectralAngleMapper(),
        })

    def on_fit_start(self) -> None:
        if self.distiller is not None:
            rank_zero_info(f"teacher {self.distiller.options.teacher}: layer pairs {self.distiller.pairs}, load report {self.distiller.load_report}")
        mixing = self.model.mixing
        if mixing is not None and self.hparams.endmember_init == "vca" and self.global_step == 0:
            from rsdistill.unmixing import vca

            # VCA needs the pixels in physical units: z-scoring shifts the data cone off the origin,
            # which breaks VCA's projective projection (measured: SAD 0.50 rad on Samson instead of
            # 0.08). Abundances sum to one, so E_normalised = (E − μ) / σ mixes exactly like E.
            mean, std = self.loss.band_mean, self.loss.band_std
            pixels = torch.cat([b["image"].permute(0, 2, 3, 1)[b["valid"]] for b in self.trainer.datamodule.train_dataloader()])
            endmembers = torch.from_numpy(vca((pixels * std + mean).double().numpy().T, mixing.endmembers_count, seed=0)).float()
            mixing.endmembers.data.copy_((endmembers - mean[:, None]) / std[:, None])

    def _step(self, batch, predict: str, score: str | None = None):
        """Forward and loss terms; ``predict``: the pixel head on ``all`` patches or only the
        ``masked`` ones; ``score``: the masking score, the recipe's by default."""
        images, valid = batch["image"], batch["valid"]
        h = self.hparams
        student_layers = self.distiller.student_layers if self.distiller is not None else ()
        outputs = self.model(images, h.mask_ratio, score or h.mask_score, h.mask_noise, return_layers=student_layers, predict=predict)
        target = self.model.patchify(images)
        valid_px = _patch_validity(valid, h.patch_size)
        terms = self.loss(outputs, target, valid_px, lambda p: self.model.unpatchify(p, images.shape[2], images.shape[3]))
        if self.distiller is not None:
            grid = (images.shape[2] // h.patch_size, images.shape[3] // h.patch_size)
            terms["kd"] = self.distiller(images, valid, outputs["layers"], outputs["ids_keep"], grid)
            terms["total"] = terms["total"] + self.distiller.options.weight * terms["kd"]
        return outputs, target, terms

    def training_step(self, batch, batch_idx):
        _, _, terms = self._step(batch, predict="masked")
        for name, value in terms.items():
            if not torch.isfinite(value):
                raise FloatingPointError(
                    f"loss term {name!r} became {value.item()} at step {self.global_step} (epoch {self.current_epoch}); "
                    f"stopping without overwriting the last good checkpoint"
                )
        self.log_dict({f"train/{k}": v for k, v in terms.items()}, prog_bar=True)
        return terms["total"]

    def validation_step(self, batch, batch_idx):
        if self.hparams.eval_mask == "random":
            with torch.random.fork_rng():
                torch.manual_seed(batch_idx)
                outputs, target, terms = self._step(batch, predict="all", score="random")
        else:
            outputs, target, terms = self._step(batch, predict="all")
        self.log_dict({f"val/{k}": v for k, v in terms.items()})
        images, height, width = batch["image"], batch["image"].shape[2], batch["image"].shape[3]
        mean, std = self.loss.band_mean[None, :, None, None], self.loss.band_std[None, :, None, None]
        reflectance = lambda patches: self.model.unpatchify(patches, height, width) * std + mean  # noqa: E731
        truth = images * std + mean
        composite = torch.where(outputs["mask"][..., None].bool(), outputs["pred"], target)
        full = reflectance(outputs["pred"])
        pixel_mask = self.model.unpatchify(outputs["mask"][..., None].expand_as(target), height, width)[:, 0].bool()
        pixel_mask &= batch["valid"]
        masked_pred = full.permute(0, 2, 3, 1)[pixel_mask]  # (P, C)
        masked_true = truth.permute(0, 2, 3, 1)[pixel_mask]
        self.metrics["psnr_masked"].update(masked_pred, masked_true)
        self.metrics["psnr_tile"].update(full, truth)
        self.metrics["ssim_masked"].update(reflectance(composite), truth)
        self.metrics["ssim_tile"].update(full, truth)
        as_image = lambda px: px.T[None, :, :, None]  # noqa: E731 - (P, C) -> (1, C, P, 1)
        self.metrics["sam_masked"].update(as_image(masked_pred), as_image(masked_true))
        self.metrics["sam_tile"].update(full, truth)

    def on_validation_epoch_end(self):
        for name, metric in self.metrics.items():
            self.log(f"val/{name}", metric.compute(), prog_bar=name in ("psnr_masked", "sam_masked"))
            metric.reset()

    def export(self, path, metrics: dict | None = None) -> None:
        """Save the encoder as safetensors + JSON card (bands, wavelengths, normalisation, recipe, metrics)."""
        from rsdistill.models.weights import save_encoder

        data = getattr(self.trainer, "datamodule", None) if self._trainer is not None else None
        recipe = {k: v for k, v in self.hparams.items() if k not in ("band_mean", "band_std", "wavelengths")}
        card = {
            "bands": self.hparams.num_bands, "wavelengths": self.hparams.wavelengths,
            "sensor": getattr(data, "target_sensor", None),
            "normalisation": {"mean": self.hparams.band_mean, "std": self.hparams.band_std},
            "kept_band_indices": np.flatnonzero(data.keep_bands).tolist() if data is not None else None,
            "scenes": getattr(data, "scene_names", None), "recipe": recipe, "metrics": metrics or {},
        }
        save_encoder(self.model.encoder, path, card)

    def on_fit_end(self) -> None:
        log_dir = self.trainer.log_dir
        if log_dir is not None:
            metrics = {k: float(v) for k, v in self.trainer.callback_metrics.items() if k.startswith("val/")}
            self.export(Path(log_dir) / "encoder.safetensors", metrics)

    def configure_optimizers(self):
        # A distillation teacher is frozen. Endmember spectra and a learnable band-alignment matrix
        # are physical quantities: decaying them towards zero (the mean spectrum, after normalisation)
        # would pull every endmember to the same spectrum, so they get no weight decay.
        # Adam moves every parameter by about lr per step whatever its gradient's size, and the
        # mixing loss barely constrains the endmembers (many simplices fit the pixels), so they
        # learn at their own, smaller ``endmember_lr``: on the unmixing references the SAD to the
        # true endmembers is lower at 1.5e-4 than at the network's 1.5e-3 (docs/results.md).
        groups = [{"params": []}, {"params": [], "weight_decay": 0.0}, {"params": [], "weight_decay": 0.0, "lr": self.hparams.endmember_lr}]
        for name, parameter in self.named_parameters():
            if parameter.requires_grad:
                index = next((i for suffix, i in PARAMETER_GROUPS.items() if name.endswith(suffix)), 0)
                groups[index]["params"].append(parameter)
        # fused: one kernel for all parameters instead of a dozen per tensor (CPU and GPU alike)
        optimizer = torch.optim.AdamW(groups, lr=self.hparams.lr, weight_decay=self.hparams.weight_decay, betas=(0.9, 0.95), fused=True)
        epochs = self._trainer.max_epochs if self._trainer is not None and self._trainer.max_epochs else 1
        return {"optimizer": optimizer, "lr_scheduler": torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, max(epochs, 1))}


def _patch_validity(valid: torch.Tensor, patch_size: int) -> torch.Tensor:
    """(N, H, W) bool -> (N, L, p²) float, pixel-major within a patch like ``patchify``."""
    n, h, w = valid.shape
    p = patch_size
    x = valid.float().reshape(n, h // p, p, w // p, p)
    return x.permute(0, 1, 3, 2, 4).reshape(n, (h // p) * (w // p), p * p)
