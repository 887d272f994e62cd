"""HyperKD's cross-spectral teacher (arXiv 2508.09453): a frozen multispectral ViT that sees the
student's hyperspectral tile aggregated into its own bands, and the feature distillation from it.

Flow for a batch of student tiles (N, S, H, W), normalised with the student's ``Preprocessing``:
undo the student normalisation → the teacher's ``Preprocessing`` aligned from the student's bands
(``scale`` to the teacher's units, band aggregation A (T, S) from ``band_alignment``: ``mean``,
``srf``, ``nearest``, or ``learnable``: a matrix initialised from ``mean`` and trained with the
student; teacher normalisation) → frozen teacher (``distill.teacher`` policy) → tokens of the
requested layers. The teacher sees the whole, unmasked tile;
the student only its visible patches, so teacher tokens are taken at the student's kept positions
(resampled bilinearly to the student's patch grid when the two patch sizes differ). Each layer
pair (student layer s, teacher layer t) has its own linear projection student-dim → teacher-dim.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from rsdistill.distill.teacher import Distiller
from rsdistill.errors import InputError
from rsdistill.losses.distillation import FEATURE_LOSSES, feature_kd_loss
from rsdistill.models.registry import load_encoder
from rsdistill.preprocessing import Preprocessing
from rsdistill.spectral.alignment import ALIGNMENT_METHODS
from rsdistill.spectral.sensors import Sensor
from rsdistill.tokens import take_tokens

DEFAULT_LAYER = 8  # HyperKD distils layer 8 of student and teacher


@dataclass
class CrossSpectralOptions:
    """The ``distill`` section of a recipe.

    teacher: any encoder ``models.registry.load_encoder`` reads (an rsdistill card, Prithvi-EO-1.0,
    a Galileo folder) or a weights name (``galileo-nano``); teacher_options: its load options
    (Galileo: patch_size, month, gsd_m, normalisation). A teacher with band groups (Galileo) masks
    the groups the student's bands do not cover.
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
    teacher_options: dict | None = None

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


def resolve_layer_pairs(layers, student_depth: int, teacher_depth: int,
                        default: tuple[tuple[int, int], ...] = ((DEFAULT_LAYER, DEFAULT_LAYER),)) -> list[tuple[int, int]]:
    """Explicit [student, teacher] pairs are checked against both depths; the ``default`` pairs are
    clipped to them (repeated pairs once)."""
    if layers is None:
        return list(dict.fromkeys((min(s, student_depth), min(t, teacher_depth)) for s, t in default))
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


class CrossSpectralDistiller(Distiller):
    """Teacher features at the student's visible patches, and the KD loss against the student's."""

    def __init__(self, options: CrossSpectralOptions, student: Preprocessing, student_depth: int, student_dim: int, img_size: int):
        if student.wavelengths is None:
            raise InputError("cross-spectral distillation needs the student's wavelengths (from the scenes or a sensor)")
        teacher = load_encoder(options.teacher, trust_pickle=options.trust_pickle, num_heads=options.num_heads, **(options.teacher_options or {}))
        method = "mean" if options.alignment == "learnable" else options.alignment
        teacher = teacher.for_sensor(Sensor.from_wavelengths("student", student.wavelengths), method, options.scale)
        super().__init__(teacher.encoder)
        self.options, self.student = options, student
        if img_size % self.teacher.patch_size:
            raise InputError(f"tile size {img_size} is not a multiple of the teacher's patch size {self.teacher.patch_size}")
        self.load_report = {**teacher.card.get("load_report", {}), "input": teacher.card["input"]}
        self.teacher_preprocessing = teacher.preprocessing
        weights = torch.tensor(self.teacher_preprocessing.alignment, dtype=torch.float32)
        if options.alignment == "learnable":
            self.alignment = nn.Parameter(weights)
        else:
            self.register_buffer("alignment", weights)
        self.pairs = resolve_layer_pairs(options.layers, student_depth, self.teacher.depth)
        self.projections = nn.ModuleDict({f"{s}_{t}": nn.Linear(student_dim, self.teacher.embed_dim) for s, t in self.pairs})

    @property
    def student_layers(self) -> tuple[int, ...]:
        return tuple(sorted({s for s, _ in self.pairs}))

    def teacher_input(self, images: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        """Student tiles (N, S, H, W) normalised, validity (N, H, W) -> teacher input (N, T, H, W)."""
        return self.teacher_preprocessing(self.student.denormalise(images), valid, alignment=self.alignment)

    def teacher_tokens(self, images: torch.Tensor, valid: torch.Tensor, grid: tuple[int, int]) -> dict[int, torch.Tensor]:
        """{teacher layer: (N, grid_h · grid_w, D_T)} patch tokens on the student's patch grid."""
        layers = tuple(dict.fromkeys(t for _, t in self.pairs))
        with torch.set_grad_enabled(self.options.alignment == "learnable" and torch.is_grad_enabled()):
            maps = self.teacher.forward_features(self.teacher_input(images, valid), layers)  # [(N, D_T, side_h, side_w)]
        tokens = {}
        for layer, x in zip(layers, maps):
            if tuple(x.shape[2:]) != tuple(grid):
                x = F.interpolate(x, size=grid, mode="bilinear", align_corners=False)
            tokens[layer] = x.flatten(2).transpose(1, 2)
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
