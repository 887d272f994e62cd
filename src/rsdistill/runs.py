"""A run folder that survives being killed: one run at a time, a complete checkpoint every epoch,
and a log that keeps every epoch's row across a resume.

- ``AtomicCheckpointIO``: a checkpoint is written next to its final name and renamed over it, so a
  kill during the write leaves the previous one (Lightning's fsspec transaction writes to the
  system temp folder and moves the file, which is no atomic rename across filesystems).
- ``last_checkpoint``: ``last.ckpt`` replaced at the end of every training epoch.
- ``RunCSVLogger``: ``metrics.csv`` is kept when a run resumes (Lightning's CSV writer deletes it
  when it is created); the rows of the epoch a kill interrupted are dropped when training restarts
  (they are logged again); the log is flushed whenever a checkpoint is written (``RunLog``), so no
  row of a checkpointed epoch can be lost.
- ``claim_run_folder``: a lock file holding the owner's PID; a second run into a folder a live run
  holds is refused, a stale lock (dead process) is taken over and said; a folder holding a run
  (``last.ckpt``) is continued only with an explicit resume, or restarted with ``overwrite``.
- ``claim_settings``: an experiment's run folder remembers what ran (``settings.json``: the run's
  declared options, data, trainer and seed). A finished or interrupted run is reused only when they
  match; otherwise the first differing setting is named, and ``overwrite`` clears the folder.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
from pathlib import Path

import torch
from lightning.pytorch.callbacks import Callback, ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger
from lightning.pytorch.loggers.csv_logs import ExperimentWriter
from lightning.pytorch.plugins.io import TorchCheckpointIO
from lightning.pytorch.utilities import rank_zero_info, rank_zero_only

from rsdistill.errors import InputError
from rsdistill.files import atomic_write

LOCK_NAME = ".lock"
LAST_NAME = "last.ckpt"
SETTINGS_NAME = "settings.json"


class AtomicCheckpointIO(TorchCheckpointIO):
    def save_checkpoint(self, checkpoint, path, storage_options=None) -> None:
        atomic_write(path, lambda tmp: torch.save(checkpoint, tmp))


class EveryEpochCheckpoint(ModelCheckpoint):
    """A checkpoint after every training epoch, whatever the validation interval: after validation
    in an epoch that validates (as Lightning does), at the end of training in one that does not.
    Lightning alone defers every save to the next validation when ``check_val_every_n_epoch > 1``,
    so a run killed before its first validation left nothing to resume."""

    def _ModelCheckpoint__warn_if_dir_not_empty(self, dirpath) -> None:
        """Lightning warns when the checkpoint folder is not empty; a run folder always holds the
        run's lock, settings and log beside ``last.ckpt`` (``claim_run_folder`` guards against
        mixing runs), so the warning said nothing and was printed for every new run."""

    def _should_save_on_train_epoch_end(self, trainer) -> bool:
        every = trainer.check_val_every_n_epoch
        if every is None or every == 1 or getattr(trainer, "_val_check_time_interval", None) is not None:
            return super()._should_save_on_train_epoch_end(trainer)
        validates = (trainer.current_epoch + 1) % every == 0 and trainer.enable_validation
        return not validates


def last_checkpoint(run_dir) -> ModelCheckpoint:
    """``last.ckpt`` in ``run_dir``, replaced at the end of every training epoch.

    (``save_last=True`` with ``save_top_k=0`` writes it only when training ends, so a killed run
    would leave none; a top-1 checkpoint without a monitor, named ``last``, is the latest one.)
    """
    return EveryEpochCheckpoint(dirpath=run_dir, filename=Path(LAST_NAME).stem, save_top_k=1, every_n_epochs=1, enable_version_counter=False)


class _KeptMetrics(ExperimentWriter):
    """Lightning's CSV writer, minus deleting an existing ``metrics.csv``: rows are appended to it."""

    def _check_log_dir_exists(self) -> None:
        if self._fs.isfile(self.metrics_file_path):
            with open(self.metrics_file_path, newline="") as f:
                self.metrics_keys = list(csv.DictReader(f).fieldnames or [])

    def drop_epochs_from(self, epoch: int) -> None:
        """Remove the rows of epochs >= ``epoch`` (logged by a run killed during that epoch)."""
        if not self._fs.isfile(self.metrics_file_path):
            return
        with open(self.metrics_file_path, newline="") as f:
            rows = list(csv.DictReader(f))
        kept = [r for r in rows if not r.get("epoch") or float(r["epoch"]) < epoch]
        if len(kept) != len(rows):
            def write(tmp):
                with open(tmp, "w", newline="") as f:
                    writer = csv.DictWriter(f, fieldnames=self.metrics_keys)
                    writer.writeheader()
                    writer.writerows(kept)
            atomic_write(self.metrics_file_path, write)


class RunCSVLogger(CSVLogger):
    """``metrics.csv`` in the run folder, kept across a resume (module docstring)."""

    @property
    def experiment(self) -> _KeptMetrics:
        if self._experiment is None:
            self._fs.makedirs(self.root_dir, exist_ok=True)
            self._experiment = _KeptMetrics(log_dir=self.log_dir)
        return self._experiment


class RunLog(Callback):
    """Flush the log with every checkpoint; on a resume, drop the rows of the interrupted epoch."""

    def on_save_checkpoint(self, trainer, pl_module, checkpoint) -> None:
        for logger in trainer.loggers:
            logger.save()

    @rank_zero_only
    def on_train_start(self, trainer, pl_module) -> None:
        for logger in trainer.loggers:
            if isinstance(logger, RunCSVLogger) and trainer.current_epoch > 0:
                logger.experiment.drop_epochs_from(trainer.current_epoch)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def claim_run_folder(run_dir, ckpt_path: str | None, overwrite: bool = False) -> Path:
    """Take ``run_dir`` for this process (see the module docstring); returns the lock file.

    ``ckpt_path``: what the fit resumes from (``last``, a path, or None for a new run).
    """
    resume = ckpt_path is not None
    run_dir = Path(run_dir)
    lock = run_dir / LOCK_NAME
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        holder = int(lock.read_text().split()[0]) if lock.is_file() else None
    except (OSError, ValueError, IndexError) as error:
        raise InputError(f"{run_dir}: cannot use this run folder ({error})") from None
    if holder is not None and holder != os.getpid():
        if _alive(holder):
            raise InputError(f"{run_dir}: a live run (PID {holder}) holds this folder; wait for it, or give another run_dir")
        rank_zero_info(f"{run_dir}: taking over the lock of PID {holder}, which is no longer running")
    last = run_dir / LAST_NAME
    if last.is_file() and not resume:
        if not overwrite:
            raise InputError(f"{run_dir}: holds a run ({LAST_NAME}); resume it with --ckpt_path last, or start over with --overwrite true")
        for name in (LAST_NAME, "metrics.csv"):
            (run_dir / name).unlink(missing_ok=True)
    if ckpt_path == "last" and not last.is_file():
        raise InputError(f"{run_dir}: no {LAST_NAME} to resume; leave out --ckpt_path last to start a new run")
    try:
        atomic_write(lock, lambda tmp: Path(tmp).write_text(f"{os.getpid()}\n"))
    except OSError as error:
        raise InputError(f"{run_dir}: cannot write to this run folder ({error})") from None
    return lock


def release_run_folder(lock: Path) -> None:
    if lock.is_file() and lock.read_text().split()[:1] == [str(os.getpid())]:
        lock.unlink()


def first_difference(old, new, where: str = "") -> str | None:
    """The first setting that differs between two JSON documents, as ``key.path: old -> new``."""
    if isinstance(old, dict) and isinstance(new, dict):
        for key in sorted(set(old) | set(new), key=str):
            path = f"{where}.{key}" if where else str(key)
            if key not in old or key not in new:
                return f"{path}: {old.get(key, '(absent)')!r} -> {new.get(key, '(absent)')!r}"
            found = first_difference(old[key], new[key], path)
            if found:
                return found
        return None
    return None if old == new else f"{where or 'settings'}: {old!r} -> {new!r}"


def claim_settings(run_dir, settings: dict, overwrite: bool = False) -> None:
    """Record ``settings`` (JSON-able) as what ``run_dir`` runs; refuse a folder that holds a run of
    other or unrecorded settings unless ``overwrite`` (then the folder is cleared)."""
    run_dir = Path(run_dir)
    settings = json.loads(json.dumps(settings))  # tuples as lists, keys as strings: as read back
    path = run_dir / SETTINGS_NAME
    holds_run = run_dir.is_dir() and any(run_dir.iterdir())
    if path.is_file():
        difference = first_difference(json.loads(path.read_text()), settings)
    else:
        difference = "settings not recorded (a run from before runs kept them)" if holds_run else None
    if difference is not None:
        if not overwrite:
            raise InputError(f"{run_dir}: holds a run with other settings ({difference}); rerun with --overwrite true "
                             f"to replace it, or give another --out")
        shutil.rmtree(run_dir)
    if difference is not None or not path.is_file():
        run_dir.mkdir(parents=True, exist_ok=True)
        atomic_write(path, lambda tmp: Path(tmp).write_text(json.dumps(settings, indent=1)))
