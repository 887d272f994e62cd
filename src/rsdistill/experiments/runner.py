"""The one runner under every experiment (models, pretraining recipes, unmixing seeds).

Each run lives in its own folder (``grid.run_dir_of``), claimed for its settings
(``runs.claim_settings``: a folder of other settings is refused unless ``overwrite``); a run that
finished there left its record (``scores.json``) and is reused, so an interrupted experiment
resumes where it stopped, and an interrupted fit resumes from its ``last.ckpt`` (``fit_resuming``).
A ``grid`` is searched the same way for every kind: each point validated once (its ``val.json``
kept), the best on validation chosen (``grid.choose``), only that one tested.
"""

from __future__ import annotations

import json
import pickle
from collections.abc import Callable
from pathlib import Path

from rsdistill.errors import InputError
from rsdistill.experiments.grid import choose, grid_points, run_dir_of, with_point
from rsdistill.files import write_json
from rsdistill.models.state_dicts import untrusted_pickle
from rsdistill.runs import LAST_NAME, claim_run_folder, claim_settings, release_run_folder


def fit_resuming(trainer, model, data, run_dir) -> None:
    """Fit in ``run_dir``, held for this process, from its ``last.ckpt`` when a killed run left one."""
    last = Path(run_dir) / LAST_NAME
    ckpt_path = str(last) if last.is_file() else None
    lock = claim_run_folder(run_dir, ckpt_path)
    try:
        trainer.fit(model, data, ckpt_path=ckpt_path, weights_only=True)
    except pickle.UnpicklingError:
        raise InputError(untrusted_pickle(last, "delete it to train this run from the start")) from None
    finally:
        release_run_folder(lock)


def finished_record(run_dir: Path, name: str = "scores.json") -> dict | None:
    """The record a finished run left in ``run_dir`` (``name``), else None."""
    scores_file = Path(run_dir) / name
    return json.loads(scores_file.read_text()) if scores_file.is_file() else None


def run_once(run_dir: Path, settings: dict, compute: Callable[[], dict], overwrite: bool = False,
             name: str = "scores.json") -> tuple[dict, bool]:
    """(the record of the run in ``run_dir``, whether it was computed now): the record a finished
    run of the same ``settings`` left there, else ``compute()``'s, written there as ``name``."""
    claim_settings(run_dir, settings, overwrite)
    if (finished := finished_record(run_dir, name)) is not None:
        return finished, False
    record = compute()
    write_json(Path(run_dir) / name, record)
    return record, True


def search_grid(name: str, options: dict, out_dir, seed: int, metric: str, settings: Callable[[dict], dict],
                validate: Callable[[str, dict, Path], dict], overwrite: bool = False) -> tuple[dict, list[dict]]:
    """(the chosen point's record, every point's record) of model ``name``'s ``grid`` for ``seed``.

    ``settings(point_options)``: what a point's run is; ``validate(label, point_options, run_dir)``:
    its validation scores {score: value}, ``metric`` among them. A point's record is
    ``{"label", "point", "val"}``, kept as ``val.json`` in its run folder and reused."""
    validated = []
    for label, point in grid_points(name, options):
        point_options = with_point(options, point)
        run_dir = run_dir_of(out_dir, name, label, seed)
        record, _ = run_once(run_dir, settings(point_options),
                             lambda: {"label": label, "point": point, "val": validate(label, point_options, run_dir)}, overwrite, "val.json")
        validated.append(record)
    return choose(validated, metric), validated


def only(entries: dict, names: list[str] | None, flag: str) -> dict:
    """``entries`` (an experiment's models or recipes) restricted to ``names`` (None: all), in the
    order asked; an unknown name is one line naming the command-line ``flag``."""
    if names is None:
        return entries
    unknown = [name for name in names if name not in entries]
    if unknown:
        raise InputError(f"{flag}: {unknown[0]!r} is not one of the experiment's {flag.lstrip('-')} ({', '.join(entries)})")
    return {name: entries[name] for name in names}
