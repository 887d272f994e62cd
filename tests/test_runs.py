"""Killed runs resume exactly, one run folder holds one run, and untrusted pickles are refused."""

import csv
import importlib.util
import json
import os
import pathlib
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from rsdistill.cli import main

importlib_find_spec = importlib.util.find_spec

REPO = Path(__file__).resolve().parents[1]
# the shipped recipes at a size that takes a few seconds an epoch here
KILLABLE = {
    "blm_teacher": ["configs/blm_kd/teacher.yaml", "--model.init_args.d_model", "8", "--trainer.limit_train_batches", "4"],
    "mae_gabor": ["configs/mae/gabor.yaml", "--model.init_args.embed_dim", "32", "--model.init_args.depth", "2", "--trainer.limit_train_batches", "6"],
    # validates every 5 epochs: a checkpoint must still come every epoch (none came before the first validation)
    "hyperkd_teacher_val_every_5": ["configs/hyperkd/teacher_s2.yaml", "--model.init_args.embed_dim", "32", "--model.init_args.depth", "2",
                                    "--trainer.limit_train_batches", "6", "--trainer.log_every_n_steps", "2"],
}


def fit_command(recipe: list[str], run_dir: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "rsdistill", "fit", "-c", str(REPO / recipe[0]), *recipe[1:], "--run_dir", str(run_dir),
            "--trainer.max_epochs", "3", "--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false", *extra]


def rows(run_dir: Path) -> list[dict]:
    with open(run_dir / "metrics.csv", newline="") as f:
        return list(csv.DictReader(f))


@pytest.mark.parametrize("name", KILLABLE)
def test_a_sigkilled_fit_resumes_bit_identically(name, data_dir, tmp_path):
    """SIGKILL at the start of epoch 1's third batch (``fixtures.KillJob``, in the run's own process
    group: no race with the machine's speed), then ``--ckpt_path last``: the same weights and log."""
    env = {**os.environ, "RSDISTILL_DATA": str(data_dir), "OMP_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join([str(REPO / "tests"), os.environ.get("PYTHONPATH", "")])}
    recipe = KILLABLE[name]
    # the uninterrupted run and the killed one are independent one-thread processes: side by side
    straight_run = subprocess.Popen(fit_command(recipe, tmp_path / "straight"), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    kill = ["--trainer.callbacks+", json.dumps({"class_path": "fixtures.KillJob", "init_args": {"epoch": 1, "batch": 2}})]
    killed = subprocess.run(fit_command(recipe, tmp_path / "killed", *kill), env=env, capture_output=True, text=True, start_new_session=True)
    _, straight_err = straight_run.communicate()
    assert straight_run.returncode == 0, straight_err[-2000:]
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    last = tmp_path / "killed" / "last.ckpt"
    assert torch.load(last, weights_only=True)["epoch"] == 0  # epoch 0's checkpoint, epoch 1 cut short
    subprocess.run(fit_command(recipe, tmp_path / "killed", "--ckpt_path", "last"), env=env, check=True, capture_output=True)
    straight = torch.load(tmp_path / "straight" / "last.ckpt", weights_only=True)["state_dict"]
    resumed = torch.load(last, weights_only=True)["state_dict"]
    assert straight.keys() == resumed.keys()
    for key in straight:
        assert torch.equal(straight[key], resumed[key]), key
    assert rows(tmp_path / "killed") == rows(tmp_path / "straight")  # every epoch's row, once, with the same values


def test_one_run_folder_holds_one_run(tmp_path, data_dir, monkeypatch, capsys):
    monkeypatch.setenv("RSDISTILL_DATA", str(data_dir))
    run_dir = tmp_path / "run"
    command = ["fit", "-c", str(REPO / "configs/blm_kd/teacher.yaml"), "--run_dir", str(run_dir), "--model.init_args.d_model", "8",
               "--trainer.max_epochs", "1", "--trainer.limit_train_batches", "1", "--trainer.limit_val_batches", "1",
               "--trainer.enable_progress_bar", "false"]
    assert main([*command, "--ckpt_path", "last"]) == 2
    assert "no last.ckpt to resume" in capsys.readouterr().err
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        run_dir.mkdir(exist_ok=True)
        (run_dir / ".lock").write_text(f"{holder.pid}\n")
        assert main(command) == 2
        assert f"a live run (PID {holder.pid}) holds this folder" in capsys.readouterr().err
    finally:
        holder.kill()
        holder.wait()
    assert main(command) == 0  # the lock of a process that is gone is taken over
    assert not (run_dir / ".lock").exists()
    assert main(command) == 2
    assert "holds a run (last.ckpt); resume it with --ckpt_path last, or start over with --overwrite true" in capsys.readouterr().err
    assert main([*command, "--overwrite", "true"]) == 0
    assert main([*command, "--ckpt_path", "last", "--trainer.max_epochs", "2"]) == 0
    assert sorted({int(r["epoch"]) for r in rows(run_dir)}) == [0, 1]  # the resumed epoch's rows follow the first


class Payload:
    """Unpickling this creates a marker file: what a malicious checkpoint could do."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (pathlib.Path.touch, (pathlib.Path(self.marker),))


def test_a_checkpoint_with_pickled_objects_is_refused_on_every_path(tmp_path, data_dir, monkeypatch, capsys):
    monkeypatch.setenv("RSDISTILL_DATA", str(data_dir))
    monkeypatch.setenv("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")  # weights_only must be explicit, not torch's default
    marker = tmp_path / "unpickled"
    evil = tmp_path / "evil.ckpt"
    torch.save({"state_dict": {}, "payload": Payload(marker)}, evil)
    recipe = str(REPO / "configs/blm_kd/teacher.yaml")
    quick = ["--run_dir", str(tmp_path / "run"), "--trainer.max_epochs", "1", "--trainer.limit_train_batches", "1", "--model.init_args.d_model", "8"]
    for argv in (["fit", "-c", recipe, *quick, "--ckpt_path", str(evil)], ["test", "-c", recipe, *quick, "--ckpt_path", str(evil)],
                 ["map", "--ckpt", str(evil), "--scene", str(data_dir / "enmap_potsdam_specdeepmap/images/enmap_potsdam_tile_128_0.tif"),
                  "--out", str(tmp_path / "m.tif")],
                 ["probe", "--encoder", str(evil)],
                 ["fit", "-c", recipe, *quick, "--overwrite", "true", "--model.init_args.teacher_ckpt", str(evil)]):
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert f"{evil}: the checkpoint holds pickled objects" in err and "weights_only=False" not in err, argv
        # Lightning's own start-up lines ("INFO: ...") may come first when the teacher is loaded at fit
        error_lines = [line for line in err.strip().splitlines() if not line.startswith("INFO:")]
        assert len(error_lines) == 1 and error_lines[0].startswith("rsdistill: error:") and not marker.exists(), argv
    # an experiment resuming a killed run from a planted last.ckpt
    from fixtures import classifier_recipe
    from rsdistill.errors import InputError
    from rsdistill.experiments.experiment import fit_and_test

    (tmp_path / "exp").mkdir()
    torch.save({"state_dict": {}, "payload": Payload(marker)}, tmp_path / "exp" / "last.ckpt")
    with pytest.raises(InputError, match="last.ckpt: the checkpoint holds pickled objects"):
        fit_and_test("m", classifier_recipe(tmp_path / "exp", 1), seed=0)
    assert not marker.exists()


def test_a_recipes_own_callbacks_are_kept_beside_the_runs_checkpoint(tmp_path):
    from lightning.pytorch.callbacks import LearningRateMonitor, ModelCheckpoint

    from fixtures import classifier_recipe
    from rsdistill.recipes import parse_recipe

    recipe = classifier_recipe(tmp_path / "run", 1)
    recipe["trainer"]["callbacks"] = [{"class_path": "lightning.pytorch.callbacks.LearningRateMonitor"}]
    callbacks = parse_recipe(recipe).trainer.callbacks
    assert any(isinstance(c, LearningRateMonitor) for c in callbacks)
    assert [c.dirpath for c in callbacks if isinstance(c, ModelCheckpoint)] == [str(tmp_path / "run")]  # last.ckpt every epoch
    recipe["trainer"]["callbacks"].append({"class_path": "lightning.pytorch.callbacks.ModelCheckpoint", "init_args": {"dirpath": str(tmp_path / "mine")}})
    callbacks = parse_recipe(recipe).trainer.callbacks
    assert [c.dirpath for c in callbacks if isinstance(c, ModelCheckpoint)] == [str(tmp_path / "mine")]  # the recipe's own, alone


def test_a_run_folder_is_reused_only_for_the_settings_it_ran(tmp_path, capsys):
    """The stale-result bug: ``quickstart --epochs 2`` after an earlier run in the same folder
    returned the earlier table silently. Now the folder remembers its settings."""
    from rsdistill.cli import main
    from rsdistill.runs import SETTINGS_NAME

    out = tmp_path / "qs"
    assert main(["quickstart", "--epochs", "1", "--seeds", "0", "--out", str(out)]) == 0
    settings = json.loads((out / "teacher/seed_0" / SETTINGS_NAME).read_text())
    assert settings["trainer"]["max_epochs"] == 1 and settings["seed"] == 0
    capsys.readouterr()
    assert main(["quickstart", "--epochs", "1", "--seeds", "0", "--out", str(out)]) == 0  # the same settings: reused
    assert main(["quickstart", "--epochs", "2", "--seeds", "0", "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "trainer.max_epochs: 1 -> 2" in err and "--overwrite true" in err
    assert main(["quickstart", "--epochs", "2", "--seeds", "0", "--out", str(out), "--overwrite", "true"]) == 0
    assert json.loads((out / "student/seed_0" / SETTINGS_NAME).read_text())["trainer"]["max_epochs"] == 2
    assert torch.load(out / "student/seed_0/last.ckpt", weights_only=True)["epoch"] == 1  # two epochs ran, 0 and 1


def test_a_folder_of_unrecorded_settings_is_not_reused_silently(tmp_path):
    from rsdistill.errors import InputError
    from rsdistill.runs import claim_settings

    run = tmp_path / "model/seed_0"
    run.mkdir(parents=True)
    (run / "scores.json").write_text("{}")
    with pytest.raises(InputError, match="settings not recorded"):
        claim_settings(run, {"seed": 0})
    claim_settings(run, {"seed": 0}, overwrite=True)
    assert not (run / "scores.json").exists() and (run / "settings.json").is_file()


def test_written_files_get_the_users_normal_mode(tmp_path):
    """``map.tif``, ``stats.json`` and checkpoints were created 0600 (the temporary file's mode)."""
    from rsdistill.files import write_json

    old = os.umask(0o022)
    try:
        path = write_json(tmp_path / "stats.json", {"a": 1})
    finally:
        os.umask(old)
    assert path.stat().st_mode & 0o777 == 0o644


def test_experiment_options_as_the_readme_shows_them(tmp_path):
    """``--models a b`` and ``--seeds 0`` failed with a parser error, and ``--trainer.max_epochs 1``
    was unrecognised, so an experiment could not be shortened to try it."""
    import yaml

    from rsdistill.experiments.quickstart import quickstart_config

    config = quickstart_config(None, None, "enmap", epochs=3)
    (tmp_path / "exp.yaml").write_text(yaml.safe_dump({**config, "seeds": [0, 1]}, sort_keys=False))
    out = tmp_path / "out"
    assert main(["experiment", "-c", str(tmp_path / "exp.yaml"), "--out", str(out), "--models", "teacher", "student",
                 "--seeds", "0", "--trainer.max_epochs", "1"]) == 0
    assert sorted(p.name for p in out.iterdir() if p.is_dir()) == ["student", "teacher"]
    assert [p.name for p in (out / "student").iterdir()] == ["seed_0"]
    assert torch.load(out / "student/seed_0/last.ckpt", weights_only=True)["epoch"] == 0  # one epoch, not the config's 3


def test_a_batch_limit_of_one_means_one_batch(data_dir, tmp_path, monkeypatch):
    """The Trainer types ``limit_train_batches`` as Union[float, int], so jsonargparse read 1 as 1.0
    (100 %): ``--trainer.limit_train_batches 1`` (and ``1`` in a recipe) trained on every batch."""
    monkeypatch.setenv("RSDISTILL_DATA", str(data_dir))
    run_dir = tmp_path / "run"
    assert main(["fit", "-c", str(REPO / "configs/blm_kd/teacher.yaml"), "--run_dir", str(run_dir), "--model.init_args.d_model", "8",
                 "--trainer.max_epochs", "1", "--trainer.limit_train_batches", "1", "--trainer.limit_val_batches", "1",
                 "--trainer.enable_progress_bar", "false"]) == 0
    assert torch.load(run_dir / "last.ckpt", weights_only=True)["global_step"] == 1
    import yaml

    assert yaml.safe_load((run_dir / "config.yaml").read_text())["trainer"]["limit_train_batches"] == 1


def test_an_experiment_names_missing_prerequisites_before_training(tmp_path, capsys):
    """The EnMAP segmentation experiment trained two models for 23 s, then failed on a missing
    encoder of seed 0; now every seed's files are checked first."""
    import yaml

    from rsdistill.experiments.quickstart import quickstart_config

    config = quickstart_config(None, None, "enmap", epochs=1)
    config["models"] = {"student": config["models"]["student"],
                        "probe": {"arch": "encoder", "encoder": str(tmp_path / "seed_{seed}/encoder.safetensors")}}
    (tmp_path / "exp.yaml").write_text(yaml.safe_dump({**config, "seeds": [0, 1], "pairs": []}, sort_keys=False))
    assert main(["experiment", "-c", str(tmp_path / "exp.yaml"), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and str(tmp_path / "seed_0/encoder.safetensors") in err and str(tmp_path / "seed_1/encoder.safetensors") in err
    assert not (tmp_path / "out/student").exists()  # nothing trained


def test_a_one_seed_table_shows_no_spread():
    """The quickstart's one seed was printed as "± 0.00", a spread that was never measured."""
    from rsdistill.experiments.tables import markdown_table

    value = {"mean": 0.9, "std": 0.0}
    one = {"model": "student", "oa": value, "aa": value, "kappa": value, "params": 10, "ms_per_1000_px": {"mean": 5.0, "std": 0.0}, "seeds": 1}
    table = markdown_table([one])
    assert "90.00 ± –" in table and "± 0.00" not in table
    assert "90.00 ± 0.00" in markdown_table([{**one, "seeds": 3}])  # three seeds that agree: a measured spread of 0


def test_an_epoch_shorter_than_the_logging_interval_logs_once_and_warns_not(tmp_path):
    import warnings

    from fixtures import classifier_recipe
    from rsdistill.recipes import parse_recipe

    recipe = classifier_recipe(tmp_path / "run", 2)
    recipe["trainer"]["log_every_n_steps"] = 50  # Lightning's default; the tiny scene has a few batches an epoch
    cli = parse_recipe(recipe)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        cli.trainer.fit(cli.model, cli.datamodule)
    assert not [w for w in caught if "logging interval" in str(w.message)]
    batches = cli.trainer.num_training_batches
    assert 1 <= batches < 50 and cli.trainer.log_every_n_steps == batches
    logged = [row for row in rows(tmp_path / "run") if row.get("train/ce")]
    assert len(logged) == 2  # one row per epoch


def test_tensorboard_logs_what_metrics_csv_logs(data_dir, tmp_path, monkeypatch, capsys):
    """``--tensorboard true``: event files in run_dir/tensorboard with the same validation values
    as metrics.csv (which stays); without the package, one line naming the extra."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    monkeypatch.setenv("RSDISTILL_DATA", str(data_dir))
    run_dir = tmp_path / "run"
    command = ["fit", "-c", str(REPO / "configs/blm_kd/teacher.yaml"), "--run_dir", str(run_dir), "--model.init_args.d_model", "8",
               "--trainer.max_epochs", "2", "--trainer.limit_train_batches", "2", "--trainer.limit_val_batches", "1",
               "--trainer.enable_progress_bar", "false", "--tensorboard", "true"]
    assert main(command) == 0
    events = EventAccumulator(str(run_dir / "tensorboard")).Reload()
    logged = [row for row in rows(run_dir) if row.get("val/oa")]
    assert [round(e.value, 5) for e in events.Scalars("val/oa")] == [round(float(row["val/oa"]), 5) for row in logged]
    assert len(logged) == 2 and "train/ce" in events.Tags()["scalars"]
    monkeypatch.setattr("importlib.util.find_spec", lambda name, *a: None if name == "tensorboard" else importlib_find_spec(name, *a))
    assert main([*command[:4], str(tmp_path / "other"), *command[5:]]) == 2
    assert capsys.readouterr().err.strip().endswith('the tensorboard package is not installed; pip install -e ".[tensorboard]"')
