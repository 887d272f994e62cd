"""Galileo's encoder on Sentinel-2 input, written from torch primitives with the official key names.

Tseng et al., "Galileo: Learning Global and Local Features in Pretrained Remote Sensing Models"
(arXiv 2502.09356); layout read from the official code (github nasaharvest/galileo at 0f0b5b9,
``single_file_galileo.py``: ``Encoder``, ``FlexiPatchEmbed``, ``GalileoBase.apply_encodings``).

Galileo tokenises each **band group** separately: a space-time input (H, W, T, bands) becomes one
token per (patch row, patch column, timestep, group), each group with its own patch projection
(``space_time_embed.<group>.proj``). rsdistill feeds the optical Sentinel-2 groups, one timestep:

    S2_RGB (B2, B3, B4) · S2_Red_Edge (B5, B6, B7) · S2_NIR_10m (B8) · S2_NIR_20m (B8A) · S2_SWIR (B11, B12)

A group the input does not cover is **masked**: it makes no token and takes no part in attention
(the official mask value 1), never a zero-filled token. The S1 and NDVI space-time groups and the
space, time and static modalities (SRTM, ERA5, location, ...) are always masked here, as the
official input builder ``construct_galileo_input(s2=...)`` masks them when only S2 is given — NDVI
included: the official builder does not compute it, and the reference outputs of the parity test
are made without it. Their weights are in the checkpoint and listed as unused in the load report.

Each token gets (Sec. 3 of the paper; ``apply_encodings``), in four quarters of the embedding:
its group's channel embedding, a 1-D sin-cos code of its timestep, a sin-cos month code, and a
2-D sin-cos code of its patch position scaled by the ground sampling distance a token covers,
``gsd_m · patch_size / 10`` (Galileo was trained on 10 m pixels). The patch projection is
flexible (FlexiViT): the 8×8 kernel is resized to any patch size by the pseudo-inverse of the
bicubic resize (``resized_kernel``). Blocks are pre-norm ViT blocks with separate q, k, v
projections; a LayerNorm ends the encoder (``add_layernorm_on_exit``).

Shapes: input (N, 10, H, W), Galileo's normalised S2 bands in ``S2_BANDS`` order (the model's
``Preprocessing`` makes it from any sensor); tokens (N, h, w, G, D) with h = H / p, G live groups.
"""

from __future__ import annotations

import copy
from functools import cache

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from rsdistill.errors import InputError

S2_BANDS = ("B2", "B3", "B4", "B5", "B6", "B7", "B8", "B8A", "B11", "B12")
# The official space-time groups in their order (the rows of ``s_t_channel_embed``); the optical
# ones are listed with the indices of their bands in S2_BANDS.
SPACE_TIME_GROUPS = ("S1", "S2_RGB", "S2_Red_Edge", "S2_NIR_10m", "S2_NIR_20m", "S2_SWIR", "NDVI")
OPTICAL_GROUPS = {"S2_RGB": (0, 1, 2), "S2_Red_Edge": (3, 4, 5), "S2_NIR_10m": (6,), "S2_NIR_20m": (7,), "S2_SWIR": (8, 9)}
BASE_GSD_M = 10.0  # metres per pixel of Galileo's pretraining data


def sincos_1d(dim: int, positions: torch.Tensor) -> torch.Tensor:
    """(M,) positions -> (M, dim) code [sin, cos], frequencies 1 / 10000^(k / (2·dim)), k < dim/2.

    The exponent k / (2·dim) is Galileo's (``get_1d_sincos_pos_embed_from_grid_torch``), not MAE's
    k / (dim / 2); the pretrained weights expect it.
    """
    omega = 1.0 / 10000 ** (torch.arange(dim // 2, dtype=torch.float64) / dim / 2.0)
    angles = positions.reshape(-1, 1).double() * omega
    return torch.cat([angles.sin(), angles.cos()], dim=1).float()


def spatial_code(dim: int, grid_h: int, grid_w: int, token_gsd_ratio: float) -> torch.Tensor:
    """(grid_h, grid_w, dim) 2-D code: first half the column, second half the row, each position
    multiplied by the ground distance a token covers in units of 10 m
    (``get_2d_sincos_pos_embed_with_resolution``)."""
    rows, cols = torch.meshgrid(torch.arange(grid_h), torch.arange(grid_w), indexing="ij")
    code = torch.cat([sincos_1d(dim // 2, cols * token_gsd_ratio), sincos_1d(dim // 2, rows * token_gsd_ratio)], dim=1)
    return code.reshape(grid_h, grid_w, dim)


@cache
def _resize_pinv(base: int, size: int) -> torch.Tensor:
    """(size², base²) pseudo-inverse of the bicubic, antialiased resize base×base -> size×size
    (FlexiViT, Beyer et al. 2023, Eq. 3; Galileo's ``FlexiPatchEmbed._calculate_pinv``)."""
    basis = torch.eye(base * base).reshape(base * base, 1, base, base)
    resize = F.interpolate(basis, (size, size), mode="bicubic", antialias=True).reshape(base * base, size * size)
    return torch.linalg.pinv(resize)


def resized_kernel(weight: torch.Tensor, size: int) -> torch.Tensor:
    """A patch projection kernel (D, C, b, b) for patches of ``size``: (D, C, size, size)."""
    base = weight.shape[-1]
    if size == base:
        return weight
    pinv = _resize_pinv(base, size).to(weight)
    return torch.einsum("pk,dck->dcp", pinv, weight.flatten(2)).reshape(*weight.shape[:2], size, size)


class GroupPatchEmbed(nn.Module):
    """One band group's flexible patch projection: (N, C_g, H, W) -> (N, D, H/p, W/p)."""

    def __init__(self, bands: int, dim: int, max_patch_size: int):
        super().__init__()
        self.proj = nn.Conv2d(bands, dim, max_patch_size, stride=max_patch_size)

    def forward(self, x: torch.Tensor, patch_size: int) -> torch.Tensor:
        return F.conv2d(x, resized_kernel(self.proj.weight, patch_size), self.proj.bias, stride=patch_size)


class Attention(nn.Module):
    """Multi-head self-attention with separate q, k, v projections (Galileo's key names)."""

    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.heads = heads
        self.q, self.k, self.v, self.proj = (nn.Linear(dim, dim) for _ in range(4))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (N, L, D) -> (N, L, D)."""
        n, length, dim = x.shape
        split = lambda t: t.reshape(n, length, self.heads, dim // self.heads).transpose(1, 2)  # noqa: E731
        out = F.scaled_dot_product_attention(split(self.q(x)), split(self.k(x)), split(self.v(x)))
        return self.proj(out.transpose(1, 2).reshape(n, length, dim))


class Block(nn.Module):
    """Pre-norm transformer block; LayerNorm eps 1e-5 as in the official code."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float):
        super().__init__()
        self.norm1, self.attn, self.norm2 = nn.LayerNorm(dim), Attention(dim, heads), nn.LayerNorm(dim)
        self.mlp = nn.Sequential()
        self.mlp.fc1, self.mlp.act, self.mlp.fc2 = nn.Linear(dim, int(dim * mlp_ratio)), nn.GELU(), nn.Linear(int(dim * mlp_ratio), dim)

    def attend(self, x: torch.Tensor) -> torch.Tensor:
        """The attention half, without its residual, over all tokens of a sample: (N, ..., D) -> (N, ..., D)
        (a token grid (N, h, w, G, D) attends as one sequence, as in ``tokens``)."""
        sequence = x.reshape(len(x), -1, x.shape[-1])
        return self.attn(self.norm1(sequence)).reshape(x.shape)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attend(x)
        return x + self.mlp(self.norm2(x))


class GalileoEncoder(nn.Module):
    """Galileo's encoder over the optical Sentinel-2 groups; ``forward_features`` as every rsdistill encoder.

    embed_dim, depth, num_heads, mlp_ratio, max_sequence_length, max_patch_size: the checkpoint's
    ``config.json`` (``model.encoder``: embedding_size, depth, ...). patch_size: the patch size used
    (1..max_patch_size; the projection is resized). groups: the live optical groups (those the
    input covers). month: the month index 0-11 of the one timestep (default 5, the official
    builder's). gsd_m: metres per input pixel.
    """

    name = "galileo"
    bands = len(S2_BANDS)

    def __init__(self, embed_dim: int = 128, depth: int = 4, num_heads: int = 8, mlp_ratio: float = 4.0,
                 max_sequence_length: int = 24, max_patch_size: int = 8, patch_size: int = 4,
                 groups: tuple[str, ...] | list[str] = tuple(OPTICAL_GROUPS), month: int = 5, gsd_m: float = BASE_GSD_M):
        super().__init__()
        groups = tuple(groups)
        unknown = [g for g in groups if g not in OPTICAL_GROUPS]
        if unknown or not groups:
            raise InputError(f"Galileo groups: one or more of {', '.join(OPTICAL_GROUPS)}, got {list(groups)}")
        if not 1 <= patch_size <= max_patch_size:
            raise InputError(f"Galileo patch size {patch_size}: must lie in 1..{max_patch_size}")
        if not 0 <= month <= 11:
            raise InputError(f"Galileo month {month}: a month index 0-11")
        if embed_dim % 8:
            raise InputError(f"Galileo embed_dim {embed_dim}: must be divisible by 8 (four sin-cos quarters)")
        self.config = {"embed_dim": embed_dim, "depth": depth, "num_heads": num_heads, "mlp_ratio": mlp_ratio,
                       "max_sequence_length": max_sequence_length, "max_patch_size": max_patch_size, "patch_size": patch_size,
                       "groups": list(groups), "month": month, "gsd_m": gsd_m}
        self.embed_dim, self.depth, self.patch_size, self.groups, self.month, self.gsd_m = embed_dim, depth, patch_size, groups, month, gsd_m
        quarter = embed_dim // 4
        self.space_time_embed = nn.ModuleDict({g: GroupPatchEmbed(len(b), embed_dim, max_patch_size) for g, b in OPTICAL_GROUPS.items()})
        self.s_t_channel_embed = nn.Parameter(torch.zeros(len(SPACE_TIME_GROUPS), quarter))
        # fixed codes, stored in the checkpoint (official: frozen parameters)
        self.pos_embed = nn.Parameter(sincos_1d(quarter, torch.arange(max_sequence_length)), requires_grad=False)
        self.month_embed = nn.Embedding.from_pretrained(sincos_month_table(quarter), freeze=True)
        self.blocks = nn.ModuleList(Block(embed_dim, num_heads, mlp_ratio) for _ in range(depth))
        self.norm = nn.LayerNorm(embed_dim)

    @classmethod
    def from_official_config(cls, config: dict, **options) -> GalileoEncoder:
        """From a checkpoint's ``config.json`` (its ``model.encoder`` record) and rsdistill's options."""
        try:
            e = config["model"]["encoder"]
            shape = {"embed_dim": e["embedding_size"], "depth": e["depth"], "num_heads": e["num_heads"], "mlp_ratio": e["mlp_ratio"],
                     "max_sequence_length": e["max_sequence_length"], "max_patch_size": e["max_patch_size"]}
        except (KeyError, TypeError) as error:
            raise InputError(f"Galileo config.json: expected model.encoder with embedding_size, depth, num_heads, mlp_ratio, "
                             f"max_sequence_length, max_patch_size (missing {error})") from None
        return cls(**shape, **options)

    def with_groups(self, groups: tuple[str, ...]) -> GalileoEncoder:
        """The same encoder (shared weights) with only ``groups`` live."""
        groups = tuple(groups)
        if not groups or any(g not in OPTICAL_GROUPS for g in groups):
            raise InputError(f"Galileo groups: one or more of {', '.join(OPTICAL_GROUPS)}, got {list(groups)}")
        view = copy.copy(self)
        view._modules = dict(self._modules)  # the same submodules and parameters, its own attributes
        view.groups, view.config = groups, {**self.config, "groups": list(groups)}
        return view

    def for_channels(self, present, source: str = "the input") -> GalileoEncoder:
        """This encoder with every group masked that lacks one of its channels: ``present`` (10,)
        bools in ``S2_BANDS`` order. An input that covers no group at all is an error."""
        live = tuple(g for g, bands in OPTICAL_GROUPS.items() if all(present[b] for b in bands))
        if not live:
            missing = [S2_BANDS[b] for b in range(len(S2_BANDS)) if not present[b]]
            groups = ", ".join(f"{g}: {[S2_BANDS[b] for b in OPTICAL_GROUPS[g]]}" for g in OPTICAL_GROUPS)
            raise InputError(f"{source} covers none of Galileo's band groups ({groups}); "
                             f"it lacks {', '.join(missing)}")
        return self.with_groups(live)

    def encodings(self, grid_h: int, grid_w: int) -> torch.Tensor:
        """(grid_h, grid_w, G, D) added to the tokens: [channel, timestep 0, month, position] quarters."""
        quarter = self.embed_dim // 4
        rows = [SPACE_TIME_GROUPS.index(g) for g in self.groups]
        channel = self.s_t_channel_embed[rows]  # (G, D/4)
        time = self.pos_embed[0].expand(len(rows), quarter)
        month = self.month_embed.weight[self.month].expand(len(rows), quarter)
        position = spatial_code(quarter, grid_h, grid_w, self.gsd_m * self.patch_size / BASE_GSD_M).to(channel)
        g = len(rows)
        per_group = torch.cat([channel, time, month], dim=1)  # (G, 3D/4)
        return torch.cat([per_group.expand(grid_h, grid_w, g, 3 * quarter), position[:, :, None].expand(grid_h, grid_w, g, quarter)], dim=-1)

    def embed(self, images: torch.Tensor) -> torch.Tensor:
        """images (N, 10, H, W) -> (N, h, w, G, D) tokens of the live groups with their encodings, before the blocks."""
        _, channels, height, width = images.shape
        p = self.patch_size
        if channels != self.bands:
            raise InputError(f"Galileo takes {self.bands} channels (Sentinel-2 {', '.join(S2_BANDS)}), got {channels}")
        if height % p or width % p:
            raise InputError(f"Galileo: input {height}×{width} is not a multiple of the patch size {p}")
        embedded = [self.space_time_embed[g](images[:, list(OPTICAL_GROUPS[g])], p) for g in self.groups]  # G × (N, D, h, w)
        return torch.stack(embedded, dim=-1).permute(0, 2, 3, 4, 1) + self.encodings(height // p, width // p)

    def tokens(self, images: torch.Tensor, layers: tuple[int, ...] = ()) -> tuple[torch.Tensor, dict[int, torch.Tensor]]:
        """images (N, 10, H, W) -> (final (N, h, w, G, D) normed, {layer: (N, h, w, G, D)} block outputs).

        Layers are 1..depth (block N-1's output is layer N). H and W must be multiples of the patch size.
        """
        x = self.embed(images)
        shape = x.shape
        x = x.reshape(len(x), -1, self.embed_dim)
        taps = {}
        for index, block in enumerate(self.blocks, start=1):
            x = block(x)
            if index in layers:
                taps[index] = x.reshape(shape)
        return self.norm(x).reshape(shape), taps

    def forward_features(self, images: torch.Tensor, layers: tuple[int, ...] | None = None) -> list[torch.Tensor]:
        """(N, 10, H, W) -> [(N, D, H/p, W/p) per layer in ``layers``] (default: the final, normed
        output): at each patch, the mean of its live group tokens (the official ``average_tokens``
        pools the same tokens over the whole image)."""
        if layers and not all(1 <= layer <= self.depth for layer in layers):
            raise InputError(f"Galileo layers: 1..{self.depth} (the encoder's depth), got {list(layers)}")
        final, taps = self.tokens(images, tuple(layers or ()))
        outputs = [final] if not layers else [taps[layer] for layer in layers]
        return [x.mean(dim=3).permute(0, 3, 1, 2) for x in outputs]


def sincos_month_table(dim: int) -> torch.Tensor:
    """(12, dim) month code: [sin, cos] of 2π·month/12 repeated over dim/2 (``get_month_encoding_table``)."""
    angles = torch.arange(12, dtype=torch.float64) * (2 * np.pi / 12)
    return torch.cat([angles.sin()[:, None].expand(12, dim // 2), angles.cos()[:, None].expand(12, dim // 2)], dim=1).float()
