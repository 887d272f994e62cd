"""Why ``OnnxModel`` turns off onnxruntime's spinning: a checkpoint and its ONNX export timed in one
run of interleaved rounds, each round ``ORT (spinning) -> PyTorch -> ORT (no spinning) -> PyTorch``,
so that one PyTorch timing follows a session whose worker threads may busy-wait after a run
(onnxruntime's default) and the other a session whose threads may not.

    python benchmarks/ort_spinning.py CKPT ONNX [--threads 2] [--rounds 7] [--pixels 1024]

Prints the median (min–max) ms per 1,000 pixels of each, and the per-round ratio of the two
PyTorch timings.
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics

import torch

from rsdistill.deploy.runtime import OnnxModel
from rsdistill.evaluation.benchmark import _time_once, inputs_for, load_candidate
from rsdistill.evaluation.script_report import ScriptReport


def with_spinning(candidate, threads: int, spinning: bool):
    """``candidate`` (an ONNX export) in a session whose worker threads spin after a run or not."""
    session = OnnxModel(candidate.run.path, threads, spinning)
    return dataclasses.replace(candidate, name=f"ORT, spinning {'on' if spinning else 'off'}", run=session)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("ckpt")
    parser.add_argument("onnx")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--pixels", type=int, default=1024)
    parser.add_argument("--out", help="also write what is printed as a results file (JSON) for `rsdistill tables`")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    pytorch = load_candidate(args.ckpt, args.threads)
    spinning, quiet = (with_spinning(load_candidate(args.onnx, args.threads), args.threads, s) for s in (True, False))
    inputs = inputs_for(pytorch, args.pixels)
    order = [(spinning.name, spinning), ("PyTorch after spinning", pytorch), (quiet.name, quiet), ("PyTorch after no spinning", pytorch)]
    for _, candidate in order:  # warm-up
        _time_once(candidate, inputs)
    times = {name: [] for name, _ in order}
    for _ in range(args.rounds):
        for name, candidate in order:
            times[name].append(_time_once(candidate, inputs))
    report = ScriptReport(args.out)
    report.text(f"{args.threads} thread(s), {args.rounds} interleaved rounds, {args.pixels} pixels")
    report.text()
    report.table("timing", "ms / 1000 px")
    for name, values in times.items():
        report.row(name, f"{statistics.median(values):.1f} ({min(values):.1f}–{max(values):.1f})")
    ratios = [a / b for a, b in zip(times["PyTorch after spinning"], times["PyTorch after no spinning"])]
    report.text()
    report.text(f"PyTorch after spinning / after no spinning, per round: {statistics.median(ratios):.2f} "
                f"({min(ratios):.2f}–{max(ratios):.2f})")
    report.save()


if __name__ == "__main__":
    main()
