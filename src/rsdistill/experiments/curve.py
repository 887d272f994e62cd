"""Curves over a data option: one experiment per value, e.g. a label- or data-budget curve.

An experiment config with ``sweep: {max_train_per_class: [5, 25, 150, null]}`` runs the whole
experiment (every model, seed and pair) once per value of that data option, into
``<out>/<option>_<value>/``, then writes ``<out>/curve.json``, ``curve.md`` (per model: the score,
mean ± std, at each value; per pair: the paired difference and its Wilcoxon p at each value) and
``curve.png`` (score against value, ± std). ``null`` is the option unset (for a budget: every
training pixel or scene), labelled "all". Model experiments (``rsdistill experiment``) plot their
first reported score; pretraining experiments (``rsdistill pretrain-experiment``, e.g.
``sweep: {max_train_scenes: [2, 4, 8, null]}``) the linear-probe OA of each recipe.
"""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from rsdistill.errors import InputError  # noqa: E402
from rsdistill.experiments.experiment import run_experiment, task_of  # noqa: E402
from rsdistill.experiments.pretrain import run_pretrain_experiment  # noqa: E402
from rsdistill.experiments.tables import REPORTED, mean_std_cell  # noqa: E402
from rsdistill.files import atomic_write, write_json  # noqa: E402


def sweep_of(config: dict) -> tuple[str, list]:
    """(data option, its values) of an experiment's ``sweep``."""
    sweep = config["sweep"]
    if not isinstance(sweep, dict) or len(sweep) != 1:
        raise InputError(f"sweep: one data option and its values, e.g. {{max_train_per_class: [5, 25, null]}}; got {sweep!r}")
    (option, values), = sweep.items()
    if not isinstance(values, list) or not values:
        raise InputError(f"sweep.{option}: a non-empty list of values, got {values!r}")
    if option in config.get("data", {}):
        raise InputError(f"sweep.{option}: the option is also set in data ({config['data'][option]!r}); set it in one place")
    return option, values


def value_label(value) -> str:
    return "all" if value is None else str(value)


def at_points(config: dict, labels: list[str] | None) -> dict:
    """``config`` with its sweep restricted to the values labelled ``labels`` (``value_label``:
    "150", "all"; None: every value), in the declared order; an unknown label is one line."""
    if labels is None:
        return config
    if "sweep" not in config:
        raise InputError("--points: the experiment has no sweep")
    option, values = sweep_of(config)
    declared = [value_label(value) for value in values]
    unknown = [label for label in labels if label not in declared]
    if unknown:
        raise InputError(f"--points: {unknown[0]!r} is not one of sweep.{option}'s values ({', '.join(declared)})")
    return {**config, "sweep": {option: [value for value in values if value_label(value) in labels]}}


def run_sweep(config: dict, out_dir, seeds=None, models=None, log=print, overwrite: bool = False) -> dict:
    """A model experiment (``experiments.experiment``; cross-validated with ``data.split: folds``,
    ``experiments.cross_validation``, whose curve plots the pooled score and pairs per (fold, seed))
    at every value of the swept data option; write and return the curve."""
    from rsdistill.experiments.cross_validation import folds_of, run_cross_validation

    score = REPORTED[task_of(config)][0]
    if folds_of(config):
        return _curve(config, out_dir, lambda c, out: run_cross_validation(c, out, seeds, models, log, overwrite), f"{score}_pooled", "model", log,
                      paired_score=score)
    return _curve(config, out_dir, lambda c, out: run_experiment(c, out, seeds, models, log, overwrite), score, "model", log)


def run_pretrain_sweep(config: dict, out_dir, seeds=None, log=print, overwrite: bool = False, recipes=None) -> dict:
    """A pretraining experiment (``experiments.pretrain``) at every value of the swept data
    option; write and return the curve of each recipe's linear-probe OA."""
    if "probe" not in config:
        raise InputError("sweep: a pretraining curve plots the linear-probe OA; give a probe section")
    return _curve(config, out_dir, lambda c, out: run_pretrain_experiment(c, out, seeds, log, overwrite, recipes), "probe_oa", "recipe", log)


def _curve(config: dict, out_dir, run, score: str, key: str, log, paired_score: str | None = None) -> dict:
    """``run(config, folder)`` (one experiment writing ``results.json``) at every value of the swept
    data option; write and return the curve of ``score`` per ``key`` (a summary row's name) and of
    the pairs' ``paired_score`` (default: ``score``)."""
    option, values = sweep_of(config)
    if "datasets" in config:
        raise InputError("sweep: an experiment with datasets cannot also sweep a data option; run one sweep per dataset")
    out_dir = Path(out_dir)
    points = []
    for value in values:
        sub_dir = out_dir / f"{option}_{value_label(value)}"
        log(f"{option} = {value_label(value)}")
        run({**{k: v for k, v in config.items() if k != "sweep"}, "data": {**config["data"], option: value}}, sub_dir)
        results = json.loads((sub_dir / "results.json").read_text())
        points.append({"value": value, "summary": results["summary"], "paired": results["paired"]})
    curve = {"option": option, "score": score, "paired_score": paired_score or score, "key": key, "points": points}
    write_json(out_dir / "curve.json", curve)
    (out_dir / "curve.md").write_text(curve_tables(curve))
    curve_figure(curve, out_dir / "curve.png")
    return curve


def curve_tables(curve: dict) -> str:
    """Markdown: the score per model and value, then each pair's paired difference per value."""
    option, score, points, key = curve["option"], curve["score"], curve["points"], curve["key"]
    header = " | ".join(f"{option} {value_label(p['value'])}" for p in points)
    lines = [f"{score} (%), mean ± std over seeds:", "", f"| {key} | {header} |", "|---|" + "---|" * len(points)]
    for name in dict.fromkeys(row[key] for p in points for row in p["summary"]):
        cells = []
        for p in points:
            row = next((r for r in p["summary"] if r[key] == name), None)
            cells.append("–" if row is None else mean_std_cell(row[score], row.get("seeds", 2)))  # cross-validated rows: spread over seeds
        lines.append(f"| {name} | {' | '.join(cells)} |")
    paired_score = curve.get("paired_score", score)
    pairs = list(dict.fromkeys((r["model"], r["reference"]) for p in points for r in p["paired"] if r["metric"] == paired_score))
    if pairs:
        lines += ["", f"Paired {paired_score} differences (points; mean ± std over the paired runs, runs ahead, Wilcoxon p):", "",
                  f"| model − reference | {header} |", "|---|" + "---|" * len(points)]
        for model, reference in pairs:
            cells = []
            for p in points:
                row = next((r for r in p["paired"] if (r["model"], r["reference"], r["metric"]) == (model, reference, paired_score)), None)
                p_value = "–" if row is None or row["wilcoxon_p"] is None else f"{row['wilcoxon_p']:.3f}"
                spread = f"{100 * row['std']:.2f}" if row is not None and len(row["seeds"]) > 1 else "–"  # one pair has no spread
                cells.append("–" if row is None else f"{100 * row['mean']:+.2f} ± {spread} ({row['ahead']}/{len(row['seeds'])}, p {p_value})")
            lines.append(f"| {model} − {reference} | {' | '.join(cells)} |")
    return "\n".join(lines) + "\n"


def curve_figure(curve: dict, path) -> Path:
    """Score against the swept value, one line per model (mean ± std over seeds)."""
    points, score, key = curve["points"], curve["score"], curve["key"]
    fig, ax = plt.subplots(figsize=(7, 4.5))
    positions = range(len(points))
    for name in dict.fromkeys(row[key] for p in points for row in p["summary"]):
        rows = [next((r for r in p["summary"] if r[key] == name), None) for p in points]
        xs = [x for x, r in zip(positions, rows) if r is not None]
        means = [100 * r[score]["mean"] for r in rows if r is not None]
        stds = [100 * r[score]["std"] for r in rows if r is not None]
        ax.errorbar(xs, means, yerr=stds, marker="o", capsize=3, label=name)
    ax.set_xticks(list(positions), [value_label(p["value"]) for p in points])
    ax.set_xlabel(curve["option"])
    ax.set_ylabel(f"test {score} (%)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    path = Path(path)
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=120))
    plt.close(fig)
    return path
