"""Masked autoencoder for any band count, with KARMA's physics (linear spectral mixing) branch.

Follows ``models_mae.py`` of facebookresearch/mae in order: masking, forward_encoder,
forward_decoder, heads (patchify / unpatchify are ``rsdistill.tokens``). Masking comes from ``rsdistill.masking`` (one mechanism
for random, Gabor and wavelet significance). Losses live in ``rsdistill.losses.reconstruction``.

With ``sam`` (``window_size``, ``global_blocks``, ``out_chans``) the encoder is a SAM-layout
``SAMImageEncoder`` instead of a ViT (Mask-CDKD's teacher, pretrained here): it has no class token,
and its windowed attention needs the visible patches on a grid, so it is masked with the
strided-grid mask (``masking.strided_grid_mask``, 75 %).

KARMA (arXiv 2512.12445): parallel to the pixel head, an abundance head (MLP D → D/2 → p²·M)
gives, for every pixel of a patch, abundances over M endmembers through a softmax (non-negative,
summing to one); the physics reconstruction of that pixel is E·a with the endmember matrix E
(bands × M), learnable or fixed. From one token the p² abundances of a patch vary little, so the
maps show the token grid; with ``pixel_abundances`` the logits of each pixel also get a linear
term of that pixel's own spectrum (zero at the start): the input where the encoder saw it, the
pixel head's reconstruction (detached) where it was masked, so abundances follow the pixels.
"""

from __future__ import annotations

import torch
from torch import nn

from rsdistill.errors import InputError
from rsdistill.masking import PatchMask, mask_from_scores, patch_scores, strided_grid_mask
from rsdistill.models.sam import SAMImageEncoder
from rsdistill.models.vit import Block, ViTEncoder, sincos_position_embedding
from rsdistill.tokens import patchify, take_tokens, unpatchify


class LinearMixingHead(nn.Module):
    """Decoder tokens (N, L, D) [and the pixels' spectra (N, L, p², bands)] -> abundances (N, L, p², M)
    and mixtures (N, L, p², bands)."""

    def __init__(self, dim: int, bands: int, endmembers: int, patch_size: int, initial=None, learnable: bool = True,
                 pixel_spectra: bool = False):
        super().__init__()
        self.pixels, self.endmembers_count = patch_size**2, endmembers
        self.abundance = nn.Sequential(nn.Linear(dim, dim // 2), nn.GELU(), nn.Linear(dim // 2, self.pixels * endmembers))
        self.spectral = nn.Linear(bands, endmembers) if pixel_spectra else None
        if self.spectral is not None:  # starts as the token-only head
            nn.init.zeros_(self.spectral.weight), nn.init.zeros_(self.spectral.bias)
        initial = torch.rand(bands, endmembers) if initial is None else torch.as_tensor(initial, dtype=torch.float32)
        if initial.shape != (bands, endmembers):
            raise ValueError(f"endmember matrix must be ({bands}, {endmembers}), got {tuple(initial.shape)}")
        if learnable:
            self.endmembers = nn.Parameter(initial.clone())
        else:
            self.register_buffer("endmembers", initial.clone())

    def forward(self, tokens: torch.Tensor, spectra: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        n, length, _ = tokens.shape
        logits = self.abundance(tokens).view(n, length, self.pixels, self.endmembers_count)
        if self.spectral is not None:
            logits = logits + self.spectral(spectra)
        abundances = logits.softmax(dim=-1)
        return abundances, abundances @ self.endmembers.T


class MAEDecoder(nn.Module):
    """MAE's lightweight decoder (He et al., CVPR 2022, Sec. 3): visible tokens and mask tokens back in
    place, a fixed 2-D sin-cos position code, pre-norm blocks, a final norm; ``pred`` is the pixel head.

    forward: visible (N, L_keep, D_enc) (+ an optional class token (N, 1, D_enc), which joins the
    sequence as in MAE), ids_restore (N, L), the token grid -> decoded tokens (N, L, D) of every
    patch, in place.
    """

    def __init__(self, encoder_dim: int, dim: int, depth: int, heads: int, mlp_ratio: float, out_dim: int, grid: tuple[int, int]):
        super().__init__()
        self.dim, self.grid = dim, tuple(grid)
        self.embed = nn.Linear(encoder_dim, dim)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.register_buffer("pos_embed", torch.cat([torch.zeros(1, dim), sincos_position_embedding(dim, *grid)])[None])
        self.blocks = nn.ModuleList(Block(dim, heads, mlp_ratio) for _ in range(depth))
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.pred = nn.Linear(dim, out_dim)
        nn.init.normal_(self.mask_token, std=0.02)

    def forward(self, visible: torch.Tensor, ids_restore: torch.Tensor, grid: tuple[int, int], cls: torch.Tensor | None = None) -> torch.Tensor:
        x = self.embed(visible)
        n, length = ids_restore.shape
        patches = take_tokens(torch.cat([x, self.mask_token.expand(n, length - x.shape[1], -1)], dim=1), ids_restore)
        position = self.pos_embed if tuple(grid) == self.grid else torch.cat(
            [torch.zeros(1, self.dim), sincos_position_embedding(self.dim, *grid)])[None].to(x)
        x = patches + position[:, 1:]
        if cls is not None:
            x = torch.cat([self.embed(cls) + position[:, :1], x], dim=1)
        for block in self.blocks:
            x = block(x)
        x = self.norm(x)
        return x if cls is None else x[:, 1:]


# The decoder's keys before it became ``MAEDecoder`` (checkpoints written by earlier versions load)
_OLD_DECODER_KEYS = {"decoder_embed.": "decoder.embed.", "mask_token": "decoder.mask_token", "decoder_pos_embed": "decoder.pos_embed",
                     "decoder_blocks.": "decoder.blocks.", "decoder_norm.": "decoder.norm.", "decoder_pred.": "decoder.pred."}


def _rename_old_decoder_keys(state_dict, prefix, *args) -> None:
    for key in [k for k in state_dict if k.startswith(prefix)]:
        local = key[len(prefix):]
        for old, new in _OLD_DECODER_KEYS.items():
            if local.startswith(old):
                state_dict[prefix + new + local[len(old):]] = state_dict.pop(key)
                break


class MaskedAutoencoder(nn.Module):
    """(N, C, H, W) tiles -> reconstruction of the masked patches (and the LSMM branch, if any)."""

    def __init__(
        self,
        bands: int,
        img_size: int = 32,
        patch_size: int = 4,
        embed_dim: int = 128,
        depth: int = 4,
        num_heads: int = 4,
        decoder_embed_dim: int = 64,
        decoder_depth: int = 2,
        decoder_num_heads: int = 4,
        mlp_ratio: float = 4.0,
        endmembers: int = 0,
        endmember_init=None,
        learnable_endmembers: bool = True,
        sam: dict | None = None,
        pixel_abundances: bool = False,
    ):
        super().__init__()
        self.patch_size, self.bands = patch_size, bands
        if sam is None:
            self.encoder = ViTEncoder(bands, img_size, patch_size, embed_dim, depth, num_heads, mlp_ratio)
        else:  # a SAM-layout encoder (windowed + global attention): Mask-CDKD's teacher, pretrained here
            self.encoder = SAMImageEncoder(bands, img_size, patch_size, embed_dim, depth, num_heads, mlp_ratio, **sam)
        grid = img_size // patch_size
        self.decoder = MAEDecoder(embed_dim, decoder_embed_dim, decoder_depth, decoder_num_heads, mlp_ratio, patch_size**2 * bands, (grid, grid))
        self.mixing = (
            LinearMixingHead(decoder_embed_dim, bands, endmembers, patch_size, endmember_init, learnable_endmembers, pixel_abundances)
            if endmembers else None
        )
        self._register_load_state_dict_pre_hook(_rename_old_decoder_keys)

    @property
    def windowed(self) -> bool:
        """A SAM-layout encoder: no class token, and its visible patches must form a grid."""
        return isinstance(self.encoder, SAMImageEncoder)

    def forward_encoder(self, images: torch.Tensor, ids_keep: torch.Tensor, return_layers: tuple[int, ...] = ()):
        """Encode the kept patches only: (N, 1 + L_keep, D) (no class token for a SAM-layout
        encoder: (N, L_keep, D)) and requested layers."""
        if not self.windowed:
            return self.encoder.forward_tokens(self.encoder.embed(images, ids_keep), return_layers)
        tokens = self.encoder.embed(images)  # (N, h, w, D)
        n, h, w, dim = tokens.shape
        sides = {h * w: (h, w), (h // 2) * (w // 2): (h // 2, w // 2)}
        if ids_keep.shape[1] not in sides:
            raise InputError(f"a SAM-layout encoder needs the visible patches on a grid (all, or a strided-grid mask); got {ids_keep.shape[1]} of {h}×{w}")
        visible = take_tokens(tokens.flatten(1, 2), ids_keep).view(n, *sides[ids_keep.shape[1]], dim)
        last, layers = self.encoder.forward_blocks(visible, return_layers)
        return last.flatten(1, 2), {k: v.flatten(1, 2) for k, v in layers.items()}

    def forward_decoder(self, latent: torch.Tensor, ids_restore: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
        """(N, [1 +] L_keep, D) -> decoder tokens (N, L, D_dec) of every patch, in place."""
        if self.windowed:
            return self.decoder(latent, ids_restore, grid)
        return self.decoder(latent[:, 1:], ids_restore, grid, cls=latent[:, :1])

    def _pixel_spectra(self, patches: torch.Tensor) -> torch.Tensor:
        """(N, L, p²C) patches -> (N, L, p², C) spectra of their pixels."""
        return patches.view(*patches.shape[:2], self.patch_size**2, self.bands)

    def unmix(self, images: torch.Tensor) -> torch.Tensor:
        """Abundances of every pixel with nothing masked: (N, C, H, W) -> (N, M, H, W)."""
        if self.mixing is None:
            raise ValueError("this autoencoder has no linear-mixing branch (endmembers = 0)")
        n, _, height, width = images.shape
        grid = (height // self.patch_size, width // self.patch_size)
        everything = torch.arange(grid[0] * grid[1], device=images.device).expand(n, -1)
        latent, _ = self.forward_encoder(images, everything)
        abundances, _ = self.mixing(self.forward_decoder(latent, everything, grid), self._pixel_spectra(patchify(images, self.patch_size)))
        return unpatchify(abundances.flatten(2), self.patch_size, height, width)

    def forward(self, images: torch.Tensor, mask_ratio: float = 0.75, score: str = "random", noise: float = 0.5,
                return_layers: tuple[int, ...] = (), predict: str = "all", patch_mask: PatchMask | None = None) -> dict:
        """images: (N, C, H, W) normalised tiles.

        ``predict``: ``all`` runs the pixel head on every patch (evaluation, figures); ``masked``
        only on the masked ones, which is all a training loss needs (the visible patches of a
        reconstruction come from the input) and saves a quarter of the largest matrix product.
        ``patch_mask``: a mask made elsewhere (e.g. shared with a teacher) instead of drawing one.

        Returns a dict: ``pred_masked`` (N, L_mask, p²C) pixel-head reconstruction of the masked
        patches ``ids_masked`` (N, L_mask); with ``predict="all"`` also ``pred`` (N, L, p²C);
        ``mask`` (N, L) 1 = masked; ``latent`` (N, 1 + L_keep, D); ``layers`` {layer: tokens of the
        visible patches}; ``ids_keep`` (N, L_keep) the visible patches; and with the physics branch
        ``abundances`` (N, L, p², M) and ``mixture`` (N, L, p²C) of every patch, and ``endmembers`` (C, M).
        """
        if predict not in ("all", "masked"):
            raise ValueError(f"predict must be 'all' or 'masked', got {predict!r}")
        grid = (images.shape[2] // self.patch_size, images.shape[3] // self.patch_size)
        if patch_mask is None and self.windowed:
            patch_mask = strided_grid_mask(len(images), *grid, device=images.device)
        if patch_mask is None:
            with torch.no_grad():
                scores = patch_scores(images, score, self.patch_size)
            patch_mask = mask_from_scores(scores, mask_ratio, noise if score != "random" else 0.0)
        latent, layers = self.forward_encoder(images, patch_mask.ids_keep, return_layers)
        decoded = self.forward_decoder(latent, patch_mask.ids_restore, grid)
        out = {"mask": patch_mask.mask, "ids_masked": patch_mask.ids_masked, "latent": latent, "layers": layers,
               "ids_keep": patch_mask.ids_keep}
        if predict == "all":
            out["pred"] = self.decoder.pred(decoded)
            out["pred_masked"] = take_tokens(out["pred"], patch_mask.ids_masked)
        else:
            out["pred_masked"] = self.decoder.pred(take_tokens(decoded, patch_mask.ids_masked))
        if self.mixing is not None:
            spectra = None
            if self.mixing.spectral is not None:  # seen pixels as they are, masked ones as the pixel head rebuilt them
                masked = patch_mask.ids_masked[..., None].expand_as(out["pred_masked"])
                spectra = self._pixel_spectra(patchify(images, self.patch_size).scatter(1, masked, out["pred_masked"].detach()))
            abundances, mixture = self.mixing(decoded, spectra)
            out["abundances"], out["mixture"], out["endmembers"] = abundances, mixture.flatten(2), self.mixing.endmembers
        return out
