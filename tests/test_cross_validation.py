"""Spatial cross-validation as an experiment: every fold run, every labelled pixel tested once over
the folds, pooled scores from the summed confusion matrices, pairs compared per (fold, seed)."""

from __future__ import annotations

import json

import numpy as np
import yaml

from rsdistill.cli import main
from rsdistill.data.synthetic import make_synthetic_scene
from rsdistill.experiments.quickstart import quickstart_config
from rsdistill.metrics import scores_from_confusion


def test_a_cross_validated_experiment_tests_every_pixel_once_and_pairs_per_fold(tmp_path):
    config = quickstart_config(None, None, "enmap", epochs=1)
    config["data"] = {**{k: v for k, v in config["data"].items() if k not in ("train", "val")},
                      "split": "folds", "folds": 3, "block_size": 16}
    config.update(seeds=[0], diagnose=[["teacher", "student"]])
    config["trainer"].update(limit_train_batches=2, limit_val_batches=1)  # every test pixel still scored
    (tmp_path / "cv.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    assert main(["experiment", "-c", str(tmp_path / "cv.yaml"), "--out", str(tmp_path / "cv")]) == 0
    results = json.loads((tmp_path / "cv/results.json").read_text())
    scene = make_synthetic_scene(**config["data"]["synthetic"]).scene
    labelled = int(((scene.labels > 0) & scene.valid).sum())
    for model in ("teacher", "student_kd", "student"):
        runs = [r for r in results["runs"] if r["model"] == model]
        assert sorted(r["fold"] for r in runs) == [0, 1, 2]
        confusion = sum(np.asarray(r["confusion"]) for r in runs)
        assert confusion.sum() == labelled  # every labelled pixel tested exactly once over the folds
        row = next(s for s in results["summary"] if s["model"] == model)
        assert row["oa_pooled"]["mean"] == scores_from_confusion(confusion)["oa"]
    tested = [json.loads((tmp_path / f"cv/fold_{f}/split_seed_0.json").read_text())["test"] for f in range(3)]
    assert sum(len(t) for t in tested) == labelled and len({tuple(p) for t in tested for p in t}) == labelled
    (oa,) = [p for p in results["paired"] if p["metric"] == "oa"]
    assert len(oa["differences"]) == 3 and oa["seeds"] == ["fold 0 seed 0", "fold 1 seed 0", "fold 2 seed 0"]
    assert "Paired over (fold, seed)" in (tmp_path / "cv/results.md").read_text()
    # one seed: one pooled value per model, no spread to show ("± –", not a measured "± 0.00")
    assert "± 0.00" not in (tmp_path / "cv/results.md").read_text().split("Paired")[0]
    assert {row["seeds"] for row in results["summary"]} == {1}  # what a sweep's curve shows the spread over
    assert sorted(d["fold"] for d in results["diagnosis"]) == [0, 1, 2]  # each fold's diagnosis, on its own validation pixels
    assert [d["pixels"] for d in results["diagnosis"]] == [len(json.loads((tmp_path / f"cv/fold_{f}/split_seed_0.json").read_text())["val"])
                                                          for f in range(3)]
    assert "Teacher against student on each fold's validation pixels" in (tmp_path / "cv/results.md").read_text()


def test_a_cross_validated_sweep_tabulates_pooled_scores_and_pairs_per_fold_and_seed():
    from rsdistill.experiments.curve import curve_tables

    row = lambda model, oa: {"model": model, "oa_pooled": {"mean": oa, "std": 0.01}}  # noqa: E731
    pair = {"model": "kd", "reference": "alone", "metric": "oa", "mean": 0.02, "std": 0.01, "ahead": 4,
            "seeds": ["fold 0 seed 0", "fold 1 seed 0", "fold 2 seed 0", "fold 3 seed 0", "fold 4 seed 0"], "wilcoxon_p": 0.0625}
    curve = {"option": "max_train_per_class", "score": "oa_pooled", "paired_score": "oa", "key": "model",
             "points": [{"value": 25, "summary": [row("kd", 0.5), row("alone", 0.48)], "paired": [pair]}]}
    table = curve_tables(curve)
    assert "| kd | 50.00 ± 1.00 |" in table and "| alone | 48.00 ± 1.00 |" in table
    one_seed = {**curve, "points": [{**curve["points"][0], "summary": [{**row("kd", 0.5), "runs": 5, "seeds": 1}]}]}
    assert "| kd | 50.00 ± – |" in curve_tables(one_seed)  # a cross-validated run of one seed: no spread, not "± 0.00"
    assert "| kd − alone | +2.00 ± 1.00 (4/5, p 0.062) |" in table
