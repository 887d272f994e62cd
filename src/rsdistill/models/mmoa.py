"""Multi-scale mixture of adapters (MMoA) on a frozen pretrained encoder: Mask-CDKD's teacher.

Shu, Zhang et al., "Mask-CDKD", ISPRS J. Photogramm. Remote Sens. 236 (2026), Sec. 3.2; layout
read from the official code (github whujader/mask_cdkd, ``common.py``, ``teacher_sam_vit_mmoa.py``).
In every block the attention half is SAM's, unchanged; the FFN residual becomes

    x + Σ_j w_j ⊙ F_j(norm2(x))     over the streams j = frozen FFN, fine adapter, coarse adapter,

with per-token weights w from ``ExpertGate``. An adapter (``MultiScaleAdapter``): Linear C→C/4 +
GELU, on the token grid an ASPP (per dilation a depthwise 3×3 atrous conv + GELU + 1×1 + GELU, a
global-average branch, a 1×1 + GELU fusion), squeeze-and-excitation (reduction 16), a depthwise
3×3 + GELU, then Linear C/4→C. Dilations (1, 3, 5) fine and (7, 9, 11) coarse.

Options (``MMoAOptions``):
- ``start``: ``official`` (as the paper's code: adapters randomly initialised, the FFN one of the
  gated streams, so the teacher is no longer SAM at step 0) or ``identity`` (the default here: the
  adapters' last Linear zero-initialised and the FFN kept ungated, x + F_ffn + Σ_adapters w_j F_j,
  so at step 0 the teacher is exactly the frozen SAM and distillation starts from its features;
  the adapters then learn a correction instead of having to first undo a random one);
- ``scales``: the dilation groups, one adapter each ([[1, 3, 5]] is the single-scale ablation);
- ``fusion``: ``gate`` or ``sum`` (the additive-fusion ablation: every stream weighted 1).

The backbone is frozen; adapters and gates train. Shapes: token grids (B, H, W, C).

The backbone is the paper's SAM image encoder or Galileo (``models.galileo``): any encoder with
``embed`` (images -> token grid), ``blocks`` exposing ``attend``, ``norm2`` and ``mlp``, and the
encoder attributes. Galileo's grid holds a token per band group, (B, H, W, G, C): its blocks attend
over all of them as it does, each adapter's convolutions run on each group's grid, and the features
handed to distillation and heads are the group tokens' mean per position (as Galileo's own
``forward_features``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from rsdistill.errors import InputError
from rsdistill.models.sam import SAMImageEncoder


@dataclass
class MMoAOptions:
    start: str = "identity"
    scales: list[list[int]] = field(default_factory=lambda: [[1, 3, 5], [7, 9, 11]])
    fusion: str = "gate"
    ratio: float = 0.25
    se_reduction: int = 16

    def __post_init__(self):
        if self.start not in ("official", "identity"):
            raise InputError(f"MMoA start must be official or identity, got {self.start!r}")
        if self.fusion not in ("gate", "sum"):
            raise InputError(f"MMoA fusion must be gate or sum, got {self.fusion!r}")
        if not self.scales or not all(self.scales):
            raise InputError(f"MMoA scales: one or more non-empty dilation groups, got {self.scales}")


class ASPP(nn.Module):
    """Atrous spatial pyramid on (B, c, H, W): depthwise dilated branches + a global branch, fused."""

    def __init__(self, channels: int, dilations: list[int]):
        super().__init__()
        self.branches = nn.ModuleList(nn.Sequential(
            nn.Conv2d(channels, channels, 3, padding=d, dilation=d, groups=channels, bias=False), nn.GELU(),
            nn.Conv2d(channels, channels, 1, bias=False), nn.GELU()) for d in dilations)
        self.global_branch = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Conv2d(channels, channels, 1, bias=False), nn.GELU())
        self.fuse = nn.Sequential(nn.Conv2d((len(dilations) + 1) * channels, channels, 1, bias=False), nn.GELU())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = self.global_branch(x).expand(-1, -1, *x.shape[2:])  # a 1×1 map, the same at every position
        return self.fuse(torch.cat([branch(x) for branch in self.branches] + [pooled], dim=1))


class SqueezeExcite(nn.Module):
    """Channel attention (Hu et al., CVPR 2018) on (B, c, H, W)."""

    def __init__(self, channels: int, reduction: int):
        super().__init__()
        hidden = max(1, channels // reduction)
        self.fc1, self.fc2 = nn.Linear(channels, hidden, bias=False), nn.Linear(hidden, channels, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weights = torch.sigmoid(self.fc2(F.gelu(self.fc1(x.mean(dim=(2, 3))))))
        return x * weights[:, :, None, None]


class MultiScaleAdapter(nn.Module):
    """(B, H, W, C) -> (B, H, W, C) correction: down, ASPP, SE, depthwise conv, up."""

    def __init__(self, dim: int, dilations: list[int], ratio: float, se_reduction: int, zero_init: bool):
        super().__init__()
        hidden = max(1, int(dim * ratio))
        self.down, self.up = nn.Linear(dim, hidden), nn.Linear(hidden, dim)
        self.aspp = ASPP(hidden, dilations)
        self.se = SqueezeExcite(hidden, se_reduction)
        self.dwconv = nn.Conv2d(hidden, hidden, 3, padding=1, groups=hidden, bias=False)
        if zero_init:
            nn.init.zeros_(self.up.weight)
            nn.init.zeros_(self.up.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, H, W, C), or (B, H, W, G, C) band-group tokens, each group's grid adapted on its own."""
        if x.ndim == 5:
            b, h, w, g, c = x.shape
            return self(x.permute(0, 3, 1, 2, 4).reshape(b * g, h, w, c)).reshape(b, g, h, w, c).permute(0, 2, 3, 1, 4)
        grid = F.gelu(self.down(x)).permute(0, 3, 1, 2)
        grid = F.gelu(self.dwconv(self.se(self.aspp(grid))))
        return self.up(grid.permute(0, 2, 3, 1))


class ExpertGate(nn.Module):
    """Per-token weights over E streams (the official ``MoAGate``): q, k, v = Linear(C, E) each,
    A = softmax_row(q ⊗ kᵀ) (E × E), w = softmax(A v). (B, H, W, C) -> (B, H, W, E)."""

    def __init__(self, dim: int, experts: int):
        super().__init__()
        self.query, self.key, self.value = (nn.Linear(dim, experts, bias=False) for _ in range(3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q, k, v = self.query(x), self.key(x), self.value(x)
        attention = (q[..., :, None] * k[..., None, :]).softmax(dim=-1)
        return (attention @ v[..., :, None])[..., 0].softmax(dim=-1)


class MMoA(nn.Module):
    """The adapters and gate of one block; ``forward(x, block)`` is that block with MMoA in its FFN."""

    def __init__(self, dim: int, options: MMoAOptions):
        super().__init__()
        self.options = options
        self.adapters = nn.ModuleList(MultiScaleAdapter(dim, list(d), options.ratio, options.se_reduction, options.start == "identity")
                                      for d in options.scales)
        gated = len(self.adapters) + (options.start == "official")
        self.gate = ExpertGate(dim, gated) if options.fusion == "gate" else None

    def forward(self, x: torch.Tensor, block: nn.Module) -> torch.Tensor:
        x = x + block.attend(x)
        normed = block.norm2(x)
        ffn, corrections = block.mlp(normed), [adapter(normed) for adapter in self.adapters]
        streams = [ffn, *corrections] if self.options.start == "official" else corrections
        if self.gate is None:
            mixed = torch.stack(streams).sum(0)
        else:
            weights = self.gate(normed)
            mixed = sum(weights[..., j, None] * stream for j, stream in enumerate(streams))
        return x + mixed + (ffn if self.options.start == "identity" else 0)


class MMoAEncoder(nn.Module):
    """A frozen encoder (SAM or Galileo) with an ``MMoA`` per block; the encoder's keys stay under ``encoder.``.

    Saved as an encoder of its own (``name`` sam_mmoa or galileo_mmoa, ``config`` = the backbone's +
    ``mmoa``), so the teacher with its distilled adapters is a backbone the segmentation recipes can load."""

    def __init__(self, encoder: nn.Module, options: MMoAOptions | None = None):
        super().__init__()
        self.options = options or MMoAOptions()
        self.encoder = encoder.requires_grad_(False)
        self.mmoa = nn.ModuleList(MMoA(encoder.embed_dim, self.options) for _ in encoder.blocks)
        self.name = f"{encoder.name}_mmoa"
        self.patch_size, self.embed_dim, self.depth, self.bands = encoder.patch_size, encoder.embed_dim, encoder.depth, encoder.bands
        self.config = {**encoder.config, "mmoa": asdict(self.options)}

    def forward_blocks(self, x: torch.Tensor, layers: tuple[int, ...] = ()) -> tuple[torch.Tensor, dict[int, torch.Tensor]]:
        """Embedded tokens (B, h, w, C) or (B, h, w, G, C) -> (last block output, {layer: output}), each
        (B, h, w, C) (group tokens averaged), layers 1..depth."""
        taps = {}
        for index, (block, mmoa) in enumerate(zip(self.encoder.blocks, self.mmoa), start=1):
            x = mmoa(x, block)
            if index in layers:
                taps[index] = _per_position(x)
        return _per_position(x), taps

    def forward_features(self, images: torch.Tensor, layers: tuple[int, ...] | None = None) -> list[torch.Tensor]:
        """Dense features for heads: [(N, C, H/p, W/p) per layer] (default the last block's)."""
        last, taps = self.forward_blocks(self.encoder.embed(images), tuple(layers or ()))
        return [x.permute(0, 3, 1, 2) for x in ([last] if not layers else [taps[layer] for layer in layers])]


def _per_position(x: torch.Tensor) -> torch.Tensor:
    """(B, h, w, C) as it is; (B, h, w, G, C) band-group tokens -> their mean per position."""
    return x.mean(dim=3) if x.ndim == 5 else x


def sam_mmoa(mmoa: dict | None = None, **sam) -> MMoAEncoder:
    """Mask-CDKD's SAM teacher with its adapters, from a card's architecture record (``build_encoder``)."""
    return MMoAEncoder(SAMImageEncoder(**sam), MMoAOptions(**(mmoa or {})))


def galileo_mmoa(mmoa: dict | None = None, **galileo) -> MMoAEncoder:
    """Galileo with Mask-CDKD's adapters, from a card's architecture record (``build_encoder``)."""
    from rsdistill.models.galileo import GalileoEncoder

    return MMoAEncoder(GalileoEncoder(**galileo), MMoAOptions(**(mmoa or {})))
