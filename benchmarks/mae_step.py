"""One MAE training step: rsdistill's ``MaskedAutoencoder`` vs transformers' ``ViTMAEForPreTraining``.

Identical configuration on both sides (bands, tile, patch, widths, depths, heads, MLP ratio, mask
ratio 0.75 with random masking, MSE on the masked patches, fused AdamW on both sides, as
rsdistill's trainer uses). A step is forward + backward + optimizer step on one batch; ours is
the step ``rsdistill fit`` takes (pixel head on the masked patches only). Each model runs in its
own fresh process; the two alternate for ``--rounds`` rounds so that drift in the machine's speed
hits both sides alike:

- time: per process the median over ``--steps`` timed steps after ``--warmup`` steps; the table
  gives the median over rounds, and the time ratio's median and range over rounds;
- memory: the process's peak resident set during the steps minus its resident set once the
  model, optimizer and batch exist (what training itself allocates), median over rounds.

Needs the optional ``bench`` extra (``pip install -e ".[bench]"``: transformers, which works
here only while torchvision is absent). Prints a Markdown table.

    python benchmarks/mae_step.py
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time

import torch

from rsdistill.evaluation.script_report import ScriptReport

CONFIGS = {
    # the EnMAP recipes of configs/mae and configs/hyperkd
    "recipe": dict(bands=218, tile=16, patch=4, dim=128, depth=4, heads=4, dec_dim=64, dec_depth=2, dec_heads=4, batch=16),
    # a ViT-Small-like encoder on larger tiles
    "vit-s": dict(bands=218, tile=64, patch=8, dim=384, depth=6, heads=6, dec_dim=128, dec_depth=2, dec_heads=4, batch=8),
}


def rsdistill_step(c):
    """The training step of ``MAEPretrainer`` (what ``rsdistill fit`` runs), MSE on masked patches."""
    from rsdistill.preprocessing import Preprocessing
    from rsdistill.tasks.pretrain import MAEPretrainer

    info = {"preprocessing": Preprocessing.identity(c["bands"]).to_dict(), "tile_size": c["tile"]}
    task = MAEPretrainer(info, patch_size=c["patch"], embed_dim=c["dim"], depth=c["depth"], num_heads=c["heads"], decoder_embed_dim=c["dec_dim"],
                         decoder_depth=c["dec_depth"], decoder_num_heads=c["dec_heads"], mask_score="random", loss_weights={"mse": 1.0})
    valid = torch.ones(c["batch"], c["tile"], c["tile"], dtype=torch.bool)

    def step(images):
        return task._step({"image": images, "valid": valid}, predict="masked")[2]["total"]

    return task.model, step


def transformers_step(c):
    from transformers import ViTMAEConfig, ViTMAEForPreTraining

    config = ViTMAEConfig(
        image_size=c["tile"], patch_size=c["patch"], num_channels=c["bands"], hidden_size=c["dim"], num_hidden_layers=c["depth"],
        num_attention_heads=c["heads"], intermediate_size=4 * c["dim"], decoder_hidden_size=c["dec_dim"],
        decoder_num_hidden_layers=c["dec_depth"], decoder_num_attention_heads=c["dec_heads"], decoder_intermediate_size=4 * c["dec_dim"],
        mask_ratio=0.75, norm_pix_loss=False, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0, attn_implementation="sdpa",
    )
    model = ViTMAEForPreTraining(config)
    return model, lambda images: model(pixel_values=images).loss


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize()


def child(side: str, name: str, steps: int, warmup: int) -> dict:
    torch.manual_seed(0)
    c = CONFIGS[name]
    model, step = (rsdistill_step if side == "rsdistill" else transformers_step)(c)
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=True)
    images = torch.randn(c["batch"], c["bands"], c["tile"], c["tile"])
    baseline = _rss_bytes()
    times = []
    for index in range(warmup + steps):
        start = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        step(images).backward()
        optimizer.step()
        if index >= warmup:
            times.append(time.perf_counter() - start)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return {"ms": 1000 * statistics.median(times), "train_mb": (peak - baseline) / 2**20,
            "params": sum(p.numel() for p in model.parameters())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--configs", nargs="+", default=list(CONFIGS), choices=list(CONFIGS))
    parser.add_argument("--child", nargs=2, metavar=("SIDE", "CONFIG"), help=argparse.SUPPRESS)
    parser.add_argument("--out", help="also write what is printed as a results file (JSON) for `rsdistill tables`")
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(*args.child, args.steps, args.warmup)))
        return
    report = ScriptReport(args.out)
    report.text(f"torch {torch.__version__}, {torch.get_num_threads()} threads; median of {args.steps} steps after {args.warmup} warm-up, "
                f"{args.rounds} alternating rounds")
    report.text()
    report.table("config", "rsdistill ms/step", "transformers ms/step", "time ratio (range)", "rsdistill train MB",
                 "transformers train MB", "memory ratio", "params (ours / theirs)")
    for name in args.configs:
        runs = {"rsdistill": [], "transformers": []}
        for _ in range(args.rounds):
            for side in runs:
                command = [sys.executable, __file__, "--child", side, name, "--steps", str(args.steps), "--warmup", str(args.warmup)]
                runs[side].append(json.loads(subprocess.run(command, check=True, capture_output=True, text=True).stdout.strip().splitlines()[-1]))
        ratios = [o["ms"] / t["ms"] for o, t in zip(runs["rsdistill"], runs["transformers"])]
        ours, theirs = ({k: statistics.median(r[k] for r in runs[side]) for k in ("ms", "train_mb", "params")} for side in runs)
        report.row(name, f"{ours['ms']:.1f}", f"{theirs['ms']:.1f}", f"{statistics.median(ratios):.2f}× ({min(ratios):.2f}–{max(ratios):.2f})",
                   f"{ours['train_mb']:.0f}", f"{theirs['train_mb']:.0f}", f"{ours['train_mb'] / max(theirs['train_mb'], 1e-9):.2f}×",
                   f"{ours['params']:,} / {theirs['params']:,}")
    report.save()


if __name__ == "__main__":
    main()
