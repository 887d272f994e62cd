"""SAM's image encoder: a checkpoint in the official layout (with the prompt encoder and mask decoder
beside it) loads with no renaming, the architecture is read from its shapes, and the forward pass
matches an independent reference of SAM's blocks written here (explicit windows and offset tables)."""

import pytest
import torch
import torch.nn.functional as F

from rsdistill.errors import InputError
from rsdistill.models.registry import load_encoder
from rsdistill.models.sam_checkpoints import load_sam_checkpoint

DIM, HEADS, PATCH, GRID, WINDOW, DEPTH, GLOBAL, NECK = 32, 2, 4, 8, 3, 3, (2,), 16


def sam_layout_state(seed: int = 0) -> dict[str, torch.Tensor]:
    """A tiny SAM checkpoint: image_encoder.* in the official key layout, plus decoy other parts."""
    g = torch.Generator().manual_seed(seed)
    r = lambda *shape: 0.2 * torch.randn(*shape, generator=g)  # noqa: E731
    head_dim = DIM // HEADS
    state = {"patch_embed.proj.weight": r(DIM, 3, PATCH, PATCH), "patch_embed.proj.bias": r(DIM), "pos_embed": r(1, GRID, GRID, DIM)}
    for i in range(DEPTH):
        side = GRID if i + 1 in GLOBAL else WINDOW
        state |= {f"blocks.{i}.norm1.weight": 1 + r(DIM), f"blocks.{i}.norm1.bias": r(DIM),
                  f"blocks.{i}.attn.qkv.weight": r(3 * DIM, DIM), f"blocks.{i}.attn.qkv.bias": r(3 * DIM),
                  f"blocks.{i}.attn.proj.weight": r(DIM, DIM), f"blocks.{i}.attn.proj.bias": r(DIM),
                  f"blocks.{i}.attn.rel_pos_h": r(2 * side - 1, head_dim), f"blocks.{i}.attn.rel_pos_w": r(2 * side - 1, head_dim),
                  f"blocks.{i}.norm2.weight": 1 + r(DIM), f"blocks.{i}.norm2.bias": r(DIM),
                  f"blocks.{i}.mlp.lin1.weight": r(4 * DIM, DIM), f"blocks.{i}.mlp.lin1.bias": r(4 * DIM),
                  f"blocks.{i}.mlp.lin2.weight": r(DIM, 4 * DIM), f"blocks.{i}.mlp.lin2.bias": r(DIM)}
    state |= {"neck.0.weight": r(NECK, DIM, 1, 1), "neck.1.weight": 1 + r(NECK), "neck.1.bias": r(NECK),
              "neck.2.weight": r(NECK, NECK, 3, 3), "neck.3.weight": 1 + r(NECK), "neck.3.bias": r(NECK)}
    checkpoint = {f"image_encoder.{k}": v for k, v in state.items()}
    checkpoint |= {"prompt_encoder.pe_layer.positional_encoding_gaussian_matrix": r(2, 8), "mask_decoder.iou_token.weight": r(1, 8)}
    return checkpoint


# -- the reference: SAM's image encoder written out independently -----------------------------------
def ref_attention(x, p, heads):
    """x: (h, w, C) one window or the whole grid; explicit per-pair offsets into the tables."""
    h, w, dim = x.shape
    d = dim // heads
    q, k, v = (x.reshape(h * w, dim) @ p["attn.qkv.weight"].T + p["attn.qkv.bias"]).split(dim, dim=-1)
    rows, cols = torch.arange(h * w) // w, torch.arange(h * w) % w
    dh, dw = rows[:, None] - rows[None, :] + h - 1, cols[:, None] - cols[None, :] + w - 1
    heads_out = []
    for n in range(heads):
        qn, kn, vn = (t[:, n * d:(n + 1) * d] for t in (q, k, v))
        bias = (qn[:, None, :] * p["attn.rel_pos_h"][dh]).sum(-1) + (qn[:, None, :] * p["attn.rel_pos_w"][dw]).sum(-1)
        heads_out.append(torch.softmax(qn @ kn.T / d**0.5 + bias, dim=-1) @ vn)
    return (torch.cat(heads_out, dim=-1) @ p["attn.proj.weight"].T + p["attn.proj.bias"]).reshape(h, w, dim)


def ref_block(x, p, window):
    y = F.layer_norm(x, (DIM,), p["norm1.weight"], p["norm1.bias"], 1e-6)
    if window:
        h, w, _ = y.shape
        hp, wp = -(-h // window) * window, -(-w // window) * window
        padded = torch.zeros(hp, wp, DIM)
        padded[:h, :w] = y
        out = torch.zeros_like(padded)
        for r in range(0, hp, window):
            for c in range(0, wp, window):
                out[r:r + window, c:c + window] = ref_attention(padded[r:r + window, c:c + window], p, HEADS)
        y = out[:h, :w]
    else:
        y = ref_attention(y, p, HEADS)
    x = x + y
    z = F.layer_norm(x, (DIM,), p["norm2.weight"], p["norm2.bias"], 1e-6)
    return x + F.gelu(z @ p["mlp.lin1.weight"].T + p["mlp.lin1.bias"]) @ p["mlp.lin2.weight"].T + p["mlp.lin2.bias"]


def ref_encoder(image, state):
    s = {k.removeprefix("image_encoder."): v for k, v in state.items()}
    x = F.conv2d(image[None], s["patch_embed.proj.weight"], s["patch_embed.proj.bias"], stride=PATCH)[0].permute(1, 2, 0) + s["pos_embed"][0]
    for i in range(DEPTH):
        x = ref_block(x, {k.removeprefix(f"blocks.{i}."): v for k, v in s.items() if k.startswith(f"blocks.{i}.")}, 0 if i + 1 in GLOBAL else WINDOW)
    y = F.conv2d(x.permute(2, 0, 1)[None], s["neck.0.weight"])
    y = F.layer_norm(y.permute(0, 2, 3, 1), (NECK,), s["neck.1.weight"], s["neck.1.bias"], 1e-6).permute(0, 3, 1, 2)
    y = F.conv2d(y, s["neck.2.weight"], padding=1)
    return F.layer_norm(y.permute(0, 2, 3, 1), (NECK,), s["neck.3.weight"], s["neck.3.bias"], 1e-6).permute(0, 3, 1, 2)


def test_a_sam_checkpoint_loads_unrenamed_and_matches_the_reference(tmp_path):
    state = sam_layout_state()
    path = tmp_path / "sam_tiny.pth"
    torch.save(state, path)
    pretrained = load_encoder(path)
    encoder, card = pretrained.encoder, pretrained.card
    assert card["format"] == "sam" and card["load_report"]["prompt_and_mask_decoder_keys_skipped"] == 2
    assert encoder.config | {} == {"bands": 3, "img_size": GRID * PATCH, "patch_size": PATCH, "embed_dim": DIM, "depth": DEPTH,
                                   "num_heads": HEADS, "mlp_ratio": 4.0, "window_size": WINDOW, "global_blocks": list(GLOBAL), "out_chans": NECK}
    image = torch.randn(3, GRID * PATCH, GRID * PATCH)
    with torch.no_grad():
        assert torch.allclose(encoder(image[None]), ref_encoder(image, state), atol=1e-4)
        features = encoder.forward_features(image[None], (1, 3))
    assert [tuple(f.shape) for f in features] == [(1, DIM, GRID, GRID)] * 2
    from rsdistill.models.registry import build_encoder
    from rsdistill.models.upernet import UPerNet

    rebuilt = build_encoder({"name": "sam", **encoder.config})  # what a segmentation checkpoint rebuilds it from
    assert set(rebuilt.state_dict()) == set(encoder.state_dict())
    assert tuple(UPerNet(encoder, 4, channels=8).eval()(image[None]).shape) == (1, 4, GRID * PATCH, GRID * PATCH)
    raw = torch.rand(1, 3, GRID * PATCH, GRID * PATCH) * 255  # raw 0-255 RGB through SAM's pixel mean/std
    normalised = (raw[0].permute(1, 2, 0) - torch.tensor([123.675, 116.28, 103.53])) / torch.tensor([58.395, 57.12, 57.375])
    expected = ref_encoder(normalised.permute(2, 0, 1), state)
    with torch.no_grad():
        assert torch.allclose(encoder(pretrained.preprocessing.standardise(raw, channel_axis=1)), expected, atol=1e-4)


def test_another_input_size_resizes_position_tables_and_a_wrong_checkpoint_is_named(tmp_path):
    state = {k: v for k, v in sam_layout_state().items()}
    encoder, card = load_sam_checkpoint("tiny.pth", state, img_size=48)
    assert tuple(encoder.pos_embed.shape) == (1, 12, 12, DIM) and tuple(encoder.blocks[1].attn.rel_pos_h.shape) == (23, DIM // HEADS)
    assert tuple(encoder.blocks[0].attn.rel_pos_h.shape) == (2 * WINDOW - 1, DIM // HEADS)  # window tables keep their size
    assert card["load_report"]["resized"] == {"pos_embed": [GRID, 12], "global_rel_pos": [2 * GRID - 1, 23]}
    with torch.no_grad():
        assert tuple(encoder(torch.randn(1, 3, 48, 48)).shape) == (1, NECK, 12, 12)
    with pytest.raises(InputError, match=r"tiny.pth: the checkpoint is a SAM encoder with .*'embed_dim': 32.* but the config asks for vit_b"):
        load_sam_checkpoint("tiny.pth", state, variant="vit_b")
    broken = dict(state)
    broken["image_encoder.blocks.1.mlp.lin1.weight"] = torch.zeros(4 * DIM, DIM + 1)
    with pytest.raises(InputError, match=r"blocks.1.mlp.lin1.weight: checkpoint \(128, 33\), expected \(128, 32\)"):
        load_sam_checkpoint("tiny.pth", broken)
    del broken["image_encoder.blocks.1.mlp.lin1.weight"]
    with pytest.raises(InputError, match=r"missing keys \['blocks.1.mlp.lin1.weight'\]"):
        load_sam_checkpoint("tiny.pth", broken)
    with pytest.raises(InputError, match="not a SAM image encoder"):
        load_sam_checkpoint("tiny.pth", {"image_encoder.blocks.0.attn.rel_pos_h": torch.zeros(5, 4)})
