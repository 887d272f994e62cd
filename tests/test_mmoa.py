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
