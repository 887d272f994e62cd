"""The BLM-KD models' forward as it was before issue 16 (mambapy's parallel scan, the input
standardised into a copy: ``mambapy+copy``) against the fused numba scan with the same copy
(``numba+copy``), and with the standardisation folded into the spectral 1×1 convolution as now
(``numba``; ``torch``: the PyTorch loop used for export), with the HybridSN CNN as a yardstick.

    python benchmarks/blm_scan.py [--config configs/blm_kd/enmap_tiles.yaml] [--threads 2] [--rounds 7]

Each round times every (model, variant) once, interleaved (A B C A B C ...), for inference (no
grad, batches of 256) and one training step (forward + backward + AdamW, batch 128) on random
224-band 9×9 patches; the table gives the median (min–max) ms per 1,000 pixels and the speed-up
over ``mambapy+copy`` computed per round. Same weights in every variant. Each round also times an
fp32 matmul (2048², the machine's practical FLOP rate on the same threads): the "% of matmul"
column is a model's inference FLOP rate (``evaluation.cost.forward_flops``, scan included) over
that round's matmul rate, median over rounds.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from rsdistill.evaluation.cost import forward_flops
from rsdistill.evaluation.script_report import ScriptReport
from rsdistill.experiments.experiment import load_experiment
from rsdistill.models.selective_scan import set_scan_backend
from rsdistill.preprocessing import Preprocessing
from rsdistill.tasks.classification import PixelClassifier

BEFORE = "mambapy+copy"


def use_backend(model: torch.nn.Module, variant: str) -> None:
    """``mambapy…`` restores mambapy's own parallel scan; otherwise a ``SelectiveScan`` backend."""
    backend = variant.removesuffix("+copy")
    for block in model.modules():
        if type(block).__name__ == "MambaBlock":
            if backend == "mambapy":
                block.__dict__.pop("selective_scan", None)
            else:
                block.__dict__["selective_scan"] = block.scan
    if backend != "mambapy":
        set_scan_backend(model, backend)


def logits(model, chunk: torch.Tensor, variant: str) -> torch.Tensor:
    """``…+copy``: the input standardised into a copy, then the net (the forward before issue 16)."""
    return model.net(model.input_preprocessing(chunk)) if variant.endswith("+copy") else model(chunk)


def infer_ms(model, patches, variant: str) -> float:
    model.eval()
    start = time.perf_counter()
    with torch.no_grad():
        for chunk in patches.split(256):
            logits(model, chunk, variant)
    return 1e6 * (time.perf_counter() - start) / patches.shape[0]


def train_ms(model, patches, labels, optimiser, variant: str) -> float:
    model.train()
    start = time.perf_counter()
    for chunk, target in zip(patches.split(128), labels.split(128)):
        optimiser.zero_grad()
        torch.nn.functional.cross_entropy(logits(model, chunk, variant), target).backward()
        optimiser.step()
    return 1e6 * (time.perf_counter() - start) / patches.shape[0]


def matmul_gflops(size: int = 2048, repeats: int = 4) -> float:
    """fp32 GFLOP/s of ``repeats`` (size × size) @ (size × size) products on torch's threads."""
    a, b = torch.randn(size, size), torch.randn(size, size)
    start = time.perf_counter()
    for _ in range(repeats):
        a @ b
    return repeats * 2 * size**3 / (time.perf_counter() - start) / 1e9


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="configs/blm_kd/enmap_tiles.yaml")
    parser.add_argument("--models", nargs="+", default=["teacher", "student", "cnn"])
    parser.add_argument("--bands", type=int, default=224)
    parser.add_argument("--pixels", type=int, default=1024)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--inference-only", action="store_true",
                        help="no training steps between the inference timings (as in map or evaluation, where the "
                             "allocator never holds a training step's buffers)")
    parser.add_argument("--out", help="also write what is printed as a results file (JSON) for `rsdistill tables`")
    args = parser.parse_args()
    modes = ("infer",) if args.inference_only else ("infer", "train")
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    patches = torch.randn(args.pixels, args.bands, 9, 9)
    labels = torch.randint(0, 6, (args.pixels,))
    info = {"preprocessing": Preprocessing.identity(args.bands).to_dict(), "class_ids": list(range(1, 7)), "patch_size": 9}
    cases = []
    for name in args.models:
        options = {k: v for k, v in load_experiment(args.config)["models"][name].items()
                   if k not in ("distill_from", "kd_temperature", "kd_warmup_epochs", "lr")}
        model = PixelClassifier(info, **options)
        optimiser = torch.optim.AdamW(model.parameters(), lr=1e-4)
        variants = [BEFORE, "numba+copy", "numba", "torch"] if options.get("arch") == "blm" else ["-"]
        cases += [(name, variant, model, optimiser) for variant in variants]
    for name, variant, model, optimiser in cases:  # warm-up: numba compiles, allocators settle
        if variant != "-":
            use_backend(model, variant)
        infer_ms(model, patches[:256], variant)
        if "train" in modes:
            train_ms(model, patches[:128], labels[:128], optimiser, variant)
    times = {(n, b, mode): [] for n, b, _, _ in cases for mode in ("infer", "train")}
    matmul = []
    for _ in range(args.rounds):
        matmul.append(matmul_gflops())
        for name, variant, model, optimiser in cases:
            if variant != "-":
                use_backend(model, variant)
            times[name, variant, "infer"].append(infer_ms(model, patches, variant))
            if "train" in modes:
                times[name, variant, "train"].append(train_ms(model, patches, labels, optimiser, variant))
    report = ScriptReport(args.out)
    report.text(f"{args.bands} bands, 9×9 patches, {args.pixels} pixels, {args.threads} threads, {args.rounds} interleaved rounds; "
                f"fp32 matmul {statistics.median(matmul):.1f} ({min(matmul):.1f}–{max(matmul):.1f}) GFLOP/s")
    report.text()
    training = ("training ms / 1000 px", "× vs before") if "train" in modes else ()
    report.table("model", "variant", "params", "MFLOPs / px", "inference ms / 1000 px", "× vs before", "% of matmul", *training)
    flops_of = {name: forward_flops(model, patches[:1]) for name, _, model, _ in cases}  # once per model: variants compute the same
    for name, variant, model, _ in cases:
        flops = flops_of[name]
        row = [name, variant, f"{sum(p.numel() for p in model.parameters()):,}", f"{flops / 1e6:.2f}"]
        for mode in modes:
            values = times[name, variant, mode]
            row.append(f"{statistics.median(values):.1f} ({min(values):.1f}–{max(values):.1f})")
            base = times.get((name, BEFORE, mode))
            row.append(f"{statistics.median(b / v for b, v in zip(base, values)):.2f}" if base else "")
            if mode == "infer":  # v µs per pixel: flops / v FLOPs per µs = flops / v / 1e3 GFLOP/s
                row.append(f"{statistics.median(100 * flops / v / 1e3 / g for v, g in zip(values, matmul)):.1f}")
        report.row(*row)
    report.save()


if __name__ == "__main__":
    main()
