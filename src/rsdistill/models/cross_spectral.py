"""HyperKD's cross-spectral teacher (arXiv 2508.09453): a frozen multispectral ViT that sees the
student's hyperspectral tile aggregated into its own bands, and the feature distillation from it.

Flow for a batch of student tiles (N, S, H, W), normalised with the student's statistics:
undo the student normalisation → ``scale`` to the teacher's units → band aggregation A (T, S)
from ``band_alignment`` (``mean``, ``srf``, ``nearest``, or ``learnable``: a matrix initialised
from ``mean`` and trained with the student) → teacher normalisation → frozen teacher (no
parameter gradients) → tokens of the requested layers. The teacher sees the whole, unmasked tile;
the student only its visible patches, so teacher tokens are taken at the student's kept positions
(resampled bilinearly to the student's patch grid when the two patch sizes differ). Each layer
pair (student layer s, teacher layer t) has its own linear projection student-dim → teacher-dim.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from rsdistill.errors import InputError
from rsdistill.losses.distillation import FEATURE_LOSSES, feature_kd_loss
from rsdistill.models.prithvi import load_prithvi
from rsdistill.models.vit import ViTEncoder, take_tokens
from rsdistill.models.weights import CARD_SUFFIX, load_encoder
from rsdistill.spectral.alignment import ALIGNMENT_METHODS, band_alignment
from rsdistill.spectral.sensors import Sensor, get_sensor

DEFAULT_LAYER = 8  # HyperKD distils layer 8 of student and teacher


@dataclass
class CrossSpectralOptions:
    """The ``distill`` section of a recipe.

    teacher: an rsdistill encoder (.safetensors + card) or a Prithvi checkpoint (official layout).
    alignment: ``mean`` | ``srf`` | ``nearest`` | ``learnable``.
    layers: [[student_layer, teacher_layer], ...]; default [[8, 8]] clipped to the depths present.
    loss: ``kl`` | ``mse`` | ``cosine``; weight: β in λ·(MSE + (1 − SSIM)) + β·KD.
    scale: factor from the student's data units to the teacher's (1 when both are reflectance × 10000).
    """

    teacher: str
    alignment: str = "mean"
    layers: list[list[int]] | None = None
    loss: str = "kl"
    weight: float = 1.0
    temperature: float = 1.0
    scale: float = 1.0
    num_heads: int | None = None
    trust_pickle: bool = False

    def __post_init__(self):
        if self.alignment not in (*ALIGNMENT_METHODS, "learnable"):
            raise InputError(f"unknown alignment {self.alignment!r}; choose one of {', '.join(ALIGNMENT_METHODS)}, learnable")
        if self.loss not in FEATURE_LOSSES:
            raise InputError(f"unknown distillation loss {self.loss!r}; choose one of {', '.join(FEATURE_LOSSES)}")
        if self.temperature <= 0:
            raise InputError(f"distillation temperature must be positive, got {self.temperature}")

    @classmethod
    def parse(cls, options: dict) -> CrossSpectralOptions:
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(options) - known)
        if unknown:
            raise InputError(f"unknown distill options {unknown}; known: {', '.join(sorted(known))}")
        if "teacher" not in options:
            raise InputError("distill needs 'teacher': the path of a teacher encoder or checkpoint")
        return cls(**options)


def load_teacher(path, num_heads: int | None = None, trust_pickle: bool = False) -> tuple[ViTEncoder, dict]:
    """A frozen teacher and its card (``sensor`` or ``wavelengths``, ``normalisation``).

    An rsdistill encoder is recognised by its JSON card next to the weights; anything else is read
    as a Prithvi checkpoint.
    """
    path = Path(path)
    if path.with_suffix(CARD_SUFFIX).is_file():
        encoder, card = load_encoder(path)
    else:
        encoder, card = load_prithvi(path, num_heads=num_heads, trust_pickle=trust_pickle)
    if not card.get("normalisation") or card["normalisation"].get("mean") is None:
        raise InputError(f"{path}: the teacher's card has no normalisation (per-band mean/std); cannot prepare its input")
    encoder.requires_grad_(False)
    return encoder.eval(), card


def teacher_sensor(card: dict, path) -> Sensor:
    if card.get("sensor"):
        return get_sensor(card["sensor"])
    if card.get("wavelengths"):
        return Sensor.from_wavelengths(f"teacher {Path(path).name}", card["wavelengths"])
    raise InputError(f"{path}: the teacher's card names neither a sensor nor wavelengths; cannot align bands to it")


def resolve_layer_pairs(layers, student_depth: int, teacher_depth: int) -> list[tuple[int, int]]:
    """Explicit pairs are checked against both depths; the default is (8, 8) clipped to them."""
    if layers is None:
        return [(min(DEFAULT_LAYER, student_depth), min(DEFAULT_LAYER, teacher_depth))]
    pairs = []
    for pair in layers:
        if len(pair) != 2:
            raise InputError(f"a layer pair is [student_layer, teacher_layer], got {pair}")
        student, teacher = int(pair[0]), int(pair[1])
        if not 1 <= student <= student_depth:
            raise InputError(f"student layer {student} is outside 1..{student_depth} (the student's depth)")
        if not 1 <= teacher <= teacher_depth:
            raise InputError(f"teacher layer {teacher} is outside 1..{teacher_depth} (the teacher's depth)")
        pairs.append((student, teacher))
    return pairs


class CrossSpectralDistiller(nn.Module):
    """Teacher features at the student's visible patches, and the KD loss against the student's."""

    def __init__(self, options: dict, wavelengths, band_mean, band_std, student_depth: int, student_dim: int, img_size: int):
        super().__init__()
        self.options = CrossSpectralOptions.parse(options)
        o = self.options
        if wavelengths is None:
            raise InputError("cross-spectral distillation needs the student's wavelengths (from the scenes or a sensor)")
        self.teacher, card = load_teacher(o.teacher, o.num_heads, o.trust_pickle)
        if img_size % self.teacher.patch_size:
            raise InputError(f"tile size {img_size} is not a multiple of the teacher's patch size {self.teacher.patch_size}")
        self.load_report = card.get("load_report", {})
        student_sensor = Sensor.from_wavelengths("student", wavelengths)
        target = teacher_sensor(card, o.teacher)
        if len(target) != self.teacher.bands:
            raise InputError(f"{o.teacher}: the teacher takes {self.teacher.bands} bands but its sensor {target.name} has {len(target)}")
        weights = torch.from_numpy(band_alignment(student_sensor, target, "mean" if o.alignment == "learnable" else o.alignment))
        if o.alignment == "learnable":
            self.alignment = nn.Parameter(weights)
        else:
            self.register_buffer("alignment", weights)
        self.register_buffer("student_mean", torch.as_tensor(band_mean, dtype=torch.float32)[:, None, None])
        self.register_buffer("student_std", torch.as_tensor(band_std, dtype=torch.float32)[:, None, None])
        self.register_buffer("teacher_mean", torch.as_tensor(card["normalisation"]["mean"], dtype=torch.float32)[:, None, None])
        self.register_buffer("teacher_std", torch.as_tensor(card["normalisation"]["std"], dtype=torch.float32)[:, None, None])
        self.pairs = resolve_layer_pairs(o.layers, student_depth, self.teacher.depth)
        self.projections = nn.ModuleDict({f"{s}_{t}": nn.Linear(student_dim, self.teacher.embed_dim) for s, t in self.pairs})

    @property
    def student_layers(self) -> tuple[int, ...]:
        return tuple(sorted({s for s, _ in self.pairs}))

    def train(self, mode: bool = True):
        super().train(mode)
        self.teacher.eval()  # frozen: always in inference mode
        return self

    def teacher_input(self, images: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        """Student tiles (N, S, H, W) normalised, validity (N, H, W) -> teacher input (N, T, H, W)."""
        raw = (images * self.student_std + self.student_mean) * self.options.scale
        aligned = torch.einsum("ts,nshw->nthw", self.alignment, raw)
        return torch.where(valid[:, None], (aligned - self.teacher_mean) / self.teacher_std, 0.0)

    def teacher_tokens(self, images: torch.Tensor, valid: torch.Tensor, grid: tuple[int, int]) -> dict[int, torch.Tensor]:
        """{teacher layer: (N, grid_h · grid_w, D_T)} patch tokens on the student's patch grid."""
        with torch.set_grad_enabled(self.options.alignment == "learnable" and torch.is_grad_enabled()):
            _, layers = self.teacher(self.teacher_input(images, valid), tuple(t for _, t in self.pairs))
        n, side_h, side_w = images.shape[0], images.shape[2] // self.teacher.patch_size, images.shape[3] // self.teacher.patch_size
        tokens = {}
        for layer, x in layers.items():
            patches = x[:, 1:]
            if (side_h, side_w) != grid:
                maps = patches.transpose(1, 2).reshape(n, -1, side_h, side_w)
                patches = F.interpolate(maps, size=grid, mode="bilinear", align_corners=False).flatten(2).transpose(1, 2)
            tokens[layer] = patches
        return tokens

    def forward(self, images, valid, student_layers: dict[int, torch.Tensor], ids_keep: torch.Tensor, grid) -> torch.Tensor:
        """KD loss averaged over layer pairs.

        images (N, S, H, W); valid (N, H, W); student_layers {layer: (N, 1 + L_keep, D_S)} from the
        masked encoder; ids_keep (N, L_keep) indices of the visible patches; grid (grid_h, grid_w).
        """
        teacher = self.teacher_tokens(images, valid, grid)
        losses = []
        for s, t in self.pairs:
            target = take_tokens(teacher[t], ids_keep)
            student = self.projections[f"{s}_{t}"](student_layers[s][:, 1:])
            losses.append(feature_kd_loss(student, target, self.options.loss, self.options.temperature))
        return torch.stack(losses).mean()

