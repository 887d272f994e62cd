"""Hyper-parameters chosen on the validation split: a model's ``grid`` in an experiment.

``grid: {kd_temperature: [2, 4], kd_max_weight: [0.5, 1.0]}`` among a model's options declares the
settings tried; a dotted key searches a nested option (``distill.weight``: a pretraining recipe's
KD weight β). For each seed every point of the product is fitted and validated; the point with the
best validation score (``select``: ``oa`` for classification, ``miou`` for segmentation; the first
declared on ties) is then tested, once. Choosing per seed makes the whole procedure (search,
then fit) what a seed replicates, so a paired comparison with another model stays seed by seed.
Every point's validation scores are published (``grid_table``), the test scores of the chosen only.
Pixel classifiers and segmenters (``experiments.experiment``) are chosen on their validation split,
pretraining recipes (``experiments.pretrain``) on the linear probe's validation tiles.
"""

from __future__ import annotations

import copy
import itertools
from pathlib import Path

import numpy as np

from rsdistill.errors import InputError

NOT_SEARCHABLE = ("grid", "data", "distill_from")


def grid_points(name: str, options: dict) -> list[tuple[str, dict]]:
    """[(label, {option: value})] of the model's ``grid``, in declared order; [] without one.

    The label (``kd_temperature_2-kd_max_weight_0.5``) names the point's run folder.
    """
    grid = options.get("grid")
    if grid is None:
        return []
    if not isinstance(grid, dict) or not grid:
        raise InputError(f"model {name!r}: grid is a mapping {{option: [values]}}, got {grid!r}")
    for key, values in grid.items():
        if key.split(".")[0] in NOT_SEARCHABLE:
            raise InputError(f"model {name!r}: grid cannot search {key!r} (only the model's own options)")
        if not isinstance(values, list) or not values:
            raise InputError(f"model {name!r}: grid.{key} must be a non-empty list of values, got {values!r}")
        if (value := _nested(options, key)) is not None:
            raise InputError(f"model {name!r}: {key} is both set ({value!r}) and searched by grid")
    points = [dict(zip(grid, values)) for values in itertools.product(*grid.values())]
    return [("-".join(f"{key}_{value}" for key, value in point.items()), point) for point in points]


def run_dir_of(out_dir, name: str, label: str | None, seed: int) -> Path:
    """Where a run of ``seed`` lives: ``<out>/<name>/seed_<k>``, or ``<out>/<name>/<label>/seed_<k>``
    for one grid point (the chosen point's record goes to the former)."""
    return Path(out_dir) / name / (label or "") / f"seed_{seed}"


def with_point(options: dict, point: dict) -> dict:
    """The model's options without ``grid``, with the point's values set (dotted keys nested)."""
    out = copy.deepcopy({key: value for key, value in options.items() if key != "grid"})
    for key, value in point.items():
        *parents, leaf = key.split(".")
        node = out
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return out


def _nested(options: dict, key: str):
    """The value of a (dotted) option, None where unset."""
    for part in key.split("."):
        if not isinstance(options, dict) or part not in options:
            return None
        options = options[part]
    return options


def choose(validated: list[dict], metric: str) -> dict:
    """The point record (``{"label", "point", "val": {score: value}}``) with the best validation ``metric``; first on ties."""
    missing = [r["label"] for r in validated if metric not in r["val"]]
    if missing:
        raise InputError(f"select: {metric!r} is not a validation score of grid point {missing[0]!r} (scores: {', '.join(validated[0]['val'])})")
    return max(validated, key=lambda r: (r["val"][metric], -validated.index(r)))


def grid_table(records: list[dict], metric: str) -> str:
    """Markdown: per grid model and point, the validation ``metric`` (mean ± std over seeds) and
    how many seeds chose it."""
    lines = [f"| model | setting | val {metric} (%) | chosen by seeds |", "|---|---|---|---|"]
    for name in dict.fromkeys(r["model"] for r in records if "grid" in r):
        runs = [r for r in records if r["model"] == name]
        for label in dict.fromkeys(p["label"] for r in runs for p in r["grid"]):
            scores = np.array([p["val"][metric] for r in runs for p in r["grid"] if p["label"] == label])
            chosen = sum(r["chosen"] == label for r in runs)
            lines.append(f"| {name} | {label} | {100 * scores.mean():.2f} ± {100 * scores.std():.2f} | {chosen} / {len(runs)} |")
    return "\n".join(lines)
