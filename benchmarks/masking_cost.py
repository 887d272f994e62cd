"""Cost of significance masking as a fraction of one MAE training step, and how much two mask
draws of the same tiles agree (the effect of the default score noise).

    python benchmarks/masking_cost.py [--bands 218] [--tile 16] [--batch 16] [--threads 2]

Prints a Markdown table. Random tiles stand in for data: cost does not depend on content; the
agreement is measured on a fixed random significance map.
"""

from __future__ import annotations

import argparse
import time

import torch

from mae_step import CONFIGS, rsdistill_step  # benchmarks/ is on the path when this script runs
from rsdistill.evaluation.script_report import ScriptReport
from rsdistill.masking import mask_from_scores, patch_scores


def best_time(fn, repeats: int = 10) -> float:
    fn()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bands", type=int, default=218)
    parser.add_argument("--tile", type=int, default=16)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", help="also write what is printed as a results file (JSON) for `rsdistill tables`")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    images = torch.randn(args.batch, args.bands, args.tile, args.tile)
    # the step ``rsdistill fit`` takes, at the EnMAP recipe size, as in mae_step.py
    model, training_loss = rsdistill_step({**CONFIGS["recipe"], "bands": args.bands, "tile": args.tile, "batch": args.batch})
    optimizer = torch.optim.AdamW(model.parameters(), fused=True)

    def step():
        loss = training_loss(images)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    step_time = best_time(step)
    report = ScriptReport(args.out)
    report.text(f"{args.batch} tiles of {args.bands}×{args.tile}×{args.tile}, {args.threads} threads; "
                f"one training step (random masking): {1000 * step_time:.1f} ms")
    report.text()
    report.table("score", "ms per batch", "fraction of a step")
    for score in ("random", "gabor", "wavelet"):
        cost = best_time(lambda: patch_scores(images, score, 4))
        report.row(score, f"{1000 * cost:.2f}", f"{100 * cost / step_time:.1f} %")
    significance = torch.rand(1000, 64)
    report.text()
    report.text("share of masked patches that two draws of the same tiles have in common (ratio 0.75):")
    for noise in (0.0, 0.25, 0.5, 1.0):
        first = mask_from_scores(significance, 0.75, noise).mask
        second = mask_from_scores(significance, 0.75, noise).mask
        report.text(f"  noise {noise}: {float(((first == 1) & (second == 1)).sum() / (first == 1).sum()):.2f}")
    first = mask_from_scores(torch.rand(1000, 64), 0.75, 0.0).mask
    second = mask_from_scores(torch.rand(1000, 64), 0.75, 0.0).mask
    report.text(f"  random masking: {float(((first == 1) & (second == 1)).sum() / (first == 1).sum()):.2f}")
    report.save()


if __name__ == "__main__":
    main()
