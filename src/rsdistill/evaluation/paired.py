"""Paired comparisons over seeds: with the same seed a model and its reference see the same split
and data order, so the difference per seed (model − reference) is what a with/without comparison
(KD vs no KD, an ablation vs the full method) measures. Reported: the differences, their mean ±
std, how many seeds the model is ahead, a paired t-test and the Wilcoxon signed-rank test (scipy;
exact for few seeds: with 3 seeds no two-sided p can fall below 0.25, so 5 or more are needed for
p < 0.05).

An experiment declares its comparisons as ``pairs: [[model, reference], ...]``.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import stats

from rsdistill.errors import InputError


def check_pairs(pairs: list, models, key: str = "pairs") -> list[tuple[str, str]]:
    """``pairs`` (the config's ``key``) as (model, reference) tuples of declared models, or an error naming the unknown one."""
    checked = []
    for pair in pairs or []:
        if not isinstance(pair, (list, tuple)) or len(pair) != 2:
            raise InputError(f"{key}: each entry is [model, reference], got {pair!r}")
        unknown = [name for name in pair if name not in models]
        if unknown:
            raise InputError(f"{key}: {unknown[0]!r} is not one of the experiment's models ({', '.join(models)})")
        checked.append((str(pair[0]), str(pair[1])))
    return checked


def paired_differences(records: list[dict], pairs: list[tuple[str, str]], metrics, unit: str = "seed") -> list[dict]:
    """One row per (pair, metric) over the seeds both models ran (``unit``: the record key that
    pairs runs, e.g. a (fold, seed) label under cross-validation), with the smallest mean
    difference the design could detect (``detectable``: paired t, two-sided α 0.05, power 0.8, at
    the observed spread)."""
    rows = []
    for model, reference in pairs:
        runs = {name: {r[unit]: r for r in records if r["model"] == name} for name in (model, reference)}
        seeds = sorted(set(runs[model]) & set(runs[reference]))
        if not seeds:
            continue
        for metric in metrics:
            differences = np.array([runs[model][s][metric] - runs[reference][s][metric] for s in seeds])
            rows.append({
                "model": model, "reference": reference, "metric": metric, "seeds": seeds, "differences": differences.tolist(),
                "mean": float(differences.mean()), "std": float(differences.std()), "ahead": int((differences > 0).sum()),
                "t_p": _p(lambda: stats.ttest_1samp(differences, 0.0).pvalue, differences),
                "wilcoxon_p": _p(lambda: stats.wilcoxon(differences).pvalue, differences),
                "detectable": detectable_difference(differences),
            })
    return rows


def _p(test, differences: np.ndarray) -> float | None:
    """A test's p-value, or None where it is undefined (one seed, or every difference equal)."""
    if len(differences) < 2 or np.all(differences == differences[0]):
        return None
    value = float(test())
    return None if math.isnan(value) else value


def detectable_difference(differences: np.ndarray, alpha: float = 0.05, power: float = 0.8) -> float | None:
    """The smallest true mean difference a paired t-test over these units detects with ``power`` at
    two-sided ``alpha``, for the observed standard deviation of the differences (normal-theory
    approximation with t quantiles): (t_{1−α/2} + t_{power}) · s / √n."""
    n = len(differences)
    if n < 3:
        return None
    quantiles = stats.t.ppf(1 - alpha / 2, n - 1) + stats.t.ppf(power, n - 1)
    return float(quantiles * np.std(differences, ddof=1) / math.sqrt(n))


def paired_table(rows: list[dict], scale: float = 100.0) -> str:
    """Markdown: differences in points (``scale`` × the score), mean ± std, seeds ahead, p-values,
    and the smallest difference the design detects (80 % power)."""
    lines = ["| model − reference | score | per seed | mean ± std | ahead | paired t p | Wilcoxon p | detectable |",
             "|---|---|---|---|---|---|---|---|"]
    fmt = lambda p: "–" if p is None else f"{p:.3f}"  # noqa: E731
    for r in rows:
        per_seed = ", ".join(f"{scale * d:+.2f}" for d in r["differences"])
        detectable = "–" if r.get("detectable") is None else f"{scale * r['detectable']:.2f}"
        spread = f"{scale * r['std']:.2f}" if len(r["seeds"]) > 1 else "–"  # one pair has no spread to show
        lines.append(f"| {r['model']} − {r['reference']} | {r['metric']} | {per_seed} | {scale * r['mean']:+.2f} ± {spread} | "
                     f"{r['ahead']}/{len(r['seeds'])} | {fmt(r['t_p'])} | {fmt(r['wilcoxon_p'])} | {detectable} |")
    return "\n".join(lines)
