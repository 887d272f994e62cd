"""A ViT encoder for any number of bands, written from torch primitives.

Parameter names follow the MAE/timm layout (``patch_embed.proj``, ``cls_token``, ``pos_embed``,
``blocks.N.norm1``, ``blocks.N.attn.qkv``, ``blocks.N.attn.proj``, ``blocks.N.norm2``,
``blocks.N.mlp.fc1``, ``blocks.N.mlp.fc2``, ``norm``), so official MAE-style checkpoints load by
name. The position embedding is the fixed 2-D sin-cos of MAE; it is regenerated for any grid, so
the tile size can change between pretraining and use.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from rsdistill.errors import InputError
from rsdistill.tokens import patch_vectors, take_tokens, tokens_to_grid

POSITION_STYLES = ("mae", "prithvi")


def _sincos_1d(dim: int, positions: np.ndarray) -> np.ndarray:
    """(M, dim) sin-cos code of positions (MAE ``get_1d_sincos_pos_embed_from_grid``)."""
    omega = 1.0 / 10000 ** (np.arange(dim // 2, dtype=np.float64) / (dim / 2.0))
    angles = np.outer(positions.reshape(-1).astype(np.float64), omega)
    return np.concatenate([np.sin(angles), np.cos(angles)], axis=1)


def sincos_position_embedding(dim: int, grid_h: int, grid_w: int, style: str = "mae") -> torch.Tensor:
    """(grid_h * grid_w, dim) fixed sin-cos embedding, tokens in row-major order.

    ``mae``: 2-D code of MAE's ``get_2d_sincos_pos_embed``, first half the column (w), second half
    the row (h). ``prithvi``: Prithvi's ``get_3d_sincos_pos_embed`` for one time step, w (6/16 of
    dim), h (6/16) and t (4/16, time 0).
    """
    rows, cols = np.meshgrid(np.arange(grid_h), np.arange(grid_w), indexing="ij")
    if style == "mae":
        if dim % 4:
            raise ValueError(f"embedding dim must be divisible by 4 for 2-D sin-cos, got {dim}")
        parts = [_sincos_1d(dim // 2, cols), _sincos_1d(dim // 2, rows)]
    elif style == "prithvi":
        if dim % 16:
            raise ValueError(f"embedding dim must be divisible by 16 for Prithvi's 3-D sin-cos, got {dim}")
        spatial = dim // 16 * 6
        parts = [_sincos_1d(spatial, cols), _sincos_1d(spatial, rows), _sincos_1d(dim - 2 * spatial, np.zeros(rows.size))]
    else:
        raise ValueError(f"unknown position style {style!r}; choose one of {', '.join(POSITION_STYLES)}")
    # rounded to float32 here, not by a cast in the model: in an ONNX graph that cast of a large
    # constant stays a Cast node, which fp16 conversion retypes into a model onnxruntime refuses
    return torch.from_numpy(np.concatenate(parts, axis=1).astype(np.float32))


class PatchEmbed(nn.Module):
    """(N, C, H, W) -> (N, L, D) with L = (H / p) * (W / p)."""

    def __init__(self, bands: int, dim: int, patch_size: int):
        super().__init__()
        self.patch_size = patch_size
        self.proj = nn.Conv2d(bands, dim, patch_size, stride=patch_size)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.proj(images).flatten(2).transpose(1, 2)

    def embed_selected(self, images: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
        """Only the patches ``ids`` (N, L_sel): (N, C, H, W) -> (N, L_sel, D), equal to ``forward`` gathered.

        With hundreds of bands the patch projection is the largest matrix product of an MAE step;
        projecting the visible quarter only saves three quarters of it (and of its gradient).
        """
        return F.linear(take_tokens(patch_vectors(images, self.patch_size), ids), self.proj.weight.flatten(1), self.proj.bias)


class Attention(nn.Module):
    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (N, L, D) -> (N, L, D)."""
        n, length, dim = x.shape
        q, k, v = self.qkv(x).reshape(n, length, 3, self.heads, dim // self.heads).permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(q, k, v)  # (N, heads, L, D/heads)
        return self.proj(out.transpose(1, 2).reshape(n, length, dim))


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1, self.act, self.fc2 = nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class Block(nn.Module):
    """Pre-norm transformer block (timm ``Block``)."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float = 4.0):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = Attention(dim, heads)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class ViTEncoder(nn.Module):
    """ViT over ``bands`` input channels; returns the final tokens and any requested block outputs."""

    name = "vit"

    def __init__(
        self,
        bands: int,
        img_size: int = 32,
        patch_size: int = 4,
        embed_dim: int = 128,
        depth: int = 4,
        num_heads: int = 4,
        mlp_ratio: float = 4.0,
        position_style: str = "mae",
    ):
        super().__init__()
        if img_size % patch_size:
            raise ValueError(f"tile size {img_size} is not a multiple of the patch size {patch_size}")
        self.config = {"bands": bands, "img_size": img_size, "patch_size": patch_size, "embed_dim": embed_dim, "depth": depth,
                       "num_heads": num_heads, "mlp_ratio": mlp_ratio, "position_style": position_style}
        self.bands, self.patch_size, self.embed_dim, self.depth = bands, patch_size, embed_dim, depth
        self.position_style = position_style
        self.patch_embed = PatchEmbed(bands, embed_dim, patch_size)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        grid = img_size // patch_size
        self.grid = (grid, grid)
        self.register_buffer("pos_embed", torch.cat([torch.zeros(1, embed_dim), sincos_position_embedding(embed_dim, grid, grid, position_style)])[None])
        self.blocks = nn.ModuleList(Block(embed_dim, num_heads, mlp_ratio) for _ in range(depth))
        self.norm = nn.LayerNorm(embed_dim, eps=1e-6)
        nn.init.normal_(self.cls_token, std=0.02)
        self.apply(_init_weights)
        nn.init.xavier_uniform_(self.patch_embed.proj.weight.view(embed_dim, -1))

    def position_embedding(self, grid_h: int, grid_w: int) -> torch.Tensor:
        """(1, grid_h * grid_w, D) patch position embedding; regenerated when the grid differs."""
        if (grid_h, grid_w) == self.grid:
            return self.pos_embed[:, 1:]
        return sincos_position_embedding(self.embed_dim, grid_h, grid_w, self.position_style).to(self.pos_embed)[None]

    def embed(self, images: torch.Tensor, ids_keep: torch.Tensor | None = None) -> torch.Tensor:
        """(N, C, H, W) -> (N, L, D) patch tokens with position embedding (no cls token); with
        ``ids_keep`` (N, L_keep) only those patches, (N, L_keep, D)."""
        if images.shape[1] != self.bands:
            raise ValueError(f"encoder expects {self.bands} bands, got {images.shape[1]}")
        grid_h, grid_w = images.shape[2] // self.patch_size, images.shape[3] // self.patch_size
        position = self.position_embedding(grid_h, grid_w)
        if ids_keep is None:
            return self.patch_embed(images) + position
        position = take_tokens(position.expand(images.shape[0], -1, -1), ids_keep)
        return self.patch_embed.embed_selected(images, ids_keep) + position

    def forward_tokens(self, tokens: torch.Tensor, return_layers: tuple[int, ...] = ()) -> tuple[torch.Tensor, dict[int, torch.Tensor]]:
        """tokens: (N, L, D) embedded patches -> ((N, 1 + L, D) normed output, {layer: (N, 1 + L, D)}).

        Layers are numbered 1..depth (the output of block N-1 is layer N), as "layer 8" in HyperKD.
        """
        cls = (self.cls_token + self.pos_embed[:, :1]).expand(tokens.shape[0], -1, -1)
        x = torch.cat([cls, tokens], dim=1)
        layers = {}
        for index, block in enumerate(self.blocks, start=1):
            x = block(x)
            if index in return_layers:
                layers[index] = x
        return self.norm(x), layers

    def forward(self, images: torch.Tensor, return_layers: tuple[int, ...] = ()):
        """(N, C, H, W) -> ((N, 1 + L, D), {layer: (N, 1 + L, D)})."""
        return self.forward_tokens(self.embed(images), return_layers)

    def forward_features(self, images: torch.Tensor, layers: tuple[int, ...] | None = None) -> list[torch.Tensor]:
        """Dense features for heads: (N, C, H, W) -> [(N, D, H/p, W/p) per layer in ``layers``].

        Layers are 1..depth; default the final, normed output. The cls token is dropped.
        """
        if layers and not all(1 <= layer <= self.depth for layer in layers):
            raise InputError(f"layers {list(layers)}: this encoder has blocks 1..{self.depth}")
        grid = (images.shape[2] // self.patch_size, images.shape[3] // self.patch_size)
        final, taps = self.forward(images, tuple(layers or ()))
        outputs = [final] if not layers else [taps[layer] for layer in layers]
        return [tokens_to_grid(x[:, 1:], grid) for x in outputs]


def _init_weights(module: nn.Module) -> None:
    if isinstance(module, nn.Linear):
        nn.init.xavier_uniform_(module.weight)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)
