"""SAM's image encoder (Kirillov et al., "Segment Anything", ICCV 2023) in the official key layout.

The parameter names and shapes are those of facebookresearch/segment-anything's
``modeling/image_encoder.py`` (below ``image_encoder.`` in a SAM checkpoint), so a real checkpoint
loads without renaming (``models.sam_checkpoints``):

- ``patch_embed.proj``: conv p×p stride p, 3 → C; ``pos_embed``: learnable (1, H/p, W/p, C),
  resized bicubically when the token grid differs (as detectron2's ``get_abs_pos``);
- blocks: pre-norm (LayerNorm eps 1e-6), attention with decomposed relative position (``attn.qkv``,
  ``attn.proj``, ``attn.rel_pos_h/w`` of (2·S − 1, head_dim) for a window or grid of side S) and an
  MLP (``mlp.lin1`` → GELU → ``mlp.lin2``). Blocks in ``global_blocks`` (1-based here; SAM's
  ``global_attn_indexes`` + 1) attend over the whole grid, the others inside ``window_size`` ×
  ``window_size`` windows (the grid zero-padded to a multiple of the window, as SAM does);
- ``neck``: 1×1 conv (no bias) → LayerNorm2d → 3×3 conv (no bias) → LayerNorm2d, C → ``out_chans``.

Relative position (SAM's ``add_decomposed_rel_pos``, after MViTv2, Li et al. CVPR 2022, eq. 4): the
attention logit of query (i, j) to key (k, l) gains q·R_h[i − k] + q·R_w[j − l]; a table of
another length than 2·S − 1 is interpolated linearly, and for unequal query/key sides the offsets
are rescaled (SAM's ``get_rel_pos``).

Variants (embed_dim, depth, heads, global blocks 1-based): vit_b (768, 12, 12, 3 6 9 12), vit_l
(1024, 24, 16, 6 12 18 24), vit_h (1280, 32, 16, 8 16 24 32). Input: (N, 3, H, W) normalised with
SAM's pixel mean/std on 0–255 (``SAM_MEAN``, ``SAM_STD``), H and W multiples of the patch size.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from rsdistill.errors import InputError

SAM_MEAN = [123.675, 116.28, 103.53]
SAM_STD = [58.395, 57.12, 57.375]
VARIANTS = {
    "vit_b": {"embed_dim": 768, "depth": 12, "num_heads": 12, "global_blocks": [3, 6, 9, 12]},
    "vit_l": {"embed_dim": 1024, "depth": 24, "num_heads": 16, "global_blocks": [6, 12, 18, 24]},
    "vit_h": {"embed_dim": 1280, "depth": 32, "num_heads": 16, "global_blocks": [8, 16, 24, 32]},
}


def relative_table(rel_pos: torch.Tensor, q_size: int, k_size: int) -> torch.Tensor:
    """(2·S − 1, d) table -> (q_size, k_size, d): the embedding of each query-key offset along one axis."""
    length = 2 * max(q_size, k_size) - 1
    if rel_pos.shape[0] != length:  # another input size than the table was trained for
        rel_pos = F.interpolate(rel_pos.T[None], size=length, mode="linear")[0].T
    q_scale, k_scale = max(k_size / q_size, 1.0), max(q_size / k_size, 1.0)
    offsets = torch.arange(q_size)[:, None] * q_scale - torch.arange(k_size)[None, :] * k_scale + (k_size - 1) * k_scale
    return rel_pos[offsets.long()]


def add_relative_position(logits: torch.Tensor, q: torch.Tensor, rel_pos_h: torch.Tensor, rel_pos_w: torch.Tensor,
                          q_size: tuple[int, int], k_size: tuple[int, int]) -> torch.Tensor:
    """logits (B, q_h·q_w, k_h·k_w) + q·R_h[i − k] + q·R_w[j − l]; q: (B, q_h·q_w, d) (unscaled)."""
    (qh, qw), (kh, kw) = q_size, k_size
    grid_q = q.reshape(q.shape[0], qh, qw, q.shape[-1])
    along_h = torch.einsum("bhwd,hkd->bhwk", grid_q, relative_table(rel_pos_h, qh, kh))
    along_w = torch.einsum("bhwd,wkd->bhwk", grid_q, relative_table(rel_pos_w, qw, kw))
    logits = logits.reshape(q.shape[0], qh, qw, kh, kw) + along_h[..., :, None] + along_w[..., None, :]
    return logits.reshape(q.shape[0], qh * qw, kh * kw)


class SAMAttention(nn.Module):
    """Multi-head attention over a (B, h, w, C) grid with decomposed relative position."""

    def __init__(self, dim: int, heads: int, size: int):
        super().__init__()
        self.heads, self.scale = heads, (dim // heads) ** -0.5
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.rel_pos_h = nn.Parameter(torch.zeros(2 * size - 1, dim // heads))
        self.rel_pos_w = nn.Parameter(torch.zeros(2 * size - 1, dim // heads))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, h, w, dim = x.shape
        qkv = self.qkv(x).reshape(b, h * w, 3, self.heads, dim // self.heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.reshape(3, b * self.heads, h * w, dim // self.heads)
        logits = add_relative_position((q * self.scale) @ k.transpose(-2, -1), q, self.rel_pos_h, self.rel_pos_w, (h, w), (h, w))
        out = (logits.softmax(dim=-1) @ v).view(b, self.heads, h, w, -1).permute(0, 2, 3, 1, 4).reshape(b, h, w, dim)
        return self.proj(out)


class SAMMlp(nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.lin1, self.lin2, self.act = nn.Linear(dim, hidden), nn.Linear(hidden, dim), nn.GELU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.lin2(self.act(self.lin1(x)))


def window_partition(x: torch.Tensor, window: int) -> tuple[torch.Tensor, tuple[int, int]]:
    """(B, H, W, C) -> (B·n_windows, window, window, C), the grid zero-padded to multiples of ``window``."""
    b, h, w, c = x.shape
    pad_h, pad_w = (-h) % window, (-w) % window
    x = F.pad(x, (0, 0, 0, pad_w, 0, pad_h))
    hp, wp = h + pad_h, w + pad_w
    x = x.view(b, hp // window, window, wp // window, window, c).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(-1, window, window, c), (hp, wp)


def window_unpartition(windows: torch.Tensor, window: int, padded: tuple[int, int], size: tuple[int, int]) -> torch.Tensor:
    """Inverse of ``window_partition``: (B·n_windows, window, window, C) -> (B, H, W, C)."""
    (hp, wp), (h, w) = padded, size
    b = windows.shape[0] // (hp * wp // window // window)
    x = windows.view(b, hp // window, wp // window, window, window, -1).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(b, hp, wp, -1)[:, :h, :w]


class SAMBlock(nn.Module):
    """Pre-norm block on a (B, H, W, C) grid; ``window`` 0 = global attention."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float, window: int, grid: int):
        super().__init__()
        self.window = window
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = SAMAttention(dim, heads, window or grid)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = SAMMlp(dim, int(dim * mlp_ratio))

    def attend(self, x: torch.Tensor) -> torch.Tensor:
        """The attention half, without its residual: (B, H, W, C) -> (B, H, W, C)."""
        x = self.norm1(x)
        if not self.window:
            return self.attn(x)
        windows, padded = window_partition(x, self.window)
        return window_unpartition(self.attn(windows), self.window, padded, x.shape[1:3])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attend(x)
        return x + self.mlp(self.norm2(x))


class LayerNorm2d(nn.Module):
    """LayerNorm over the channels of (N, C, H, W) (SAM's ``LayerNorm2d``, eps 1e-6)."""

    def __init__(self, channels: int, eps: float = 1e-6):
        super().__init__()
        self.weight, self.bias, self.eps = nn.Parameter(torch.ones(channels)), nn.Parameter(torch.zeros(channels)), eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.layer_norm(x.permute(0, 2, 3, 1), x.shape[1:2], self.weight, self.bias, self.eps).permute(0, 3, 1, 2)


class PatchEmbed(nn.Module):
    def __init__(self, bands: int, dim: int, patch_size: int):
        super().__init__()
        self.proj = nn.Conv2d(bands, dim, patch_size, stride=patch_size)


class SAMImageEncoder(nn.Module):
    """(N, bands, H, W) -> block outputs and SAM's image embedding (N, out_chans, H/p, W/p)."""

    name = "sam"

    def __init__(self, bands: int = 3, img_size: int = 1024, patch_size: int = 16, embed_dim: int = 768, depth: int = 12,
                 num_heads: int = 12, mlp_ratio: float = 4.0, window_size: int = 14, global_blocks: list[int] | None = None,
                 out_chans: int = 256):
        super().__init__()
        global_blocks = list(global_blocks or [])
        if img_size % patch_size:
            raise InputError(f"SAM encoder: image size {img_size} is not a multiple of the patch size {patch_size}")
        if embed_dim % num_heads:
            raise InputError(f"SAM encoder: embed_dim {embed_dim} is not a multiple of num_heads {num_heads}")
        if not all(1 <= b <= depth for b in global_blocks):
            raise InputError(f"SAM encoder: global_blocks {global_blocks} must be in 1..{depth} (the depth)")
        self.config = {"bands": bands, "img_size": img_size, "patch_size": patch_size, "embed_dim": embed_dim, "depth": depth,
                       "num_heads": num_heads, "mlp_ratio": mlp_ratio, "window_size": window_size, "global_blocks": global_blocks,
                       "out_chans": out_chans}
        self.bands, self.patch_size, self.embed_dim, self.depth = bands, patch_size, embed_dim, depth
        grid = img_size // patch_size
        self.patch_embed = PatchEmbed(bands, embed_dim, patch_size)
        self.pos_embed = nn.Parameter(torch.zeros(1, grid, grid, embed_dim))
        self.blocks = nn.ModuleList(
            SAMBlock(embed_dim, num_heads, mlp_ratio, 0 if i in global_blocks else window_size, grid) for i in range(1, depth + 1))
        self.neck = nn.Sequential(nn.Conv2d(embed_dim, out_chans, 1, bias=False), LayerNorm2d(out_chans),
                                  nn.Conv2d(out_chans, out_chans, 3, padding=1, bias=False), LayerNorm2d(out_chans))
        nn.init.trunc_normal_(self.pos_embed, std=0.02)

    def embed(self, images: torch.Tensor) -> torch.Tensor:
        """(N, bands, H, W) -> (N, H/p, W/p, C) patch tokens with the position embedding."""
        if images.shape[1] != self.bands:
            raise InputError(f"SAM encoder expects {self.bands} bands, got {images.shape[1]}")
        x = self.patch_embed.proj(images).permute(0, 2, 3, 1)
        position = self.pos_embed
        if position.shape[1:3] != x.shape[1:3]:
            position = F.interpolate(position.permute(0, 3, 1, 2), size=x.shape[1:3], mode="bicubic", align_corners=False).permute(0, 2, 3, 1)
        return x + position

    def forward_blocks(self, x: torch.Tensor, layers: tuple[int, ...] = ()) -> tuple[torch.Tensor, dict[int, torch.Tensor]]:
        """(N, h, w, C) tokens -> (last block output, {layer: (N, h, w, C)}), layers 1..depth."""
        taps = {}
        for index, block in enumerate(self.blocks, start=1):
            x = block(x)
            if index in layers:
                taps[index] = x
        return x, taps

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """SAM's image embedding: (N, bands, H, W) -> (N, out_chans, H/p, W/p)."""
        x, _ = self.forward_blocks(self.embed(images))
        return self.neck(x.permute(0, 3, 1, 2))

    def forward_features(self, images: torch.Tensor, layers: tuple[int, ...] | None = None) -> list[torch.Tensor]:
        """Dense features for heads: [(N, C, H/p, W/p) per layer] (default the last block's)."""
        last, taps = self.forward_blocks(self.embed(images), tuple(layers or ()))
        outputs = [last] if not layers else [taps[layer] for layer in layers]
        return [x.permute(0, 3, 1, 2) for x in outputs]
