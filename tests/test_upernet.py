"""UPerNet (Feature2Pyramid + UPerHead) on rsdistill encoders: the reference sizes, the pyramid's
strides, dense output at the input size, and a frozen encoder that stays frozen."""

import pytest
import torch

from rsdistill.errors import InputError
from rsdistill.models.upernet import Feature2Pyramid, UPerHead, UPerNet
from rsdistill.models.vit import ViTEncoder


@pytest.mark.parametrize("channels, millions", [(512, 30.9), (256, 9.8), (192, 6.6), (128, 4.2)])
def test_neck_and_head_have_the_reference_size_for_vit_s(channels, millions):
    """REFERENCES.md: head + neck at D = 384 (ViT-S), counted from mmseg's UPerHead/Feature2Pyramid."""
    count = sum(p.numel() for module in (Feature2Pyramid(384), UPerHead([384] * 4, channels, 7)) for p in module.parameters())
    assert count / 1e6 == pytest.approx(millions, abs=0.05)


def test_pyramid_strides_and_dense_scores_at_the_input_size():
    encoder = ViTEncoder(3, 64, 16, 32, 12, 4)
    model = UPerNet(encoder, num_classes=6, channels=16)
    assert model.layers == (4, 6, 8, 12)  # mmseg's out_indices (3, 5, 7, 11) at depth 12
    images = torch.randn(2, 3, 64, 96)
    pyramid = model.neck(encoder.forward_features(images, model.layers))
    assert [tuple(x.shape[2:]) for x in pyramid] == [(16, 24), (8, 12), (4, 6), (2, 3)]  # strides 4, 8, 16, 32
    assert tuple(model(images).shape) == (2, 6, 64, 96)


def test_a_frozen_encoder_gets_no_gradient_and_stays_in_eval_mode():
    model = UPerNet(ViTEncoder(4, 32, 4, 32, 4, 4), num_classes=3, layers=(1, 2, 3, 4), channels=8).train()
    model(torch.randn(2, 4, 32, 32)).sum().backward()
    assert all(p.grad is None for p in model.encoder.parameters()) and not model.encoder.training
    assert all(p.grad is not None for p in model.head.parameters())
    tuned = UPerNet(ViTEncoder(4, 32, 4, 32, 4, 4), num_classes=3, channels=8, freeze_encoder=False).train()
    tuned(torch.randn(2, 4, 32, 32)).sum().backward()
    assert tuned.encoder.patch_embed.proj.weight.grad is not None


def test_taps_beyond_the_depth_are_refused():
    with pytest.raises(InputError, match=r"four encoder blocks in 1\.\.4"):
        UPerNet(ViTEncoder(4, 32, 4, 32, 4, 4), num_classes=3, layers=(1, 2, 3, 5))
