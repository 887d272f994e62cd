"""The recipe dialect of ``rsdistill fit|validate|test|predict -c recipe.yaml`` and of every experiment run.

One recipe dialect, validated by one parser, for ``fit`` and for every run of an experiment:

- ``model: {class_path: rsdistill.tasks.PixelClassifier, init_args: {...}}`` and
  ``data: {class_path: rsdistill.data.PixelClassificationData, init_args: {...}}`` (LightningCLI's
  subclass mode: any ``BaseTask`` and any data module with an ``info``);
- the data module is built first and its ``info`` (preprocessing, classes, tile size...) is linked
  into the task's ``data_info``;
- ``run_dir``: the run's folder, named once: logs (``metrics.csv``), ``config.yaml``, ``last.ckpt``
  (every epoch), what the task writes there (split, encoder card), and ``predict/predictions.pt``;
  one run at a time, resumable after a kill (``rsdistill.runs``);
- ``base: other.yaml``: the recipe overrides another one (relative to the recipe's folder), so an
  ablation is a few lines.
"""

from __future__ import annotations

import difflib
import importlib
import importlib.util
import inspect
import pickle
import re
import warnings
from pathlib import Path
from typing import Any, Optional

import lightning as L
import torch
import yaml
from jsonargparse import ArgumentError
from lightning.pytorch.callbacks import BasePredictionWriter, ModelCheckpoint
from lightning.pytorch.cli import LightningCLI
from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger
from lightning.pytorch.utilities import rank_zero_info

from rsdistill.errors import InputError
from rsdistill.files import atomic_write
from rsdistill.models.state_dicts import untrusted_pickle
from rsdistill.runs import AtomicCheckpointIO, RunCSVLogger, RunLog, claim_run_folder, last_checkpoint, release_run_folder
from rsdistill.tasks.base import BaseTask

LIGHTNING_VERBS = ("fit", "validate", "test", "predict")


def read_recipe(path) -> dict:
    try:
        recipe = yaml.safe_load(Path(path).read_text())
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as error:
        raise InputError(f"{path}: cannot read recipe ({error})") from None
    if not isinstance(recipe, dict):
        raise InputError(f"{path}: a recipe is a YAML mapping (model, data, trainer, ...)")
    return recipe


def recipe_chain(path) -> list[Path]:
    """The recipe files to apply in order: the ``base`` of ``path`` (recursively), then ``path``."""
    chain, current = [], Path(path)
    while True:
        if current in chain:
            raise InputError(f"{path}: recipes name each other as base in a cycle ({current})")
        chain.insert(0, current)
        base = read_recipe(current).get("base")
        if base is None:
            return chain
        current = (current.parent / base) if not Path(base).is_absolute() else Path(base)
        if not current.is_file():
            raise InputError(f"{chain[0]}: its base recipe {current} does not exist")


def load_recipe(path) -> dict:
    """A recipe file with its ``base`` chain merged into one dict (later files win, mappings merged
    key by key as ``-c base.yaml -c recipe.yaml`` would), ``base`` removed."""

    def merge(into: dict, update: dict) -> dict:
        for key, value in update.items():
            into[key] = merge(dict(into[key]), value) if isinstance(value, dict) and isinstance(into.get(key), dict) else value
        return into

    recipe: dict = {}
    for file in recipe_chain(path):
        merge(recipe, read_recipe(file))
    recipe.pop("base", None)
    return recipe


def expand_bases(argv: list[str]) -> list[str]:
    """``-c recipe.yaml`` becomes ``-c base.yaml -c recipe.yaml`` for a recipe with a ``base``."""
    out, args = [], iter(argv)
    for arg in args:
        if arg in ("-c", "--config"):
            value = next(args, None)
            for recipe in recipe_chain(value) if value is not None else [None]:
                out += [arg, str(recipe)]
        else:
            out.append(arg)
    return out


BATCH_LIMITS = ("limit_train_batches", "limit_val_batches", "limit_test_batches", "limit_predict_batches", "val_check_interval")


def integer_limits(args) -> dict[str, int]:
    """The Trainer's batch limits given as integers (a number of batches) in ``args`` (a recipe
    dict, or CLI arguments with their ``-c`` files). Their type, ``Union[float, int]`` in the
    Trainer's signature, makes jsonargparse read 1 as 1.0, which Lightning takes as 100 %: so
    ``limit_train_batches: 1`` ran every batch. ``RecipeCLI`` restores the integers found here."""
    found: dict[str, int] = {}

    def take(trainer) -> None:
        for key, value in (trainer or {}).items() if isinstance(trainer, dict) else ():
            if key in BATCH_LIMITS and isinstance(value, int) and not isinstance(value, bool):
                found[key] = value

    if isinstance(args, dict):
        take(args.get("trainer"))
        return found
    items = list(args or [])
    for arg, value in zip(items, items[1:] + [None]):
        if arg in ("-c", "--config") and value is not None and Path(value).is_file():
            take(read_recipe(value).get("trainer"))
        key, _, inline = arg.partition("=")
        if key.startswith("--trainer.") and key[len("--trainer."):] in BATCH_LIMITS:
            text = inline if _ else value
            found.pop(key[len("--trainer."):], None)
            if text is not None and text.strip().isdigit():
                found[key[len("--trainer."):]] = int(text)
    return found


class RecipeCLI(LightningCLI):
    """LightningCLI with rsdistill's conventions (module docstring)."""

    def __init__(self, args: Any = None, run: bool = True):
        self.integer_limits = integer_limits(args)
        strict = {"exit_on_error": False}
        super().__init__(
            BaseTask, L.LightningDataModule, subclass_mode_model=True, subclass_mode_data=True, args=args, run=run,
            seed_everything_default=0, save_config_kwargs={"overwrite": True},
            parser_kwargs={**strict, **{verb: strict for verb in LIGHTNING_VERBS}},
        )

    def add_arguments_to_parser(self, parser) -> None:
        parser.add_argument("--run_dir", type=Optional[str], default=None, help="the run's folder: logs, config, last.ckpt, split, encoder")
        parser.add_argument("--base", type=Optional[str], default=None, help="a recipe this one overrides (resolved before parsing)")
        parser.add_argument("--overwrite", type=bool, default=False,
                            help="start a new run in a run_dir that holds one (its last.ckpt and metrics.csv are removed)")
        parser.add_argument("--tensorboard", type=bool, default=False,
                            help="also log to TensorBoard, in run_dir/tensorboard (the tensorboard extra); metrics.csv stays")
        parser.link_arguments("data.info", "model.init_args.data_info", apply_on="instantiate")

    def before_instantiate_classes(self) -> None:
        """The bases are merged by now (``expand_bases``): the config saved in the run folder stands
        alone, with no ``base`` left pointing at a file relative to where the recipe was."""
        config = self.config[self.subcommand] if self.subcommand else self.config
        config["base"] = None
        for key, value in self.integer_limits.items():  # the saved config says what ran
            config["trainer"][key] = value

    def instantiate_trainer(self, **kwargs: Any) -> L.Trainer:
        config = self.config[self.subcommand] if self.subcommand else self.config
        run_dir = config.get("run_dir")
        trainer = config.get("trainer", {})
        if config.get("tensorboard") and (run_dir is None or trainer.get("logger") not in (None, True)):
            raise InputError("--tensorboard: logs beside the run's metrics.csv, so it needs --run_dir and no trainer.logger of the recipe's own")
        if run_dir is not None:
            kwargs.setdefault("default_root_dir", run_dir)
            if trainer.get("logger") in (None, True):
                # fit logs in the run folder (kept across resumes); test/validate/predict in a
                # sub-folder, never over fit's metrics.csv
                fitting = self.subcommand in (None, "fit")
                csv = RunCSVLogger(run_dir, name="", version="") if fitting else CSVLogger(run_dir, name="", version=self.subcommand)
                kwargs.setdefault("logger", [csv, tensorboard_logger(run_dir, self.subcommand)] if config.get("tensorboard") else csv)
            # the recipe's own callbacks stay (LightningCLI would let this list replace them); the
            # run's last.ckpt callback is added unless the recipe brings its own ModelCheckpoint
            init = self.config_init[self.subcommand] if self.subcommand else self.config_init
            recipe_callbacks = list(self._get(init, "trainer", default={}).get("callbacks") or [])
            own_checkpoint = any(isinstance(c, ModelCheckpoint) for c in recipe_callbacks)
            callbacks = [*recipe_callbacks, RunLog()] + ([] if own_checkpoint else [last_checkpoint(run_dir)])
            if self.subcommand == "predict":
                callbacks.append(PredictionWriter(Path(run_dir) / "predict" / "predictions.pt"))
            kwargs.setdefault("callbacks", callbacks)
        kwargs.setdefault("plugins", [AtomicCheckpointIO()])
        kwargs.update(self.integer_limits)  # 1 batch, not 100 % (``integer_limits``)
        return super().instantiate_trainer(**kwargs)

    def before_fit(self) -> None:
        config = self.config["fit"]
        # under DDP every rank runs this; the folder is the run's, claimed once, by rank 0
        claim = config.get("run_dir") and self.trainer.global_rank == 0
        self._lock = claim_run_folder(config["run_dir"], config.get("ckpt_path"), config.get("overwrite", False)) if claim else None

    def after_fit(self) -> None:
        if self._lock is not None:
            release_run_folder(self._lock)


def tensorboard_logger(run_dir, subcommand: str | None) -> TensorBoardLogger:
    """TensorBoard event files in ``run_dir/tensorboard`` (fit) or ``run_dir/tensorboard/<verb>``.
    A resumed fit appends to them: the interrupted epoch's steps then show twice there, never in
    metrics.csv."""
    if importlib.util.find_spec("tensorboard") is None:
        raise InputError("--tensorboard: the tensorboard package is not installed; pip install -e \".[tensorboard]\"")
    return TensorBoardLogger(run_dir, name="tensorboard", version="" if subcommand in (None, "fit") else subcommand, default_hp_metric=False)


class PredictionWriter(BasePredictionWriter):
    """``rsdistill predict`` writes the task's predictions (``predict_step`` outputs, concatenated
    over batches: class ids of the test pixels, or encoder features of the test tiles) to ``path``."""

    def __init__(self, path):
        super().__init__(write_interval="epoch")
        self.path = Path(path)

    def write_on_epoch_end(self, trainer, pl_module, predictions, batch_indices) -> None:
        outputs = torch.cat([p.cpu() for p in predictions]) if predictions else torch.empty(0)
        atomic_write(self.path, lambda tmp: torch.save(outputs, tmp))
        rank_zero_info(f"predictions {tuple(outputs.shape)} written to {self.path}")


def make_recipe(task: type, data: type, model_options: dict, data_options: dict, trainer_options: dict, run_dir: Path, seed: int) -> dict:
    """A recipe of this dialect from its parts (as an experiment assembles each run)."""
    return {
        "seed_everything": seed, "run_dir": str(run_dir), "trainer": trainer_options,
        "model": {"class_path": f"{task.__module__}.{task.__qualname__}", "init_args": model_options},
        "data": {"class_path": f"{data.__module__}.{data.__qualname__}", "init_args": data_options},
    }


def parse_recipe(recipe: dict, where: str = "recipe") -> RecipeCLI:
    """A recipe given as a dict, validated and instantiated (trainer, model, datamodule), not run;
    ``where`` names it in errors (e.g. an experiment's run)."""
    return _clean_errors(lambda: RecipeCLI(args=recipe, run=False), recipe=where)


def run_lightning(argv: list[str]) -> None:
    """``argv``: a verb and its arguments. Checkpoints are read with ``weights_only=True`` unless
    ``--trust_pickle`` is given for a checkpoint whose source the user trusts."""
    verb, *rest = argv
    trust = "--trust_pickle" in rest
    rest = [a for a in rest if a != "--trust_pickle"]
    ckpt = next((b for a, b in zip(rest, rest[1:]) if a == "--ckpt_path"), "the checkpoint")
    recipes = [b for a, b in zip(rest, rest[1:]) if a in ("-c", "--config")]
    _clean_errors(lambda: RecipeCLI(args=[verb, "--weights_only", str(not trust).lower(), *expand_bases(rest)]), ckpt, ", ".join(recipes) or "recipe")


def _nearest_keys(message: str) -> str:
    """"; did you mean …" for an option a class does not accept, from its signature."""
    option, class_path = re.search(r"Option '([^']+)' is not accepted", message), re.search(r"class_path '([^']+)'", message)
    if not option or not class_path:
        return ""
    module, _, name = class_path.group(1).rpartition(".")
    try:
        parameters = inspect.signature(getattr(importlib.import_module(module), name).__init__).parameters
    except (ImportError, AttributeError, ValueError):
        return ""
    close = difflib.get_close_matches(option.group(1), [p for p in parameters if p != "self"], n=3)
    return f"; did you mean {', '.join(close)}?" if close else ""


def _wrapped_input_error(error: BaseException | None) -> InputError | None:
    seen = set()
    while error is not None and id(error) not in seen:
        if isinstance(error, InputError):
            return error
        seen.add(id(error))
        error = error.__cause__ or error.__context__
    return None


def _clean_errors(build, checkpoint: str = "the checkpoint", recipe: str = "recipe"):
    """jsonargparse's errors, which can span dozens of lines, as one ``InputError`` naming the
    recipe, the key and the nearest valid keys; a checkpoint refused by ``weights_only`` as one
    line naming it."""
    try:
        with warnings.catch_warnings():  # rsdistill passes the arguments itself; sys.argv holds its own verb's
            warnings.filterwarnings("ignore", message=".*args parameter is intended to run from within Python")
            return build()
    except ArgumentError as error:
        lines = [line.strip() for line in str(error).splitlines() if line.strip()]
        detail = next((line for line in lines if re.search(r"not accepted|does not exist|Expected|not a valid|required", line)), lines[-1] if lines else "")
        raise InputError(f"{recipe}: {lines[0] if lines else error} {detail}{_nearest_keys(str(error))}".strip()) from None
    except pickle.UnpicklingError:
        raise InputError(untrusted_pickle(checkpoint, "add --trust_pickle")) from None
    except (ValueError, TypeError, RuntimeError) as error:
        # jsonargparse wraps what a data module or task raised while being built ("Does not validate
        # against any of the Union subtypes"); the user's error is the InputError it wraps
        cause = _wrapped_input_error(error)
        if cause is None:
            raise
        raise cause from None
