"""``MaskCDKD``: label-free distillation of a ViT student from a frozen SAM-layout teacher with MMoA.

Shu, Zhang et al., "Mask-CDKD", ISPRS J. Photogramm. Remote Sens. 236 (2026). One step on a batch
of unlabelled tiles (N, C, H, W), normalised with the data's statistics:

1. one mask for both sides (75 %): ``strided`` (the official "teacher-safe" stride-2 grid with a
   random shift, ``masking.strided_grid_mask``: the teacher runs on the visible tokens as a
   (h/2 × w/2) grid, as the official code) or ``random`` (a truly random 75 %: the teacher sees the
   whole tile and its features are taken at the student's visible positions);
2. student: the MAE of ``models.mae`` (ViT encoder on the visible patches, its decoder predicts the
   masked ones); teacher: ``MMoAEncoder`` (frozen SAM-layout encoder, or Galileo fed the tiles by band
   alignment (``teacher_options``, as ``encoder_options`` elsewhere); trainable adapters and gates)
   on its own normalisation of the same pixels, with its own ``MAEDecoder``. The student's patches
   are the teacher's (the two token grids are paired patch for patch);
3. losses: teacher MAE and student MAE (MSE on the masked patches; ``target``: the data-normalised
   pixels, or ``patch_normalised`` as MAE's ``norm_pix_loss``: each patch to zero mean and unit
   variance, the default: the official code regresses raw 0-255 pixels, whose scale would make the
   losses' ratio r depend on image brightness), and the feature KD (``distill.mask_cdkd.FeatureKD``);
4. total = λ_KD·KD + λ_T·L_T + λ_S·L_S with λ from the r-schedule (``distill.r_schedule``), whose
   state is saved in every checkpoint; stage, r and λ are logged.

The student encoder is written as ``encoder.safetensors`` + card when the fit ends (``BaseTask``),
and the teacher with its distilled adapters as ``teacher.safetensors`` + card.
No-data pixels are not excluded from the MAE losses (the VHR RGB tiles this is meant for have none).
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F

from rsdistill.data.info import TileDataInfo
from rsdistill.distill.mask_cdkd import FeatureKD
from rsdistill.distill.r_schedule import STAGES, RSchedule
from rsdistill.errors import InputError
from rsdistill.masking import PatchMask, held_out_mask, random_patch_mask, strided_grid_mask
from rsdistill.models.mae import MAEDecoder, MaskedAutoencoder
from rsdistill.models.mmoa import MMoAEncoder, MMoAOptions
from rsdistill.models.registry import pretrained_backbone
from rsdistill.tasks.base import BaseTask
from rsdistill.tokens import patchify, take_tokens

ADAPTABLE = ("sam", "galileo")  # encoders MMoA adapts (models.mmoa)
MASKS = ("strided", "random")
TARGETS = ("normalised", "patch_normalised")
MASK_RATIO = 0.75


class MaskCDKD(BaseTask):
    DATA_INFO = TileDataInfo

    def __init__(
        self,
        data_info: dict | None = None,
        teacher: str | None = None,
        teacher_card: dict | None = None,
        teacher_options: dict | None = None,
        mmoa: dict | None = None,
        embed_dim: int = 384,
        depth: int = 12,
        num_heads: int = 6,
        decoder_depth: int = 4,
        decoder_num_heads: int = 8,
        student_decoder_dim: int | None = None,
        teacher_decoder_dim: int | None = None,
        mask: str = "strided",
        target: str = "patch_normalised",
        kd_layers: list[list[int]] | None = None,
        bidirectional: bool = True,
        schedule: dict | None = None,
        lr: float = 1.5e-4,
        weight_decay: float = 0.05,
        warmup_epochs: float = 0.0,
    ):
        super().__init__()

    def configure_models(self) -> None:
        h = self.hparams
        if h.mask not in MASKS or h.target not in TARGETS:
            raise InputError(f"mask must be one of {MASKS} and target one of {TARGETS}, got {h.mask!r}, {h.target!r}")
        if h.teacher is None and h.teacher_card is None:
            raise InputError("Mask-CDKD needs teacher: a SAM checkpoint, an rsdistill SAM-layout encoder or a Galileo weights name")
        encoder, self.teacher_preprocessing, self.hparams["teacher_card"] = pretrained_backbone(h.teacher, h.teacher_card, h.teacher_options,
                                                                                               self.preprocessing)
        if getattr(encoder, "name", None) not in ADAPTABLE:
            kind = getattr(encoder, "name", type(encoder).__name__)
            raise InputError(f"{h.teacher}: the Mask-CDKD teacher must be a {' or '.join(ADAPTABLE)} encoder, got a {kind} encoder")
        if self.teacher_preprocessing.bands != self.preprocessing.bands:
            raise InputError(f"{h.teacher}: the teacher takes {self.teacher_preprocessing.bands} bands but the tiles have "
                             f"{self.preprocessing.bands}; feed it by band alignment (teacher_options: {{align: srf, ...}})")
        self.teacher = MMoAEncoder(encoder, MMoAOptions(**(h.mmoa or {})))
        patch, tile = encoder.patch_size, self.data_info.tile_size
        if tile % (2 * patch):
            raise InputError(f"tile size {tile}: Mask-CDKD needs an even token grid of the teacher's {patch}-pixel patches")
        grid = tile // patch
        channels = self.preprocessing.channels
        self.student = MaskedAutoencoder(channels, tile, patch, h.embed_dim, h.depth, h.num_heads, h.student_decoder_dim or h.embed_dim,
                                         h.decoder_depth, h.decoder_num_heads)
        self.teacher_decoder = MAEDecoder(encoder.embed_dim, h.teacher_decoder_dim or encoder.embed_dim, h.decoder_depth, h.decoder_num_heads,
                                          4.0, patch**2 * channels, (grid, grid))
        self.kd = FeatureKD(h.embed_dim, encoder.embed_dim, h.depth, encoder.depth, h.kd_layers, h.bidirectional)
        self.schedule = RSchedule(**(h.schedule or {}))

    def exported_encoder(self):
        return self.student.encoder

    def export(self, path, metrics: dict | None = None) -> None:
        """The student as ``path``; beside it ``teacher.safetensors``: the teacher with its
        distilled adapters (a ``sam_mmoa`` or ``galileo_mmoa`` encoder in the teacher's own normalisation), the
        backbone of the paper's "teacher with adapters" rows."""
        from rsdistill.models.registry import save_encoder

        super().export(path, metrics)
        card = {"bands": self.teacher_preprocessing.channels, "recipe": self.recipe, "metrics": metrics or {},
                "teacher_of": str(path)}
        save_encoder(self.teacher, Path(path).with_name("teacher.safetensors"), self.teacher_preprocessing, card)

    def on_fit_end(self) -> None:
        """Encoders (``BaseTask``), then ``r_schedule.png``: r and the stage over training."""
        super().on_fit_end()
        log_dir = self.run_folder()
        if log_dir is not None and (log_dir / "metrics.csv").is_file():
            from rsdistill.figures import r_schedule_figure

            r_schedule_figure(Path(log_dir) / "metrics.csv", Path(log_dir) / "r_schedule.png", STAGES,
                              (self.schedule.to_middle_below, self.schedule.to_late_above))

    def _mask(self, n: int, grid: tuple[int, int], device=None, generator: torch.Generator | None = None) -> PatchMask:
        if self.hparams.mask == "strided":
            return strided_grid_mask(n, *grid, device=device, generator=generator)
        return random_patch_mask(n, grid[0] * grid[1], MASK_RATIO, device=device, generator=generator)

    def _teacher(self, images: torch.Tensor, patch_mask, grid: tuple[int, int]):
        """Teacher features at the visible patches: (last (N, L_keep, C), {layer: (N, L_keep, C)}); a
        Galileo teacher's band-group tokens all take part and are averaged per patch (``models.mmoa``)."""
        raw = self.preprocessing.denormalise(images)
        tokens = self.teacher.encoder.embed(self.teacher_preprocessing(raw))  # (N, h, w, C), Galileo (N, h, w, G, C)
        n, token = len(tokens), tokens.shape[3:]
        layers = self.kd.teacher_layers
        if self.hparams.mask == "strided":  # the visible patches form a (h/2, w/2) grid in ids_keep's order
            visible = take_tokens(tokens.flatten(1, 2).flatten(2), patch_mask.ids_keep).view(n, grid[0] // 2, grid[1] // 2, *token)
            last, taps = self.teacher.forward_blocks(visible, layers)
            return last.flatten(1, 2), {k: v.flatten(1, 2) for k, v in taps.items()}
        last, taps = self.teacher.forward_blocks(tokens, layers)
        at_visible = lambda x: take_tokens(x.flatten(1, 2), patch_mask.ids_keep)  # noqa: E731
        return at_visible(last), {k: at_visible(v) for k, v in taps.items()}

    def _terms(self, images: torch.Tensor, keys: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """Loss terms of a batch; with ``keys`` (held-out tiles' indices) each tile's mask is drawn
        from its key (``masking.held_out_mask``), otherwise from the global RNG."""
        patch = self.teacher.patch_size
        grid = (images.shape[2] // patch, images.shape[3] // patch)
        if keys is None:
            patch_mask = self._mask(len(images), grid, images.device)
        else:
            patch_mask = held_out_mask(keys, lambda i, generator: self._mask(1, grid, generator=generator), images.device)
        student = self.student(images, return_layers=self.kd.student_layers, predict="masked", patch_mask=patch_mask)
        teacher_last, teacher_taps = self._teacher(images, patch_mask, grid)
        decoded = self.teacher_decoder(teacher_last, patch_mask.ids_restore, grid)
        teacher_pred = self.teacher_decoder.pred(take_tokens(decoded, patch_mask.ids_masked))
        target = take_tokens(patchify(images, patch), patch_mask.ids_masked)
        if self.hparams.target == "patch_normalised":
            target = (target - target.mean(-1, keepdim=True)) / (target.var(-1, keepdim=True) + 1e-6).sqrt()
        return {"kd": self.kd({k: v[:, 1:] for k, v in student["layers"].items()}, teacher_taps),
                "teacher_mae": F.mse_loss(teacher_pred.float(), target), "student_mae": F.mse_loss(student["pred_masked"].float(), target)}

    def training_step(self, batch, batch_idx):
        terms = self._terms(batch["image"])
        r, weights = self.schedule.update(terms["teacher_mae"].item(), terms["student_mae"].item())
        terms["total"] = weights[0] * terms["kd"] + weights[1] * terms["teacher_mae"] + weights[2] * terms["student_mae"]
        self.check_finite(terms)
        self.log_dict({f"train/{k}": v for k, v in terms.items()}, prog_bar=True)
        self.log_dict({"train/r": r, "train/stage": float(STAGES.index(self.schedule.stage)), "train/lambda_kd": weights[0]})
        return terms["total"]

    def validation_step(self, batch, batch_idx):
        terms = self._terms(batch["image"], batch["index"])  # the same masks every validation
        self.log_dict({f"val/{k}": v for k, v in terms.items()}, sync_dist=True)

    def test_step(self, batch, batch_idx):
        terms = self._terms(batch["image"], batch["index"])
        self.log_dict({f"test/{k}": v for k, v in terms.items()}, sync_dist=True)

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        super().on_save_checkpoint(checkpoint)
        checkpoint["r_schedule"] = self.schedule.state_dict()

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        super().on_load_checkpoint(checkpoint)
        if "r_schedule" in checkpoint:
            self.schedule.load_state_dict(checkpoint["r_schedule"])
