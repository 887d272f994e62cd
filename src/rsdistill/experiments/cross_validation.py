"""Spatial cross-validation of a pixel-classification experiment: with ``data: {split: folds,
folds: k}`` every model × seed runs on each fold (``<out>/fold_<f>``, each fold an experiment of
its own, so an interrupted one resumes), choices (grids, epochs) made on each fold's validation
blocks inside its training region (``data.splits.fold_split``).

Reported (``results.json``, ``results.md``): per model, the per-fold scores (mean ± std over
folds × seeds) and the pooled scores (per seed, the confusion matrices of the k folds summed: every
labelled pixel tested once), and each declared pair compared per (fold, seed) with a paired t and
Wilcoxon test and the smallest difference the design detects (``evaluation.paired``); the
declared teacher/student diagnoses of every fold, averaged over folds × seeds.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from rsdistill.errors import InputError
from rsdistill.evaluation.kd_diagnosis import diagnosis_table
from rsdistill.evaluation.paired import check_pairs, paired_differences, paired_table
from rsdistill.experiments.experiment import run_experiment
from rsdistill.experiments.tables import REPORTED, mean_std_cell
from rsdistill.files import write_json
from rsdistill.metrics import scores_from_confusion


def folds_of(config: dict) -> int | None:
    """k of a cross-validated experiment (``data.split: folds``), else None."""
    data = config.get("data", {})
    if data.get("split") != "folds":
        return None
    if "fold" in data:
        raise InputError("data.fold: a cross-validated experiment runs every fold; leave fold out")
    folds = data.get("folds", 5)
    if not isinstance(folds, int) or folds < 3:
        raise InputError(f"data.folds: at least 3 (test, validation and training folds), got {folds!r}")
    return folds


def run_cross_validation(config: dict, out_dir, seeds=None, models=None, log=print, overwrite: bool = False) -> dict:
    out_dir = Path(out_dir)
    folds = folds_of(config)
    if "sweep" in config:
        raise InputError("sweep: a cross-validated sweep runs through experiments.curve.run_sweep (rsdistill experiment)")
    records = []
    for fold in range(folds):
        fold_config = {**config, "data": {**config["data"], "fold": fold}}
        for record in run_experiment(fold_config, out_dir / f"fold_{fold}", seeds, models, log, overwrite):
            records.append({**record, "fold": fold, "unit": f"fold {fold} seed {record['seed']}"})
    names = list(dict.fromkeys(r["model"] for r in records))
    summary = []
    for name in names:
        runs = [r for r in records if r["model"] == name]
        pooled = [scores_from_confusion(sum(np.asarray(r["confusion"]) for r in runs if r["seed"] == seed))
                  for seed in sorted({r["seed"] for r in runs})]
        summary.append({"model": name, "runs": len(runs), "seeds": len(pooled), "params": runs[0]["params"],
                        **{f"{k}_per_fold": _mean_std([r[k] for r in runs]) for k in REPORTED["classification"]},
                        **{f"{k}_pooled": _mean_std([p[k] for p in pooled]) for k in REPORTED["classification"]}})
    pairs = [p for p in check_pairs(config.get("pairs"), config["models"]) if set(p) <= set(names)]
    paired = paired_differences(records, pairs, REPORTED["classification"], unit="unit")
    diagnosis = [{**row, "fold": fold} for fold in range(folds)
                 for row in json.loads((out_dir / f"fold_{fold}" / "results.json").read_text()).get("diagnosis", [])]
    results = {"folds": folds, "runs": records, "summary": summary, "paired": paired, "diagnosis": diagnosis}
    write_json(out_dir / "results.json", results)
    (out_dir / "results.md").write_text(results_markdown(results))
    return {"runs": records, "summary": summary, "paired": paired}


def results_markdown(results: dict) -> str:
    """``results.md`` of a cross-validated ``results.json``: the models, the pairs per (fold, seed), the diagnosis."""
    paired, diagnosis = results["paired"], results["diagnosis"]
    table = markdown(results["summary"], results["folds"]) + (f"\nPaired over (fold, seed):\n\n{paired_table(paired)}\n" if paired else "")
    if diagnosis:
        table += f"\nTeacher against student on each fold's validation pixels (%, mean ± std over folds × seeds):\n\n{diagnosis_table(diagnosis)}\n"
    return table


def _mean_std(values) -> dict:
    values = np.asarray(values, dtype=float)
    return {"mean": float(values.mean()), "std": float(values.std())}


def markdown(summary: list[dict], folds: int) -> str:
    lines = [f"Spatial {folds}-fold cross-validation: per fold (mean ± std over folds × seeds) and pooled (the folds' confusion "
             "matrices summed per seed: every labelled pixel tested once; mean ± std over seeds), %.", "",
             "| model | OA per fold | OA pooled | AA pooled | kappa pooled | params | runs |", "|---|---|---|---|---|---|---|"]
    for row in summary:  # pooled: one value per seed (one seed: no spread to show)
        pooled = [mean_std_cell(row[f"{k}_pooled"], row["runs"] // folds) for k in ("oa", "aa", "kappa")]
        lines.append(f"| {row['model']} | {mean_std_cell(row['oa_per_fold'], row['runs'])} | {' | '.join(pooled)} | "
                     f"{row['params']:,} | {row['runs']} |")
    return "\n".join(lines) + "\n"
