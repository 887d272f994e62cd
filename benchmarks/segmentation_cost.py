"""What a segmentation model costs: params, forward GFLOPs and CPU latency per tile.

Models (5 classes, RGB, as the Dubai experiment): UPerNet (192 channels) on a ViT-S/16 (the
Mask-CDKD student's shape), the same on a SAM ViT-B image encoder, and the U-Net baseline. FLOPs
by ``rsdistill.evaluation.cost.forward_flops`` (FlopCounterMode with CPU attention registered; a
multiply-add = 2 FLOPs; "GMACs" = half); the ViT-S row also splits the encoder's FLOPs into
attention (Q·Kᵀ, A·V) and the rest, to set beside Mask-CDKD's published 29.65 M params and 119.76
GFLOPs at 1024². Latency: one tile, batch 1, the models timed in turn (A B C A B C ...) for
``--rounds`` rounds on ``--threads`` threads; median and range over rounds, and each model's
ratio to the first, per round, so drift in a shared machine's speed hits all alike.

    python benchmarks/segmentation_cost.py --sizes 512 1024 --rounds 5 --threads 2 [--out cost.json]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from rsdistill.evaluation.cost import forward_flops
from rsdistill.evaluation.script_report import ScriptReport
from rsdistill.models.sam import SAMImageEncoder
from rsdistill.models.segmentation_cnn import UNet
from rsdistill.models.upernet import UPerNet
from rsdistill.models.vit import ViTEncoder

CLASSES = 5


def models(size: int) -> dict[str, torch.nn.Module]:
    vit_s = ViTEncoder(3, size, patch_size=16, embed_dim=384, depth=12, num_heads=6)
    sam_b = SAMImageEncoder(3, size, 16, 768, 12, 12, window_size=14, global_blocks=[3, 6, 9, 12])
    return {"UPerNet-192 on ViT-S/16": UPerNet(vit_s, CLASSES, channels=192).eval(),
            "UPerNet-192 on SAM ViT-B": UPerNet(sam_b, CLASSES, channels=192).eval(),
            "U-Net (width 32, depth 4)": UNet(3, CLASSES, 32, 4).eval()}


def attention_flops(size: int, dim: int = 384, depth: int = 12) -> int:
    tokens = (size // 16) ** 2 + 1
    return depth * 4 * tokens * tokens * dim


def timed(model: torch.nn.Module, tile: torch.Tensor) -> float:
    with torch.no_grad():
        start = time.perf_counter()
        model(tile)
        return 1000 * (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[512, 1024])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--out", help="also write what is printed as a results file (JSON) for `rsdistill tables`")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    report = ScriptReport(args.out)
    report.text(f"torch {torch.__version__}, {args.threads} threads, {args.rounds} interleaved rounds, batch 1")
    report.text()
    report.table("model", "tile", "params", "GFLOPs", "GMACs", "ms (median, range)", "× first (median, range)")
    for size in args.sizes:
        built = models(size)
        tile = torch.randn(1, 3, size, size)
        flops = {name: forward_flops(model, tile) for name, model in built.items()}
        for model in built.values():
            timed(model, tile)  # warm-up
        times = {name: [] for name in built}
        for _ in range(args.rounds):
            for name, model in built.items():
                times[name].append(timed(model, tile))
        first = next(iter(built))
        for name, model in built.items():
            ratios = [t / f for t, f in zip(times[name], times[first])]
            report.row(name, f"{size}²", f"{sum(p.numel() for p in model.parameters()) / 1e6:.2f} M", f"{flops[name] / 1e9:.1f}",
                       f"{flops[name] / 2e9:.1f}", f"{statistics.median(times[name]):.0f} ({min(times[name]):.0f}–{max(times[name]):.0f})",
                       f"{statistics.median(ratios):.2f} ({min(ratios):.2f}–{max(ratios):.2f})")
        encoder = built[first].encoder
        encoder_flops = forward_flops(_Features(encoder), tile)
        report.row("ViT-S/16 encoder alone", f"{size}²", f"{sum(p.numel() for p in encoder.parameters()) / 1e6:.2f} M",
                   f"{encoder_flops / 1e9:.1f} (attention {attention_flops(size) / 1e9:.1f})", f"{encoder_flops / 2e9:.1f}", "", "")
    report.save()


class _Features(torch.nn.Module):
    def __init__(self, encoder):
        super().__init__()
        self.encoder = encoder

    def forward(self, x):
        return self.encoder.forward_features(x, (4, 6, 8, 12))


if __name__ == "__main__":
    main()
