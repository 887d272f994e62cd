"""Fit → checkpoint → resume → test → map, on tiny synthetic scenes and on the real EnMAP recipe."""

import json
from pathlib import Path

import lightning as L
import numpy as np
import pytest
import rasterio
import torch

from fixtures import QUIET as TRAINER
from fixtures import SYNTHETIC_PIXELS, checkpoint_test_oa
from fixtures import TINY_BLM as TINY
from fixtures import classifier_recipe as tiny_recipe
from rsdistill.cli import main
from rsdistill.data.classification import PixelClassificationData
from rsdistill.data.patches import all_pixel_patches, padded_cube
from rsdistill.data.synthetic import make_synthetic_scene
from rsdistill.errors import InputError
from rsdistill.experiments.curve import run_sweep
from rsdistill.experiments.experiment import experiment_recipes, fit_and_test, run_experiment
from rsdistill.io import write_geotiff
from rsdistill.io.readers import read_scene
from rsdistill.tasks.loading import load_task

REPO = Path(__file__).resolve().parents[1]
SYNTHETIC = SYNTHETIC_PIXELS["synthetic"]


class Kill(L.Callback):
    """Dies at the start of an epoch, as a killed process would (the previous epoch's checkpoint exists)."""

    def __init__(self, epoch):
        self.epoch = epoch

    def on_train_epoch_start(self, trainer, module):
        if trainer.current_epoch == self.epoch:
            raise RuntimeError("killed")


def test_resumed_run_reaches_the_same_metrics(tmp_path):
    straight = fit_and_test("m", tiny_recipe(tmp_path / "straight", 4), seed=0)
    with pytest.raises(RuntimeError, match="killed"):
        fit_and_test("m", tiny_recipe(tmp_path / "killed", 4), seed=0, callbacks=(Kill(2),))
    resumed = fit_and_test("m", tiny_recipe(tmp_path / "killed", 4), seed=0)
    assert resumed["confusion"] == straight["confusion"]
    assert resumed["oa"] == straight["oa"] and resumed["kappa"] == straight["kappa"]


def test_experiment_with_kd_student_summary_and_reuse(tmp_path):
    config = {
        "data": {"synthetic": SYNTHETIC, "train": 0.2, "val": 0.1, "patch_size": 5, "batch_size": 32},
        "trainer": {**TRAINER, "max_epochs": 2},
        "models": {"teacher": TINY, "student_kd": {**TINY, "d_model": 4, "distill_from": "teacher", "kd_warmup_epochs": 1}},
        "pairs": [["student_kd", "teacher"]], "diagnose": [["teacher", "student_kd"]],
    }
    records = run_experiment(config, tmp_path, seeds=[0, 1], log=lambda _: None)
    assert [r["model"] for r in records] == ["teacher", "student_kd"] * 2
    results = json.loads((tmp_path / "results.json").read_text())
    assert {row["model"] for row in results["summary"]} == {"teacher", "student_kd"}
    assert "± " in (tmp_path / "results.md").read_text()
    # the declared pair, seed by seed: the differences of the runs' own scores
    paired = {row["metric"]: row for row in results["paired"]}
    by = {(r["model"], r["seed"]): r for r in records}
    assert paired["oa"]["differences"] == pytest.approx([by["student_kd", s]["oa"] - by["teacher", s]["oa"] for s in (0, 1)])
    assert set(paired) == {"oa", "aa", "kappa"} and "student_kd − teacher" in (tmp_path / "results.md").read_text()
    diagnosis = results["diagnosis"]  # on the validation pixels of each seed's split
    assert [(d["teacher"], d["student"], d["seed"], d["subset"]) for d in diagnosis] == [("teacher", "student_kd", s, "val") for s in (0, 1)]
    for d in diagnosis:  # who is right where: the accuracy gap is what only one of them gets right
        assert d["teacher_oa"] - d["student_oa"] == pytest.approx(d["teacher_only"] - d["student_only"], abs=1e-6)
        # ECE = Σ_bins w_b |acc_b − conf_b| ≥ |Σ_bins w_b (acc_b − conf_b)| = |OA − mean confidence|
        # (triangle inequality; ECE itself is checked by hand in test_transfer_measures_count_who_is_right_where)
        assert d["teacher_ece"] >= abs(d["teacher_oa"] - d["teacher_confidence"]) - 1e-6
        assert 1 / 4 <= d["teacher_confidence"] <= 1 and d["pixels"] > 0  # 4 classes: the top probability is at least 1/4
    assert "| teacher → student_kd |" in (tmp_path / "results.md").read_text()
    with pytest.raises(InputError, match="pairs: 'student' is not one of the experiment's models"):
        run_experiment({**config, "pairs": [["student", "teacher"]]}, tmp_path, seeds=[0], log=lambda _: None)
    with pytest.raises(InputError, match="--models: 'cnn' is not one of"):
        run_experiment(config, tmp_path, seeds=[0], models=["cnn"], log=lambda _: None)
    run_experiment(config, tmp_path / "alone", seeds=[0], models=["teacher"], log=lambda _: None)
    assert [r["model"] for r in json.loads((tmp_path / "alone" / "results.json").read_text())["runs"]] == ["teacher"]
    assert (tmp_path / "split_seed_1.json").is_file() and (tmp_path / "teacher" / "seed_0" / "split.json").is_file()
    student = (tmp_path / "student_kd" / "seed_0" / "scores.json").stat().st_mtime
    run_experiment(config, tmp_path, seeds=[0], log=lambda _: None)
    assert (tmp_path / "student_kd" / "seed_0" / "scores.json").stat().st_mtime == student, "finished runs are reused"


def test_an_ensemble_teacher_and_a_kd_ceiling(tmp_path):
    from rsdistill.distill.logits import EnsembleTeacher
    from rsdistill.tasks.classification import PixelClassifier, load_classifier

    config = {
        "data": {"synthetic": SYNTHETIC, "train": 0.2, "val": 0.1, "patch_size": 5, "batch_size": 32},
        "trainer": {**TRAINER, "max_epochs": 2},
        "models": {"a": TINY, "b": {**TINY, "d_model": 4},
                   "student": {**TINY, "d_model": 4, "distill_from": ["a", "b"], "kd_warmup_epochs": 1, "kd_max_weight": 0.5}},
    }
    run_experiment(config, tmp_path, seeds=[0], log=lambda _: None)
    with_unlabelled = {**config["models"]["student"], "data": {"batch_size": 16}}  # a model's own data options
    recipes = experiment_recipes({**config, "models": {**config["models"], "student": with_unlabelled}}, tmp_path / "x", 0)
    assert recipes["student"]["data"]["init_args"]["batch_size"] == 16 and recipes["a"]["data"]["init_args"]["batch_size"] == 32
    with open(tmp_path / "student/seed_0/metrics.csv") as f:
        weights = [float(r["train/kd_weight"]) for r in __import__("csv").DictReader(f) if r.get("train/kd_weight")]
    assert max(weights) == pytest.approx(0.5) and min(weights) < 0.5  # ramped up to the ceiling, CE kept
    student = load_task(tmp_path / "student/seed_0/last.ckpt")
    distiller = student.configure_distiller()
    assert isinstance(distiller.teacher, EnsembleTeacher) and distiller.max_weight == 0.5
    members = [load_classifier(tmp_path / name / "seed_0/last.ckpt") for name in ("a", "b")]
    patches = torch.rand(6, student.preprocessing.bands, 5, 5) * 1000
    with torch.no_grad():
        torch.testing.assert_close(distiller.teacher(patches), (members[0](patches) + members[1](patches)) / 2)
    other = {**student.hparams.data_info, "class_ids": [*student.class_ids, 99]}
    with pytest.raises(InputError, match=r"a/seed_0/last.ckpt: the teacher classifies class ids"):
        PixelClassifier(other, teacher_ckpt=str(tmp_path / "a/seed_0/last.ckpt")).configure_distiller()
    with pytest.raises(InputError, match="kd_max_weight is the ceiling"):
        PixelClassifier(student.hparams.data_info, teacher_ckpt=str(tmp_path / "a/seed_0/last.ckpt"), kd_max_weight=1.5).configure_distiller()


def test_map_writes_georeferenced_classes(tmp_path, capsys):
    from affine import Affine
    from rasterio.crs import CRS

    record = fit_and_test("m", tiny_recipe(tmp_path / "run", 1), seed=0)
    scene = make_synthetic_scene(**SYNTHETIC).scene
    scene.crs, scene.transform = CRS.from_epsg(32633), Affine(10, 0, 500000, 0, -10, 5000000)
    cube = scene.cube.copy()
    cube[0, 0, :] = -9999
    path = write_geotiff(tmp_path / "scene.tif", cube, like=scene, nodata=-9999)
    assert main(["map", "--ckpt", record["checkpoint"], "--scene", str(path), "--out", str(tmp_path / "map.tif")]) == 0
    with rasterio.open(tmp_path / "map.tif") as ds:
        assert ds.crs == scene.crs and ds.transform == scene.transform
        values = ds.read(1)
        assert ds.colormap(1)[1][:3] != (0, 0, 0)
    assert values[0, 0] == 0 and set(np.unique(values[1:])) <= set(record["class_ids"])
    assert (tmp_path / "map.png").stat().st_size > 0
    # block by block, halos reflected at the scene's border: every pixel gets its whole-scene patch
    assert main(["map", "--ckpt", record["checkpoint"], "--scene", str(path), "--out", str(tmp_path / "blocks.tif"), "--block", "7"]) == 0
    model, read = load_task(record["checkpoint"]), read_scene(path)
    rows, cols = (torch.from_numpy(a) for a in np.nonzero(read.valid))
    expected = np.zeros(read.shape[:2], np.uint8)
    with torch.no_grad():
        expected[rows, cols] = np.asarray(model.class_ids)[model(all_pixel_patches(padded_cube(read, 5), rows, cols, 5)).argmax(1)]
    with rasterio.open(tmp_path / "blocks.tif") as ds:
        assert np.array_equal(ds.read(1), expected) and np.array_equal(values, expected)
    # the same map by onnxruntime from the export
    assert main(["export", record["checkpoint"], "--samples", "0", "--out", str(tmp_path / "m.onnx")]) == 0
    assert main(["map", "--ckpt", str(tmp_path / "m.onnx"), "--scene", str(path), "--out", str(tmp_path / "onnx.tif"), "--block", "10"]) == 0
    with rasterio.open(tmp_path / "onnx.tif") as ds:
        assert (ds.read(1) == expected).mean() >= 0.99
    assert main(["map", "--ckpt", str(tmp_path / "m.onnx"), "--scene", str(path), "--out", str(tmp_path / "x.tif"), "--engine", "torch"]) == 2
    other = write_geotiff(tmp_path / "other.tif", np.random.rand(24, 24, 5).astype(np.float32))
    capsys.readouterr()
    assert main(["map", "--ckpt", record["checkpoint"], "--scene", str(other), "--out", str(tmp_path / "x.tif")]) == 2
    assert "other.tif: 5 bands, but the model takes 13" in capsys.readouterr().err


def test_lightning_cli_recipes_on_real_enmap(real_file, tmp_path, monkeypatch):
    """The shipped teacher and student_kd recipes run end to end (one batch each) on the real tiles."""
    real_file("enmap_potsdam_specdeepmap/train_files.csv")
    monkeypatch.setenv("RSDISTILL_DATA", str(real_file("")))
    monkeypatch.chdir(tmp_path)
    limits = ["--trainer.max_epochs", "1", "--trainer.limit_train_batches", "1", "--trainer.limit_val_batches", "1",
              "--trainer.enable_progress_bar", "false", "--model.init_args.d_model", "8"]
    assert main(["fit", "-c", str(REPO / "configs/blm_kd/teacher.yaml"), *limits]) == 0
    teacher = tmp_path / "runs/blm_kd/teacher/last.ckpt"
    assert teacher.is_file() and (tmp_path / "runs/blm_kd/teacher/split.json").is_file()
    assert main(["fit", "-c", str(REPO / "configs/blm_kd/student_kd.yaml"), *limits, "--model.init_args.d_model", "4"]) == 0
    assert main(["test", "-c", str(REPO / "configs/blm_kd/student_kd.yaml"), "--model.init_args.d_model", "4",
                 "--ckpt_path", str(tmp_path / "runs/blm_kd/student_kd/last.ckpt"), "--trainer.enable_progress_bar", "false"]) == 0


def test_slovenia_recipe_loads_scene_labels_and_split(real_file):
    from rsdistill.experiments.experiment import load_experiment

    real_file("eolearn_slovenia_s2/REFERENCE_SCENES.npy")
    config = load_experiment(REPO / "configs/blm_kd/slovenia.yaml")
    data = PixelClassificationData(**{**config["data"], "root": str(real_file(""))})
    assert data.num_bands == 13 and data.class_ids == [1, 2, 3, 4, 8]
    assert len(data.split.train) + len(data.split.val) + len(data.split.test) == 9945


def test_kd_on_unlabelled_pixels_of_the_training_region_only(tmp_path):
    from rsdistill.data.classification import PixelClassificationData

    synthetic = make_synthetic_scene("sentinel2", 48, 48, seed=1).scene
    labels = synthetic.labels.copy()
    labels[np.add.outer(np.arange(48) // 3, np.arange(48) // 3) % 2 == 0] = 0  # half the pixels without a label
    image = write_geotiff(tmp_path / "scene.tif", synthetic.cube, like=synthetic)
    label_file = write_geotiff(tmp_path / "labels.tif", labels.astype(np.uint8))
    options = {"images": [str(image)], "labels": [str(label_file)], "split": "blocks", "block_size": 12, "train": 0.5, "val": 0.2,
               "patch_size": 5, "batch_size": 16, "seed": 0}
    data = PixelClassificationData(**options, kd_unlabelled=64)
    pool, split = data.split.unlabelled, data.split
    assert len(pool) and (labels[pool[:, 1], pool[:, 2]] == 0).any()
    assert not {tuple(p) for p in pool} & {tuple(p) for p in split.train}  # never a training centre (whose label is used)
    train_blocks = {(r // 12, c // 12) for _, r, c in split.train}
    assert all((r // 12, c // 12) in train_blocks for _, r, c in pool)  # never outside the training blocks
    held = np.concatenate([split.val, split.test])
    assert np.abs(pool[:, None, 1:] - held[None, :, 1:]).max(axis=2).min() > 2  # no held-out pixel inside their 5² patches
    loaders = data.train_dataloader()
    assert set(loaders) == {"labelled", "unlabelled"} and len(loaders["unlabelled"]) <= len(loaders["labelled"])
    assert sum(len(b["image"]) for b in loaders["unlabelled"]) == 64
    reloaded = PixelClassificationData(**options, kd_unlabelled=64, split_file=str(split.save(tmp_path / "split.json")))
    assert np.array_equal(reloaded.split.unlabelled, pool)
    with pytest.raises(InputError, match="KD on unlabelled pixels needs a spatial split"):
        PixelClassificationData(**{**options, "split": "stratified", "train": 0.1, "val": 0.05}, kd_unlabelled=64)
    # a teacher, then its student with KD on labelled and unlabelled pixels, end to end through the CLI
    teacher = fit_and_test("teacher", make_recipe_for(tmp_path / "teacher", options, TINY), seed=0)
    student = make_recipe_for(tmp_path / "student", {**options, "kd_unlabelled": 64},
                              {**TINY, "d_model": 4, "teacher_ckpt": teacher["checkpoint"], "kd_warmup_epochs": 1})
    record = fit_and_test("student", student, seed=0)
    # the test record is what the saved student scores when reloaded alone on its saved test pixels
    assert record["oa"] == pytest.approx(checkpoint_test_oa(record["checkpoint"], tmp_path / "student"), abs=1e-6)
    alone = make_recipe_for(tmp_path / "alone", {**options, "kd_unlabelled": 64}, TINY)
    with pytest.raises(InputError, match="kd_unlabelled draws pixels for a distillation term"):
        fit_and_test("alone", alone, seed=0)


def make_recipe_for(run_dir, data: dict, model: dict) -> dict:
    from rsdistill.data.classification import PixelClassificationData
    from rsdistill.recipes import make_recipe
    from rsdistill.tasks.classification import PixelClassifier

    return make_recipe(PixelClassifier, PixelClassificationData, model, data, {**TRAINER, "max_epochs": 2}, run_dir, 0)


def test_a_grid_is_searched_on_validation_and_only_the_choice_is_tested(tmp_path, caplog):
    grid = {"kd_max_weight": [0.0, 1.0], "kd_temperature": [2.0]}
    config = {
        "data": {"synthetic": SYNTHETIC, "train": 0.2, "val": 0.1, "patch_size": 5, "batch_size": 32},
        "trainer": {**TRAINER, "max_epochs": 2},
        "models": {"teacher": TINY, "student_kd": {**TINY, "d_model": 4, "distill_from": "teacher", "kd_warmup_epochs": 1, "grid": grid},
                   "student_of_student": {**TINY, "d_model": 4, "distill_from": "student_kd"}},
    }
    with caplog.at_level("INFO", logger="lightning.pytorch"):
        records = run_experiment(config, tmp_path, seeds=[0], log=lambda _: None)
    # the chosen point is tested from its checkpoint without Lightning's two lines saying so
    assert not [r for r in caplog.records if "from the checkpoint" in r.getMessage()], caplog.text
    student = next(r for r in records if r["model"] == "student_kd")
    labels = ["kd_max_weight_0.0-kd_temperature_2.0", "kd_max_weight_1.0-kd_temperature_2.0"]
    assert [p["label"] for p in student["grid"]] == labels and student["select"] == "oa"
    val = [p["val"]["oa"] for p in student["grid"]]
    assert student["chosen"] == labels[val.index(max(val))]  # the best validation OA, the first on ties
    chosen = tmp_path / "student_kd" / student["chosen"] / "seed_0"
    assert student["checkpoint"] == str(chosen / "last.ckpt")
    for label in labels:  # every point validated, only the chosen one tested
        with open(tmp_path / "student_kd" / label / "seed_0" / "metrics.csv") as f:
            rows = list(__import__("csv").DictReader(f))
        assert any(r.get("val/oa") for r in rows) and any(r.get("test/oa") for r in rows) == (label == student["chosen"])
    assert load_task(tmp_path / "student_of_student/seed_0/last.ckpt").hparams.teacher_ckpt == student["checkpoint"]
    table = (tmp_path / "results.md").read_text()
    assert "Chosen on validation" in table and all(f"| student_kd | {label} |" in table for label in labels)
    # a search interrupted after its points were validated resumes without fitting them again
    points = {label: (tmp_path / "student_kd" / label / "seed_0" / "val.json").stat().st_mtime for label in labels}
    (tmp_path / "student_kd" / "seed_0" / "scores.json").unlink()
    again = run_experiment(config, tmp_path, seeds=[0], models=["student_kd"], log=lambda _: None)
    assert again[0]["chosen"] == student["chosen"] and again[0]["oa"] == student["oa"]
    assert points == {label: (tmp_path / "student_kd" / label / "seed_0" / "val.json").stat().st_mtime for label in labels}
    for bad, message in [({"kd_max_weight": 0.5}, "kd_max_weight is both set"), ({"grid": {"data": [{}]}}, "grid cannot search 'data'"),
                         ({"grid": {"lr": []}}, "grid.lr must be a non-empty list")]:
        options = {**config["models"]["student_kd"], **bad}
        with pytest.raises(InputError, match=message):
            run_experiment({**config, "models": {"teacher": TINY, "s": options}}, tmp_path / "bad", seeds=[0], log=lambda _: None)
    with pytest.raises(InputError, match="select: 'miou' is not a validation score"):
        run_experiment({**config, "select": "miou"}, tmp_path / "other", seeds=[0], log=lambda _: None)


def test_pixels_per_epoch_hold_the_steps_fixed_at_any_label_budget():
    options = {k: v for k, v in SYNTHETIC_PIXELS.items() if k != "seed"}
    data = PixelClassificationData(**options, max_train_per_class=2, train_pixels_per_epoch=40)
    pixels = len(data.split.train)
    drawn = list(data.train_dataloader().sampler)
    assert pixels == 2 * data.num_classes and len(drawn) == 40 and set(drawn) == set(range(pixels))
    assert len(data.train_dataloader()) == -(-40 // options["batch_size"])
    with pytest.raises(InputError, match="train_pixels_per_epoch must be at least 1"):
        PixelClassificationData(**options, train_pixels_per_epoch=0)


def test_a_sweep_runs_the_experiment_per_budget_and_draws_the_curve(tmp_path, capsys):
    import yaml

    config = {
        "data": {"synthetic": SYNTHETIC, "train": 0.2, "val": 0.1, "patch_size": 5, "batch_size": 16, "train_pixels_per_epoch": 32},
        "trainer": {**TRAINER, "max_epochs": 1},
        "models": {"teacher": TINY, "student": {**TINY, "d_model": 4}, "student_kd": {**TINY, "d_model": 4, "distill_from": "teacher"}},
        "pairs": [["student_kd", "student"]], "seeds": [0],
        "sweep": {"max_train_per_class": [2, None]},
    }
    (tmp_path / "curve.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    assert main(["experiment", "-c", str(tmp_path / "curve.yaml"), "--out", str(tmp_path / "out")]) == 0
    curve = json.loads((tmp_path / "out" / "curve.json").read_text())
    assert [p["value"] for p in curve["points"]] == [2, None] and curve["score"] == "oa"
    for point, folder in zip(curve["points"], ["max_train_per_class_2", "max_train_per_class_all"]):
        results = json.loads((tmp_path / "out" / folder / "results.json").read_text())
        assert point["summary"] == results["summary"] and point["paired"] == results["paired"]
    split = json.loads((tmp_path / "out" / "max_train_per_class_2" / "split_seed_0.json").read_text())
    assert len(split["train"]) <= 2 * 4  # the budget reached the data: at most 2 pixels of each class
    table = (tmp_path / "out" / "curve.md").read_text()
    assert "| student_kd − student |" in table and "max_train_per_class all" in table and table in capsys.readouterr().out
    assert (tmp_path / "out" / "curve.png").read_bytes()[:4] == b"\x89PNG"
    with pytest.raises(InputError, match="sweep.max_train_per_class: the option is also set in data"):
        run_sweep({**config, "data": {**config["data"], "max_train_per_class": 3}}, tmp_path / "bad", log=lambda _: None)
    reordered = {"student_kd": config["models"]["student_kd"], "teacher": TINY}
    with pytest.raises(InputError, match="model 'student_kd': distill_from 'teacher' is declared after it"):
        run_experiment({**config, "models": reordered, "pairs": []}, tmp_path / "bad", log=lambda _: None)


def test_points_run_only_the_named_values_of_a_sweep(tmp_path, capsys):
    import yaml

    from rsdistill.experiments.curve import at_points

    config = {"data": {}, "models": {}, "sweep": {"max_train_per_class": [5, 25, 150, None]}}
    assert at_points(config, ["all", "25"])["sweep"] == {"max_train_per_class": [25, None]}  # declared order
    assert at_points(config, None) is config
    (tmp_path / "curve.yaml").write_text(yaml.safe_dump({**config, "models": {"a": TINY}}))
    assert main(["experiment", "-c", str(tmp_path / "curve.yaml"), "--out", str(tmp_path / "out"), "--points", "100"]) != 0
    assert "--points: '100' is not one of sweep.max_train_per_class's values (5, 25, 150, all)" in capsys.readouterr().err
    with pytest.raises(InputError, match="--points: the experiment has no sweep"):
        at_points({"data": {}}, ["150"])


def test_transfer_measures_count_who_is_right_where():
    from rsdistill.evaluation.kd_diagnosis import transfer_record

    labels = torch.tensor([0, 1, 2, 0])
    teacher = torch.nn.functional.one_hot(torch.tensor([0, 1, 0, 0]), 3).float() * 4  # right on pixels 0, 1, 3
    student = torch.nn.functional.one_hot(torch.tensor([0, 2, 2, 1]), 3).float() * 4  # right on pixels 0, 2
    record = transfer_record(teacher, student, labels)
    assert (record["teacher_oa"], record["student_oa"], record["agreement"]) == (0.75, 0.5, 0.25)
    assert (record["teacher_only"], record["student_only"]) == (0.5, 0.25)
    confidence = torch.softmax(torch.tensor([4.0, 0, 0]), 0).max().item()
    assert record["teacher_confidence"] == pytest.approx(confidence) and record["teacher_ece"] == pytest.approx(abs(confidence - 0.75))
