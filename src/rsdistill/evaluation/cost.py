"""What a model costs: parameters, forward FLOPs and latency on this machine.

FLOPs are counted by ``torch.utils.flop_counter.FlopCounterMode`` on one forward pass (a
multiply-add = 2 FLOPs; fvcore and many papers count it as 1 and report half these numbers). Its
registry knows the CUDA attention kernels but not the one CPU ``scaled_dot_product_attention``
dispatches to (``aten._scaled_dot_product_flash_attention_for_cpu``), so that op is registered here
with torch's own SDPA formula (Q·Kᵀ and A·V: 4·N·heads·L_q·L_k·d); without it a ViT's attention
would count as zero. Nor does it see a BLM's selective scan (element-wise work, or a numba kernel):
``scan_work`` counts it from the scan's shapes — per state element (N·L·E·S) 7 FLOPs (Δ·A; the
decay times the state; Δ·B, times x, plus; times C, plus) and 1 exp, per output (N·L·E) 2 (D·x,
plus) — and ``forward_flops`` adds the FLOPs (exps are reported apart). Latency: the median of ``repeats`` timed forward passes of one input after a
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


SCAN_FLOPS_PER_STATE, SCAN_FLOPS_PER_OUTPUT = 7, 2


def scan_work(model: nn.Module, example: torch.Tensor) -> dict[str, int]:
    """{"flops", "exps"} of the selective scans in ``model(example)`` (0 for models without one)."""
    from rsdistill.models.selective_scan import SelectiveScan

    work = {"flops": 0, "exps": 0}

    def count(module, inputs, output):
        x, A = inputs[0], inputs[2]  # x: (N, L, E); A: (E, S)
        states = x.numel() * A.shape[1]
        work["flops"] += SCAN_FLOPS_PER_STATE * states + SCAN_FLOPS_PER_OUTPUT * x.numel()
        work["exps"] += states

    hooks = [m.register_forward_hook(count) for m in model.modules() if isinstance(m, SelectiveScan)]
    try:
        if hooks:
            with torch.no_grad():
                model.eval()(example)
    finally:
        for hook in hooks:
            hook.remove()
    return work


def forward_flops(model: nn.Module, example: torch.Tensor) -> int:
    """FLOPs of ``model(example)`` in eval mode, attention and selective scans included (the scans'
    own loop is counted by ``scan_work`` only: it runs as the numba kernel, unseen by the counter)."""
    from rsdistill.models.selective_scan import SelectiveScan

    model.eval()
    scans = [m for m in model.modules() if isinstance(m, SelectiveScan)]
    backends = [m.backend for m in scans]
    for m in scans:
        m.backend = "numba"
    counter = FlopCounterMode(display=False, custom_mapping=CPU_ATTENTION)
    try:
        with torch.no_grad(), counter:
            model(example)
    finally:
        for m, backend in zip(scans, backends):
            m.backend = backend
    return counter.get_total_flops() + scan_work(model, example)["flops"]


def pass_ms(run, inputs, batch: int | None = None) -> float:
    """Wall time in ms of one pass of ``run`` over ``inputs`` (a tensor or array), in chunks of
    ``batch`` along the first axis when given: the one clock every latency here is read from."""
    start = time.perf_counter()
    if batch is None:
        run(inputs)
    else:
        for first in range(0, len(inputs), batch):
            run(inputs[first:first + batch])
    return 1e3 * (time.perf_counter() - start)


def ms_per_1000_pixels(run, pixels, batch: int) -> float:
    """One pass over ``pixels`` (N, ...) in batches, in ms per 1,000 pixels."""
    return 1e3 * pass_ms(run, pixels, batch) / len(pixels)


def latency_ms(model: nn.Module, example: torch.Tensor, repeats: int = 5) -> float:
    """Median wall time of ``model(example)`` in ms (eval mode, no grad, after one warm-up pass)."""
    model.eval()
    with torch.no_grad():
        model(example)
        return statistics.median(pass_ms(model, example) for _ in range(repeats))
