"""What a model costs: parameters, forward FLOPs and latency on this machine.

FLOPs are counted by ``torch.utils.flop_counter.FlopCounterMode`` on one forward pass (a
multiply-add = 2 FLOPs; fvcore and many papers count it as 1 and report half these numbers). Its
registry knows the CUDA attention kernels but not the one CPU ``scaled_dot_product_attention``
dispatches to (``aten._scaled_dot_product_flash_attention_for_cpu``), so that op is registered here
with torch's own SDPA formula (Q·Kᵀ and A·V: 4·N·heads·L_q·L_k·d); without it a ViT's attention
would count as zero. Latency: the median of ``repeats`` timed forward passes of one input after a
warm-up, on the threads torch uses now (say which when you report it).
"""

from __future__ import annotations

import statistics
import time

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode, sdpa_flop_count


def _cpu_sdpa_flops(query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs) -> int:
    return sdpa_flop_count(query_shape, key_shape, value_shape)


CPU_ATTENTION = {torch.ops.aten._scaled_dot_product_flash_attention_for_cpu: _cpu_sdpa_flops}


def forward_flops(model: nn.Module, example: torch.Tensor) -> int:
    """FLOPs of ``model(example)`` in eval mode, attention included."""
    model.eval()
    counter = FlopCounterMode(display=False, custom_mapping=CPU_ATTENTION)
    with torch.no_grad(), counter:
        model(example)
    return counter.get_total_flops()


def latency_ms(model: nn.Module, example: torch.Tensor, repeats: int = 5) -> float:
    """Median wall time of ``model(example)`` in ms (eval mode, no grad, after one warm-up pass)."""
    model.eval()
    times = []
    with torch.no_grad():
        model(example)
        for _ in range(repeats):
            start = time.perf_counter()
            model(example)
            times.append(1000 * (time.perf_counter() - start))
    return statistics.median(times)
