"""``rsdistill teacher-knowledge``: the shipped config's protocols on a slice of the real data (its
scene folds are ``data.splits.fold_split`` without a validation fold, tested in test_splits_and_patches.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from rsdistill.cli import main
from rsdistill.errors import InputError
from rsdistill.evaluation.teacher_knowledge import run_teacher_knowledge
from rsdistill.models.registry import save_encoder
from rsdistill.models.vit import ViTEncoder
from rsdistill.preprocessing import Preprocessing
from rsdistill.spectral.sensors import get_sensor

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


def test_the_projects_own_encoders_are_probed_beside_galileo(data_dir, tmp_path, monkeypatch):
    """teacher_knowledge_own.yaml: EnMAP encoders fed the tiles as they are (``align: none``), the
    HLS teacher fed by band mean, and the random twin of a project ViT, on a slice of the tiles."""
    monkeypatch.setenv("RSDISTILL_DATA", str(data_dir))
    monkeypatch.chdir(tmp_path)
    config = yaml.safe_load((CONFIG.parent / "teacher_knowledge_own.yaml").read_text())
    enmap = get_sensor("enmap")
    kept = [i for i, ok in enumerate(enmap.valid) if ok]
    own_bands = Preprocessing.create(224, [1000.0] * len(kept), [500.0] * len(kept), kept=kept, sensor="enmap")
    hls = Preprocessing.create(6, [1000.0] * 6, [500.0] * 6, sensor="hls")
    for name, bands, preprocessing in [("mae", len(kept), own_bands), ("hyperkd_student", len(kept), own_bands), ("hyperkd_teacher", 6, hls)]:
        path = tmp_path / config["encoders"][name]["weights"]
        path.parent.mkdir(parents=True, exist_ok=True)
        save_encoder(ViTEncoder(bands, 16, 4, 16, 1, 2), path, preprocessing)
    config["datasets"] = {"enmap": {**config["datasets"]["enmap"], "encoders": ["hyperkd_teacher", "mae", "hyperkd_student", "mae_random"], "tile_lists": {
        "train": "enmap_potsdam_specdeepmap/validation_files.csv", "val": "enmap_potsdam_specdeepmap/test_files.csv",
        "test": "enmap_potsdam_specdeepmap/test_files.csv"}}}
    small = tmp_path / "small.yaml"
    small.write_text(yaml.safe_dump(config))
    assert main(["teacher-knowledge", "-c", str(small), "--out", "out"]) == 0
    records = {r["model"]: r for r in json.loads((tmp_path / "out/results.json").read_text())["results"]["enmap"]}
    assert set(records) == {"band_means", "aligned_bands", "hyperkd_teacher", "mae", "hyperkd_student", "mae_random"}  # Galileo: the test above
    assert records["mae"]["test_linear_oa"] != records["mae_random"]["test_linear_oa"], "the random twin has other weights"

    # an encoder of other bands cannot be fed the tiles as they are: one line saying so
    save_encoder(ViTEncoder(6, 16, 4, 16, 1, 2), tmp_path / config["encoders"]["mae"]["weights"], hls)
    with pytest.raises(InputError, match="224 bands, but the encoder takes 6 raw bands"):
        run_teacher_knowledge(config, log=lambda *_: None)
