"""The tables of an experiment's results, from its ``results.json`` alone: ``results.md`` is
``results_markdown(results.json)``, so a published table can be checked against its results file
(``tests/test_results_files.py``)."""

from __future__ import annotations

import numpy as np

from rsdistill.evaluation import SCORE_NAMES
from rsdistill.evaluation.kd_diagnosis import diagnosis_table
from rsdistill.evaluation.paired import paired_table
from rsdistill.experiments.grid import grid_table

REPORTED = {"classification": ("oa", "aa", "kappa"), "segmentation": ("miou", "oa", "mf1")}


def results_markdown(results: dict) -> str:
    """``results.md`` of an experiment's ``results.json`` ({runs, summary, paired, diagnosis}): the
    models' table, the grids' validation scores, the pairs over seeds, the teacher diagnosis."""
    records, paired, diagnosis = results["runs"], results["paired"], results.get("diagnosis")
    metric = next((r["select"] for r in records if "grid" in r), None)  # the validation score grids were searched on
    grids = f"\nChosen on validation (best val {metric} per seed; the test scores above are the chosen setting's):\n\n{grid_table(records, metric)}\n"
    return (markdown_table(results["summary"]) + "\n" + (grids if metric else "")
            + (f"\nPaired over seeds:\n\n{paired_table(paired)}\n" if paired else "")
            + (f"\nTeacher against student on the validation pixels (%):\n\n{diagnosis_table(diagnosis)}\n" if diagnosis else ""))


def is_segmentation(records: list[dict]) -> bool:
    return bool(records) and "miou" in records[0]


def summarise_columns(records: list[dict], key: str, columns) -> list[dict]:
    """Per value of ``key``: mean and std (population, over seeds) of every column."""
    rows = []
    for name in dict.fromkeys(r[key] for r in records):
        runs = [r for r in records if r[key] == name]
        row = {key: name, "seeds": len(runs)}
        for column in columns:
            values = np.array([r[column] for r in runs])
            row[column] = {"mean": float(values.mean()), "std": float(values.std())}
        rows.append(row)
    return rows


def segmentation_columns(records: list[dict]) -> list[str]:
    """Test scores, then the validation's (``val_<score>``) where the runs validated, then ms per tile."""
    scores = [k for k in ("miou", "oa", "mf1", "specdeepmap_iou") if k in records[0]]
    return scores + [f"val_{k}" for k in scores if k in records[0].get("val", {})] + ["ms_per_tile"]


def summarise(records: list[dict]) -> list[dict]:
    """Per model: mean ± std over seeds of the task's scores and time; params (and GFLOPs)."""
    if is_segmentation(records):
        flat = [{**r, **{f"val_{k}": v for k, v in r.get("val", {}).items()}} for r in records]
        rows = summarise_columns(flat, "model", segmentation_columns(records))
        constants = ("params", "trained_params", "gflops", "cost_tile")
    else:
        rows = summarise_columns(records, "model", (*REPORTED["classification"], "ms_per_1000_px"))
        constants = ("params",)
    for row in rows:
        first = next(r for r in records if r["model"] == row["model"])
        row.update({k: first[k] for k in constants})
    return rows


def mean_std_cell(value: dict, seeds: int, scale: float = 100.0, digits: int = 2) -> str:
    """``mean ± std`` over seeds; one seed has no spread to show: its value and a dash."""
    mean = f"{scale * value['mean']:.{digits}f}"
    return f"{mean} ± {scale * value['std']:.{digits}f}" if seeds > 1 else f"{mean} ± –"


def markdown_table(summary: list[dict]) -> str:
    if summary and "miou" in summary[0]:
        return segmentation_table(summary)
    lines = [
        "| model | OA (%) | AA (%) | kappa (%) | params | ms / 1000 px | seeds |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in summary:
        cells = [mean_std_cell(row[k], row["seeds"]) for k in REPORTED["classification"]]
        time_cell = mean_std_cell(row["ms_per_1000_px"], row["seeds"], 1.0, 1)
        lines.append(f"| {row['model']} | {' | '.join(cells)} | {row['params']:,} | {time_cell} | {row['seeds']} |")
    return "\n".join(lines)


def segmentation_table(summary: list[dict]) -> str:
    scores = [k for k in summary[0] if k in ("miou", "oa", "mf1", "specdeepmap_iou") or k.startswith("val_")]
    title = [f"val {SCORE_NAMES[k[4:]]}" if k.startswith("val_") else f"test {SCORE_NAMES[k]}" for k in scores]
    tile = summary[0]["cost_tile"]
    lines = [f"| model | {' | '.join(f'{t} (%)' for t in title)} | params (trained) | GFLOPs / {tile}² | ms / {tile}² | seeds |",
             "|---|" + "---|" * (len(scores) + 4)]
    for row in summary:
        cells = [mean_std_cell(row[k], row["seeds"]) for k in scores]
        lines.append(f"| {row['model']} | {' | '.join(cells)} | {row['params']:,} ({row['trained_params']:,}) | {row['gflops']:.2f} | "
                     f"{mean_std_cell(row['ms_per_tile'], row['seeds'], 1.0, 1)} | {row['seeds']} |")
    return "\n".join(lines)
