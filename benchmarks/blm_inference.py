"""Parameters, FLOPs and CPU latency of the BLM-KD models at the EnMAP recipe sizes.

    python benchmarks/blm_inference.py [--bands 224] [--classes 6] [--pixels 2048] [--threads 2]

Prints a Markdown table. Latency is the best of 5 passes over ``--pixels`` random 9×9 patches in
batches of 256 (no data loading), so it measures the network only; run it on an idle machine.
"""

from __future__ import annotations

import argparse
import time

import torch
from torch.utils.flop_counter import FlopCounterMode

from rsdistill.evaluation.experiment import load_experiment
from rsdistill.preprocessing import Preprocessing
from rsdistill.tasks.classification import PixelClassifier


def measure(model: torch.nn.Module, patches: torch.Tensor) -> tuple[float, float]:
    """(GFLOPs per pixel, ms per 1,000 pixels)."""
    model.eval()
    with torch.no_grad():
        with FlopCounterMode(display=False) as counter:
            model(patches[:1])
        best = float("inf")
        for _ in range(5):
            start = time.perf_counter()
            for chunk in patches.split(256):
                model(chunk)
            best = min(best, time.perf_counter() - start)
    return counter.get_total_flops() / 1e9, 1e6 * best / patches.shape[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="configs/blm_kd/enmap_tiles.yaml")
    parser.add_argument("--bands", type=int, default=224)
    parser.add_argument("--classes", type=int, default=6)
    parser.add_argument("--pixels", type=int, default=2048)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    patches = torch.randn(args.pixels, args.bands, 9, 9)
    print(f"{args.bands} bands, 9×9 patches, {args.pixels} pixels, {args.threads} threads\n")
    print("| model | params | GFLOPs / pixel | ms / 1000 px |")
    print("|---|---|---|---|")
    for name, options in load_experiment(args.config)["models"].items():
        options = {k: v for k, v in options.items() if k not in ("distill_from", "kd_temperature", "kd_warmup_epochs", "lr")}
        info = {"preprocessing": Preprocessing.identity(args.bands).to_dict(), "class_ids": list(range(1, args.classes + 1)), "patch_size": 9}
        model = PixelClassifier(info, **options)
        gflops, ms = measure(model, patches)
        print(f"| {name} | {model.count_parameters():,} | {gflops:.4f} | {ms:.1f} |")


if __name__ == "__main__":
    main()
