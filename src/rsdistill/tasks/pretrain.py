"""``MAEPretrainer``: masked-autoencoder pretraining (random / Gabor / wavelet masking, KARMA branch,
and HyperKD's cross-spectral distillation from a frozen teacher when ``distill`` is given).

With ``distill`` (see ``rsdistill.distill.cross_spectral.CrossSpectralOptions``) the objective is
λ·(MSE + (1 − SSIM)) + β·KD: λ from ``loss_weights`` ({mse: λ, ssim: λ}), β = ``distill.weight``.

With ``sam`` ({window_size, global_blocks, out_chans}) the encoder is SAM-layout (windowed and
global attention, relative position; strided-grid masks): a teacher for ``MaskCDKD``.

Reconstruction metrics (torchmetrics) are logged per epoch on the validation tiles (``val/…``) and
by ``rsdistill test`` on the test tiles (``test/…``), in the data's units (normalisation undone):
PSNR, SSIM and SAM on the masked patches and on the whole tile. ``predict`` gives the encoder's
patch features of the test tiles.
"""

from __future__ import annotations

import os

import numpy as np
import torch
from lightning.pytorch.utilities import rank_zero_info
from torchmetrics.image import PeakSignalNoiseRatio, SpectralAngleMapper, StructuralSimilarityIndexMeasure

from rsdistill.data.info import TileDataInfo
from rsdistill.distill.cross_spectral import CrossSpectralDistiller, CrossSpectralOptions
from rsdistill.errors import InputError
from rsdistill.losses.reconstruction import check_loss_weights, reconstruction_terms
from rsdistill.masking import SCORES, PatchMask, held_out_mask, mask_from_scores, patch_scores, random_patch_mask, strided_grid_mask
from rsdistill.models.mae import MaskedAutoencoder
from rsdistill.tasks.base import BaseTask
from rsdistill.tokens import patch_validity, patchify, unpatchify

# ``endmember_init``: random, VCA on the training pixels (seeded by the run's seed), or a .npy file
# of (bands, M) endmembers in the data's units (e.g. the VCA draw a baseline used, or a library).
ENDMEMBER_INITS = ("random", "vca")
# Held-out tiles are masked with the recipe's own score (``own``) or with random masks (``random``:
# the same masks for every recipe, so that their metrics compare); either way each tile's draw is
# seeded by its index in the held-out set (``masking.held_out_mask``), so a tile gets the same mask
# in every validation, whatever the batch size or the number of DDP ranks.
EVAL_MASKS = ("own", "random")


class MAEPretrainer(BaseTask):
    """data_info: ``TileData.info`` (preprocessing, tile_size, data_range, sensor, scenes)."""

    DATA_INFO = TileDataInfo

    def __init__(
        self,
        data_info: dict | None = None,
        img_size: int | None = None,
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
        nonnegative_endmembers: bool = False,
        volume_floor: float = 0.0,
        pixel_abundances: bool = False,
        lr: float = 1.5e-3,
        weight_decay: float = 0.05,
        betas: tuple[float, float] = (0.9, 0.95),
        warmup_epochs: float = 0.0,
        distill: dict | None = None,
        sam: dict | None = None,
    ):
        if not 0 < mask_ratio < 1:
            raise InputError(f"mask_ratio must be in (0, 1), got {mask_ratio}")
        if not volume_floor >= 0:
            raise InputError(f"volume_floor must be >= 0 (a squared edge length per band), got {volume_floor}")
        if eval_mask not in EVAL_MASKS:
            raise InputError(f"unknown eval_mask {eval_mask!r}; choose one of {', '.join(EVAL_MASKS)}")
        if mask_score not in SCORES:
            raise InputError(f"unknown mask_score {mask_score!r}; choose one of {', '.join(SCORES)}")
        if endmember_init not in ENDMEMBER_INITS and not endmember_init.endswith(".npy"):
            raise InputError(f"unknown endmember_init {endmember_init!r}; choose one of {', '.join(ENDMEMBER_INITS)} "
                             f"or a .npy file of (bands, endmembers) spectra")
        if sam is not None and (mask_score != "random" or mask_ratio != 0.75 or distill):
            raise InputError("a SAM-layout encoder (sam) is pretrained with the strided-grid mask: mask_score random, "
                             "mask_ratio 0.75, and no distill section")
        self.distill_options = CrossSpectralOptions.parse(distill) if distill else None
        super().__init__()

    @property
    def tile_size(self) -> int:
        return self.hparams.img_size or self.data_info.tile_size

    def configure_models(self) -> None:
        h = self.hparams
        self.model = MaskedAutoencoder(
            self.preprocessing.channels, self.tile_size, h.patch_size, h.embed_dim, h.depth, h.num_heads, h.decoder_embed_dim,
            h.decoder_depth, h.decoder_num_heads, endmembers=h.endmembers, learnable_endmembers=h.learnable_endmembers, sam=h.sam,
            pixel_abundances=h.pixel_abundances,
        )

    def configure_losses(self) -> None:
        self.loss_weights = check_loss_weights(self.hparams.loss_weights or {"mse": 1.0})

    def configure_metrics(self) -> None:
        # PSNR and SSIM in the data's own units with one fixed range (that of the training pixels),
        # so values are comparable across batches, epochs and recipes. Validation and test never
        # run at once, so one set serves both, logged under the stage's name.
        data_range = self.data_info.data_range
        self.metrics = torch.nn.ModuleDict({
            "psnr_masked": PeakSignalNoiseRatio(data_range), "psnr_tile": PeakSignalNoiseRatio(data_range),
            "ssim_masked": StructuralSimilarityIndexMeasure(data_range=data_range),
            "ssim_tile": StructuralSimilarityIndexMeasure(data_range=data_range),
            "sam_masked": SpectralAngleMapper(), "sam_tile": SpectralAngleMapper(),
        })

    def configure_distiller(self) -> CrossSpectralDistiller | None:
        if self.distill_options is None:
            return None
        h = self.hparams
        return CrossSpectralDistiller(self.distill_options, self.preprocessing, h.depth, h.embed_dim, self.tile_size)

    def parameter_overrides(self) -> dict[str, dict]:
        # Endmember spectra and a learnable band-alignment matrix are physical quantities: decaying
        # them towards zero (the mean spectrum, after normalisation) would pull every endmember to
        # the same spectrum, so they get no weight decay. Adam moves every parameter by about lr per
        # step whatever its gradient's size, and the mixing loss barely constrains the endmembers
        # (many simplices fit the pixels), so they learn at their own, smaller ``endmember_lr``: on
        # the unmixing references the SAD to the true endmembers is lower at 1.5e-4 than at the
        # network's 1.5e-3 (docs/results-unmixing.md).
        return {"distiller.alignment": {"weight_decay": 0.0},
                "mixing.endmembers": {"weight_decay": 0.0, "lr": self.hparams.endmember_lr}}

    def on_fit_start(self) -> None:
        if self.distiller is not None:
            rank_zero_info(f"teacher {self.distill_options.teacher}: layer pairs {self.distiller.pairs}, load report {self.distiller.load_report}")
        mixing = self.model.mixing
        if mixing is not None and self.hparams.endmember_init != "random" and self.global_step == 0:
            # Abundances sum to one, so E_normalised = (E − μ) / σ mixes exactly like E.
            mixing.endmembers.data.copy_(self.preprocessing.standardise(self._initial_endmembers(mixing.endmembers_count), channel_axis=0))

    def _initial_endmembers(self, count: int) -> torch.Tensor:
        """(C, M) endmembers in the data's units: VCA on the training pixels, or the given file."""
        init, channels = self.hparams.endmember_init, self.preprocessing.channels
        if init == "vca":
            from rsdistill.unmixing import vca

            # VCA needs the pixels in physical units: z-scoring shifts the data cone off the origin,
            # which breaks VCA's projective projection (measured: SAD 0.50 rad on Samson instead of
            # 0.08). Its random directions follow the run's seed (Lightning's seed_everything).
            pixels = torch.cat([b["image"].permute(0, 2, 3, 1)[b["valid"]] for b in self.trainer.datamodule.train_dataloader()])
            physical = self.preprocessing.denormalise(pixels, channel_axis=-1).double()
            return torch.from_numpy(vca(physical.numpy().T, count, seed=int(os.environ.get("PL_GLOBAL_SEED", 0)))).float()
        from rsdistill.data.paths import resolve
        from rsdistill.io.npy import load_npy

        endmembers = np.array(load_npy(resolve(init)), dtype=np.float32)  # a copy: the file is memory-mapped
        if endmembers.shape != (channels, count):
            raise InputError(f"{init}: endmember_init holds {'×'.join(map(str, endmembers.shape))}; expected (bands, endmembers) = ({channels}, {count})")
        return torch.from_numpy(endmembers)

    def on_train_batch_end(self, outputs, batch, batch_idx) -> None:
        mixing = self.model.mixing
        if mixing is not None and self.hparams.nonnegative_endmembers:
            # Projected gradient: endmember spectra are reflectances, E = E_normalised·σ + μ ≥ 0.
            with torch.no_grad():
                floor = self.preprocessing.standardise(torch.zeros_like(mixing.endmembers), channel_axis=0)
                mixing.endmembers.data.copy_(torch.maximum(mixing.endmembers, floor))

    def _step(self, batch, predict: str, patch_mask: PatchMask | None = None):
        """Forward and loss terms; ``predict``: the pixel head on ``all`` patches or only the
        ``masked`` ones; ``patch_mask``: a given mask instead of the recipe's masking score."""
        images, valid = batch["image"], batch["valid"]
        h = self.hparams
        student_layers = self.distiller.student_layers if self.distiller is not None else ()
        outputs = self.model(images, h.mask_ratio, h.mask_score, h.mask_noise, return_layers=student_layers, predict=predict,
                             patch_mask=patch_mask)
        target = patchify(images, h.patch_size)
        denormalise = lambda spectra: self.preprocessing.denormalise(spectra, channel_axis=-1)  # noqa: E731
        terms = reconstruction_terms(self.loss_weights, outputs, target, patch_validity(valid, h.patch_size), h.patch_size,
                                     tuple(images.shape[2:]), denormalise, volume_floor=h.volume_floor)
        if self.distiller is not None:
            grid = (images.shape[2] // h.patch_size, images.shape[3] // h.patch_size)
            terms["kd"] = self.distiller(images, valid, outputs["layers"], outputs["ids_keep"], grid)
            terms["total"] = terms["total"] + self.distill_options.weight * terms["kd"]
        return outputs, target, terms

    def training_step(self, batch, batch_idx):
        _, _, terms = self._step(batch, predict="masked")
        self.check_finite(terms)
        self.log_dict({f"train/{k}": v for k, v in terms.items()}, prog_bar=True)
        return terms["total"]

    def _evaluate(self, batch, stage: str) -> None:
        h, images = self.hparams, batch["image"]
        grid = (images.shape[2] // h.patch_size, images.shape[3] // h.patch_size)
        if self.model.windowed:  # a SAM-layout encoder sees the strided grid only
            draw = lambda i, generator: strided_grid_mask(1, *grid, generator=generator)  # noqa: E731
        elif h.eval_mask == "random" or h.mask_score == "random":
            draw = lambda i, generator: random_patch_mask(1, grid[0] * grid[1], h.mask_ratio, generator=generator)  # noqa: E731
        else:
            with torch.no_grad():
                scores = patch_scores(images, h.mask_score, h.patch_size).cpu()
            draw = lambda i, generator: mask_from_scores(scores[i:i + 1], h.mask_ratio, h.mask_noise, generator)  # noqa: E731
        patch_mask = held_out_mask(batch["index"], draw, images.device)
        outputs, target, terms = self._step(batch, predict="all", patch_mask=patch_mask)
        self.log_dict({f"{stage}/{k}": v for k, v in terms.items()}, sync_dist=True)
        p = self.hparams.patch_size
        height, width = images.shape[2:]
        reflectance = lambda patches: self.preprocessing.denormalise(unpatchify(patches, p, height, width))  # noqa: E731
        truth = self.preprocessing.denormalise(images)
        pred = outputs["pred"].float()  # metrics in float32 under bf16 autocast
        composite = torch.where(outputs["mask"][..., None].bool(), pred, target)
        full = reflectance(pred)
        pixel_mask = unpatchify(outputs["mask"][..., None].expand_as(target), p, height, width)[:, 0].bool()
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

    def _log_metrics(self, stage: str) -> None:
        for name, metric in self.metrics.items():
            self.log(f"{stage}/{name}", metric.compute(), prog_bar=name in ("psnr_masked", "sam_masked"))
            metric.reset()

    def validation_step(self, batch, batch_idx):
        self._evaluate(batch, "val")

    def on_validation_epoch_end(self):
        self._log_metrics("val")

    def test_step(self, batch, batch_idx):
        self._evaluate(batch, "test")

    def on_test_epoch_end(self):
        self._log_metrics("test")

    def predict_step(self, batch, batch_idx):
        """The encoder's final patch features of each tile, nothing masked: (N, D, h, w)."""
        return self.model.encoder.forward_features(batch["image"])[0]

    def exported_encoder(self):
        return self.model.encoder
