"""Model costs: FLOPs with attention counted on CPU, where FlopCounterMode's registry misses it."""

import torch

from rsdistill.evaluation.cost import forward_flops, latency_ms
from rsdistill.models.vit import ViTEncoder


class Features(torch.nn.Module):
    def __init__(self, encoder):
        super().__init__()
        self.encoder = encoder

    def forward(self, x):
        return self.encoder.forward_features(x, (self.encoder.depth,))


def test_vit_flops_match_the_analytic_count_attention_included():
    dim, depth, heads, patch, size = 32, 2, 4, 4, 16
    model = Features(ViTEncoder(3, size, patch, dim, depth, heads))
    tokens = (size // patch) ** 2 + 1  # with the class token
    linear = 2 * tokens * (3 * dim * dim + dim * dim + 2 * dim * 4 * dim)  # qkv, proj, MLP (ratio 4)
    attention = 2 * 2 * tokens * tokens * dim  # Q·Kᵀ and A·V
    embed = 2 * (tokens - 1) * dim * 3 * patch * patch
    assert forward_flops(model, torch.randn(1, 3, size, size)) == depth * (linear + attention) + embed
    assert latency_ms(model, torch.randn(1, 3, size, size), repeats=2) > 0
