"""``rsdistill benchmark``: what models cost where they run — parameters, FLOPs, latency and peak
memory, PyTorch checkpoints and ONNX exports side by side.

Latency is measured in interleaved rounds (each round runs every model once, A B C A B C …) at a
fixed thread count, so that a noisy, shared machine slows all models alike; the table gives the
median and the min–max over rounds, per 1,000 pixels (pixel classifiers: batches of 256 patches) or
per tile (segmenters, encoders: one tile per pass). Peak memory: a fresh process loads the model,
resets its resident-set high-water mark (Linux ``/proc/self/clear_refs``) and runs one pass; the
peak during the pass (``VmHWM``, libraries and model included) and what the pass added over the
loaded process are reported. FLOPs: ``evaluation.cost.forward_flops`` of the PyTorch model (attention and
selective scans counted; an ONNX file is counted through the checkpoint its card names). Accuracy is not
measured here: an export's parity check (``<file>.parity.json``, written by ``rsdistill export`` on real
labelled inputs) is read into its row, and PyTorch's score on the same inputs into its checkpoint's row,
so that one table says what each engine costs and what it keeps.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from rsdistill.errors import InputError
from rsdistill.evaluation import SCORE_NAMES
from rsdistill.evaluation.cost import forward_flops, ms_per_1000_pixels, pass_ms

PIXEL_BATCH = 256
NAMED_TILE = 64  # pretrained weights by name are timed on one chip of 64 x 64 px


@dataclass
class Candidate:
    """One model on one engine: ``run(inputs)`` on (n, *input_shape) raw float32 inputs."""

    name: str
    engine: str
    precision: str
    kind: str
    input_shape: tuple[int, ...]
    params: int
    flops: int | None
    run: object
    source: str = ""  # the checkpoint, resolved: the file itself, or the one an ONNX export's card names

    @property
    def per_pixel(self) -> bool:
        return self.kind == "pixel_classification"


def load_candidate(path, threads: int) -> Candidate:
    """A checkpoint (PyTorch, fp32), an ONNX export (onnxruntime on ``threads`` threads), or
    pretrained weights by name, ``NAME`` or ``NAME:pP`` for patch size P (Galileo), on raw 64² chips."""
    from rsdistill.deploy.onnx_export import deployable
    from rsdistill.models.pretrained import WEIGHTS

    if not Path(path).exists() and str(path).split(":")[0].lower() in WEIGHTS:
        return _named_candidate(str(path))
    path = Path(path)
    if path.suffix == ".onnx":
        from rsdistill.deploy.runtime import OnnxModel

        session = OnnxModel(path, threads)
        card = session.card
        source = Path(card.get("source", ""))
        if source.suffix in (".ckpt", ".safetensors") and source.is_file():  # the network's own counts
            model = deployable(source)
            params, flops = sum(p.numel() for p in model.module.parameters()), _flops(model)
        else:  # weights as stored (normalisation constants included), FLOPs unknown
            params, flops = _onnx_params(path), None
        return Candidate(path.name, "onnxruntime", card["precision"], card["task"], session.input_shape, params, flops, session,
                         str(source.resolve()) if source.name else "")
    model = deployable(path)
    module = model.module.eval()
    run = _torch_runner(module)
    params = sum(p.numel() for p in module.parameters())
    folders = path.resolve().parent.parts[-2:]  # runs/<model>/<seed>/last.ckpt -> <model>/<seed>
    name = "/".join(folders) if path.name == "last.ckpt" else path.name
    return Candidate(name, "pytorch", "fp32", model.kind, model.input_shape, params, _flops(model), run, str(path.resolve()))


def _named_candidate(spec: str) -> Candidate:
    from rsdistill.models.registry import load_encoder

    name, _, patch = spec.partition(":")
    if patch and not (patch.startswith("p") and patch[1:].isdigit()):
        raise InputError(f"{spec}: a weights name with a patch size is NAME:pP, e.g. galileo-nano:p4")
    encoder = load_encoder(name, **({"patch_size": int(patch[1:])} if patch else {})).eval()
    shape = (encoder.preprocessing.bands, NAMED_TILE, NAMED_TILE)
    params = sum(p.numel() for p in encoder.parameters())
    return Candidate(spec, "pytorch", "fp32", "encoder", shape, params, forward_flops(encoder, torch.randn(1, *shape)), _torch_runner(encoder))


def _torch_runner(module):
    """``run(inputs)`` of a PyTorch model on (n, ...) float32 numpy inputs, without gradients."""

    def run(inputs: np.ndarray):
        with torch.no_grad():
            return module(torch.from_numpy(inputs))

    return run


def _flops(model) -> int:
    return forward_flops(model.module, torch.randn(1, *model.input_shape))


def _onnx_params(path) -> int:
    import onnx

    return sum(int(np.prod(t.dims)) for t in onnx.load(path).graph.initializer)


def inputs_for(candidate: Candidate, pixels: int, seed: int = 0) -> np.ndarray:
    """Standard-normal raw inputs: ``pixels`` patches for a pixel classifier, else one tile."""
    count = pixels if candidate.per_pixel else 1
    return np.random.default_rng(seed).standard_normal((count, *candidate.input_shape), dtype=np.float32)


def _time_once(candidate: Candidate, inputs: np.ndarray) -> float:
    """ms per 1,000 pixels (pixel classifiers) or per tile."""
    if candidate.per_pixel:
        return ms_per_1000_pixels(candidate.run, inputs, PIXEL_BATCH)
    return pass_ms(candidate.run, inputs)


def measure(candidates: list[Candidate], rounds: int, pixels: int) -> dict[str, list[float]]:
    """Interleaved timings: {name: [one value per round]}, after one warm-up pass of each."""
    inputs = [inputs_for(c, pixels) for c in candidates]
    for candidate, batch in zip(candidates, inputs):
        _time_once(candidate, batch)
    times = {c.name: [] for c in candidates}
    for _ in range(rounds):
        for candidate, batch in zip(candidates, inputs):
            times[candidate.name].append(_time_once(candidate, batch))
    return times


def peak_memory_mb(path, threads: int, pixels: int) -> dict[str, float]:
    """{"peak_mb", "pass_mb"}: a fresh process's resident high-water mark after loading ``path``
    and running one pass, and how much the pass added over loading."""
    code = ("import sys, json; from rsdistill.evaluation.benchmark import _child_memory; "
            "print(json.dumps(_child_memory(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]))))")
    done = subprocess.run([sys.executable, "-c", code, str(path), str(threads), str(pixels)], capture_output=True, text=True)
    if done.returncode != 0:
        raise InputError(f"{path}: the memory probe failed: {done.stderr.strip().splitlines()[-1] if done.stderr.strip() else done.returncode}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _status_mb(field: str) -> float:
    line = next(line for line in Path("/proc/self/status").read_text().splitlines() if line.startswith(field + ":"))
    return int(line.split()[1]) / 1024


def _child_memory(path, threads: int, pixels: int) -> dict[str, float]:
    torch.set_num_threads(threads)
    candidate = load_candidate(path, threads)
    batch = inputs_for(candidate, pixels)
    loaded = _status_mb("VmRSS")
    Path("/proc/self/clear_refs").write_text("5")  # VmHWM := VmRSS
    _time_once(candidate, batch)
    peak = _status_mb("VmHWM")
    return {"peak_mb": peak, "pass_mb": peak - loaded}


def benchmark(paths: list, threads: int = 1, rounds: int = 7, pixels: int = 1024, memory: bool = True) -> list[dict]:
    """One row per model: params, GFLOPs per pixel or tile, latency median/min/max, peak memory."""
    torch.set_num_threads(threads)
    candidates = [load_candidate(path, threads) for path in paths]
    names = [c.name for c in candidates]
    if len(set(names)) != len(names):
        candidates = [Candidate(**{**c.__dict__, "name": str(path)}) for c, path in zip(candidates, paths)]
    times = measure(candidates, rounds, pixels)
    rows = []
    for candidate, path in zip(candidates, paths):
        values = times[candidate.name]
        rows.append({
            "model": candidate.name, "engine": candidate.engine, "precision": candidate.precision, "task": candidate.kind,
            "params": candidate.params, "gflops": None if candidate.flops is None else candidate.flops / 1e9,
            "unit": "ms / 1000 px" if candidate.per_pixel else "ms / tile",
            "input": list(candidate.input_shape),
            "median": statistics.median(values), "min": min(values), "max": max(values), "rounds": rounds, "threads": threads,
            **(peak_memory_mb(path, threads, pixels) if memory else {}),
        })
    add_parity(rows, paths, candidates)
    return rows


def add_parity(rows: list[dict], paths: list, candidates: list[Candidate]) -> None:
    """Each ONNX row gets its export's parity check (``<file>.parity.json`` beside it, when there is
    one): the metric (``oa`` or ``miou``) of onnxruntime's outputs, the argmax agreement with PyTorch
    and the largest |Δ| of the outputs; the row of the checkpoint it was exported from (its card's
    ``source``) gets PyTorch's metric on the same inputs."""
    from rsdistill.deploy.parity import report_files

    by_source = {}
    for row, path, candidate in zip(rows, paths, candidates):
        report_file = report_files(path)[0]
        if candidate.engine != "onnxruntime" or not report_file.is_file():
            continue
        report = json.loads(report_file.read_text())
        row.update({"parity_inputs": report["inputs"], "max_abs_diff": report["max_abs_diff"],
                    **{key: report[key] for key in ("argmax_agreement", "min_cosine") if key in report}})
        if "metric" in report:
            metric = report["metric"]
            row.update(metric=metric, score=report["onnx_" + metric])
            by_source.setdefault(candidate.source, {"metric": metric, "score": report["torch_" + metric], "parity_inputs": report["inputs"]})
    for row, candidate in zip(rows, candidates):
        if candidate.engine == "pytorch" and candidate.source:
            row.update(by_source.get(candidate.source, {}))


def markdown(rows: list[dict]) -> str:
    """The table of ``benchmark``'s rows; with the exports' parity checks (``add_parity``) three more
    columns: the metric in %, the argmax agreement with PyTorch and the largest |Δ| of the outputs."""
    first = rows[0]
    metrics = sorted({r["metric"] for r in rows if "metric" in r})
    accuracy = ["/".join(SCORE_NAMES[m] for m in metrics) + " (%)", "argmax agreement", "max abs Δ"] if metrics else []
    lines = [f"{first['threads']} thread(s), {first['rounds']} interleaved rounds, median (min–max); "
             "GFLOPs per pixel (pixel classifiers) or per tile", ""]
    if metrics:
        inputs = sorted({r["parity_inputs"] for r in rows if "parity_inputs" in r})
        lines[0] += f"; accuracy from the exports' parity checks on {'/'.join(map(str, inputs))} labelled inputs"
    header = ["model", "engine", "precision", "params", "GFLOPs", "latency", "median (min–max)", "peak MB (pass)", *accuracy]
    lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for r in rows:
        gflops = "—" if r["gflops"] is None else f"{r['gflops']:.4g}"
        memory = f"{r['peak_mb']:.0f} ({r['pass_mb']:.0f})" if "peak_mb" in r else "—"
        cells = [r["model"], r["engine"], r["precision"], f"{r['params']:,}", gflops, r["unit"],
                 f"{r['median']:.1f} ({r['min']:.1f}–{r['max']:.1f})", memory]
        if metrics:
            cells += [f"{100 * r['score']:.2f}" if "score" in r else "—",
                      f"{100 * r['argmax_agreement']:.2f} %" if "argmax_agreement" in r else "—",
                      f"{r['max_abs_diff']:.2g}" if "max_abs_diff" in r else "—"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
