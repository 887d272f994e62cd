"""``rsdistill teacher-knowledge``: the shipped config's protocols on a slice of the real data (its
scene folds are ``data.splits.fold_split`` without a validation fold, tested in test_splits_and_patches.py)."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from rsdistill.cli import main

CONFIG = Path(__file__).resolve().parents[1] / "configs/galileo/teacher_knowledge.yaml"


def test_the_shipped_config_runs_on_a_slice_of_each_dataset(data_dir, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("RSDISTILL_DATA", str(data_dir))
    config = yaml.safe_load(CONFIG.read_text())
    config["encoders"] = {"galileo_p8": config["encoders"]["galileo_p8"], "random_p4": {**config["encoders"]["random_p4"], "patch_size": 8}}
    for dataset in config["datasets"].values():
        dataset.pop("encoders", None)
    config["datasets"]["eurosat"].update(files="eurosat_ms_samples/[FS]*/*.tif", folds=2)  # Forest, SeaLake
    config["datasets"]["slovenia"].update(folds=2)
    config["datasets"]["enmap"]["tile_lists"] = {"train": "enmap_potsdam_specdeepmap/validation_files.csv",
                                                 "val": "enmap_potsdam_specdeepmap/test_files.csv",
                                                 "test": "enmap_potsdam_specdeepmap/test_files.csv"}
    small = tmp_path / "small.yaml"
    small.write_text(yaml.safe_dump(config))
    assert main(["teacher-knowledge", "-c", str(small), "--out", str(tmp_path / "out")]) == 0
    results = json.loads((tmp_path / "out/results.json").read_text())["results"]
    eurosat = {r["model"]: r for r in results["eurosat"] if r["seed"] == 0}
    assert set(eurosat) == {"band_means", "aligned_bands", "galileo_p8", "random_p4"}
    tested = sorted(i for r in results["eurosat"] if r["model"] == "band_means" for i in r["test_items"])
    assert tested == list(range(40)), "each chip is tested exactly once over the folds"
    # forest and water are told apart by the band means alone (NIR); the probe must find that
    assert eurosat["band_means"]["linear_oa"] == 1.0
    assert {r["model"] for r in results["enmap"]} == {"band_means", "aligned_bands", "galileo_p8", "random_p4"}
    assert "| galileo_p8 |" in capsys.readouterr().out
