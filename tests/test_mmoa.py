"""Mask-CDKD's MMoA on a frozen SAM encoder: the identity start leaves SAM unchanged, the official
form mixes three streams with per-token weights, only adapters and gates train, ablations build."""

import pytest
import torch

from rsdistill.errors import InputError
from rsdistill.models.mmoa import ExpertGate, MMoAEncoder, MMoAOptions
from rsdistill.models.sam import SAMImageEncoder


def tiny_sam():
    torch.manual_seed(0)
    encoder = SAMImageEncoder(3, 32, 4, 32, 3, 2, window_size=3, global_blocks=[2], out_chans=16)
    for p in encoder.parameters():  # SAM's rel-pos tables start at zero; give them values
        p.data.normal_(0, 0.1) if p.ndim else None
    return encoder


def test_identity_start_is_sam_exactly_and_only_adapters_and_gates_train():
    sam = tiny_sam()
    images = torch.randn(2, 3, 32, 32)
    teacher = MMoAEncoder(sam)
    with torch.no_grad():
        plain = sam.forward_features(images, (1, 3))
        adapted = teacher.forward_features(images, (1, 3))
    assert all(torch.equal(a, b) for a, b in zip(plain, adapted))
    trainable = {n.split(".")[0] for n, p in teacher.named_parameters() if p.requires_grad}
    assert trainable == {"mmoa"} and not any(p.requires_grad for p in teacher.encoder.parameters())
    teacher.forward_features(images)[0].square().mean().backward()
    assert teacher.mmoa[0].adapters[0].up.weight.grad.abs().sum() > 0  # the zero-initialised output layer learns


def test_official_form_gates_three_streams_per_token_and_ablations_build():
    sam = tiny_sam()
    images = torch.randn(1, 3, 32, 32)
    official = MMoAEncoder(sam, MMoAOptions(start="official"))
    assert official.mmoa[0].gate.query.out_features == 3
    with torch.no_grad():
        assert not torch.allclose(official.forward_features(images)[0], sam.forward_features(images)[0])
    gate = ExpertGate(32, 3)
    x = torch.randn(1, 2, 2, 32)
    weights = gate(x)
    assert weights.shape == (1, 2, 2, 3) and torch.allclose(weights.sum(-1), torch.ones(1, 2, 2))
    q, k, v = gate.query(x[0, 0, 0]), gate.key(x[0, 0, 0]), gate.value(x[0, 0, 0])  # one token by hand
    assert torch.allclose(weights[0, 0, 0], torch.softmax(torch.softmax(torch.outer(q, k), dim=1) @ v, dim=0), atol=1e-6)
    single = MMoAEncoder(sam, MMoAOptions(scales=[[1, 3, 5]]))
    additive = MMoAEncoder(sam, MMoAOptions(fusion="sum"))
    assert len(single.mmoa[0].adapters) == 1 and additive.mmoa[0].gate is None
    with torch.no_grad():
        assert single.forward_features(images)[0].shape == additive.forward_features(images)[0].shape == (1, 32, 8, 8)
    with pytest.raises(InputError, match="MMoA fusion must be gate or sum"):
        MMoAOptions(fusion="max")


def tiny_galileo(groups=("S2_RGB", "S2_Red_Edge", "S2_SWIR")):
    from rsdistill.models.galileo import GalileoEncoder

    torch.manual_seed(0)
    encoder = GalileoEncoder(embed_dim=32, depth=3, num_heads=4, patch_size=4, groups=groups)
    for p in encoder.parameters():
        p.data.normal_(0, 0.1) if p.requires_grad else None
    return encoder


def test_mmoa_on_galileo_starts_as_galileo_and_adapts_each_band_groups_grid(tmp_path):
    """Galileo's band-group tokens (B, h, w, G, C) attend as one sequence; the identity start gives
    Galileo's own block outputs (group tokens averaged, as its forward_features); each adapter
    convolves each group's grid on its own; the adapted teacher saves and reloads as galileo_mmoa."""
    from rsdistill.models.mmoa import MultiScaleAdapter
    from rsdistill.models.registry import load_encoder, save_encoder
    from rsdistill.preprocessing import Preprocessing

    galileo = tiny_galileo()
    images = torch.randn(2, 10, 16, 16)
    teacher = MMoAEncoder(galileo)
    assert teacher.name == "galileo_mmoa" and teacher.patch_size == 4
    with torch.no_grad():
        plain = galileo.forward_features(images, (1, 3))
        adapted = teacher.forward_features(images, (1, 3))
    assert all(torch.equal(a, b) for a, b in zip(plain, adapted)) and adapted[0].shape == (2, 32, 4, 4)
    teacher.forward_features(images)[0].square().mean().backward()
    assert teacher.mmoa[0].adapters[0].up.weight.grad.abs().sum() > 0
    assert not any(p.grad is not None for p in teacher.encoder.parameters())

    adapter = MultiScaleAdapter(32, [1, 3], 0.25, 4, zero_init=False)
    grouped = torch.randn(2, 4, 4, 3, 32)
    with torch.no_grad():
        together = adapter(grouped)
        one_by_one = torch.stack([adapter(grouped[:, :, :, g]) for g in range(3)], dim=3)
    torch.testing.assert_close(together, one_by_one)

    with torch.no_grad():  # trained adapters: no longer the identity, and what is saved is what reloads
        teacher.mmoa[1].adapters[0].up.weight.normal_(0, 0.1)
        before = teacher.forward_features(images)[0]
    save_encoder(teacher, tmp_path / "teacher.safetensors", Preprocessing.create(10, [0.0] * 10, [1.0] * 10))
    reloaded = load_encoder(tmp_path / "teacher.safetensors").encoder
    assert type(reloaded) is MMoAEncoder and reloaded.encoder.groups == galileo.groups
    with torch.no_grad():
        torch.testing.assert_close(reloaded.forward_features(images)[0], before)
        assert not torch.allclose(before, plain[1])
