"""``BaseTask``: what every rsdistill LightningModule shares (torchgeo's ``BaseTask`` pattern).

A task fills in ``configure_models``, ``configure_losses`` and ``configure_metrics`` (called once,
in that order, when it is built) and, if it distils, ``configure_distiller``. The base class owns:

- **data facts**: ``data_info``, what the data module provides (``info``): the ``preprocessing``
  record (``rsdistill.preprocessing``) and task facts (classes, tile or patch size, value range).
  It is a hyper-parameter in plain data, so a checkpoint is self-contained, and the task reads it
  as its ``DATA_INFO`` dataclass (``data.info``);
- **the optimizer**: AdamW (fused), no weight decay on biases and 1-D parameters (norms), as MAE's
  ``add_weight_decay``; per-parameter overrides from ``parameter_overrides``; the learning rate
  rises linearly for ``warmup_epochs`` (counted in steps) and then follows a cosine to 0 per step;
- **the NaN guard**: a loss term that becomes NaN/Inf stops the run naming the step and the term,
  before that epoch's checkpoint is written;
- **the RNG state** (torch, CUDA, numpy, Python) in every checkpoint, restored on resume, so a
  resumed run continues exactly like an uninterrupted one;
- **the teacher policy** (``rsdistill.distill.teacher``): the distiller, with its frozen teacher,
  is built when fitting starts and never when a checkpoint is loaded for inference; its own
  trained state (projections) is saved for resuming and dropped when a checkpoint loads without it;
- **the scores a run leaves**: ``scores[stage]``, the last validation's or test's scores as plain
  numbers, filled by the tasks that evaluate (what ``rsdistill experiment`` records);
- **what it is for**: ``kind`` — ``pixel_classification``, ``segmentation`` or ``encoder`` (a
  pretraining or distillation whose product is an encoder), the word an exported ONNX card also
  carries. The verbs key their tables by it (export, map, tile scores, the experiment's record)
  instead of asking for classes; a classifying task also says what its class maps hold
  (``map_classes``);
- **the encoder a run leaves**: a task whose ``exported_encoder`` is not None writes it, when a fit
  ends, as ``encoder.safetensors`` + card (architecture, preprocessing, recipe, metrics) in the
  run folder, for the other recipes to take as a backbone.
"""

from __future__ import annotations

import math
import random
import warnings
from pathlib import Path

import lightning as L
import numpy as np
import torch
from torch import nn

from rsdistill.data.info import DataInfo
from rsdistill.errors import InputError
from rsdistill.io.masks import Legend
from rsdistill.preprocessing import Preprocessing

DISTILLER_PREFIX = "distiller."
NOT_RECIPE = ("data_info", "_class_path", "_instantiator")


TASK_KEY = "rsdistill_task"


class BaseTask(L.LightningModule):
    kind = "encoder"  # what the task's checkpoint is for (module docstring); classifying tasks override it
    DATA_INFO: type[DataInfo] = DataInfo  # the data facts the task reads (data.info)

    def __init__(self) -> None:
        super().__init__()
        self.save_hyperparameters()
        if self.hparams.get("data_info") is None:
            raise InputError(f"{type(self).__name__} needs data_info (the data module's info: preprocessing and task facts)")
        self.distiller: nn.Module | None = None
        self.scores: dict[str, dict] = {}  # {"val" | "test": the stage's last scores}: one test record for every task
        self._data_info = self.DATA_INFO.from_dict(self.hparams.data_info, f"{type(self).__name__} data_info")
        # raw scene bands -> normalised model input, as the data module fitted it
        self.preprocessing = Preprocessing.from_dict(self.data_info.preprocessing, "data_info")
        self.configure_models()
        self.configure_losses()
        self.configure_metrics()

    # -- what a task fills in --------------------------------------------------------------------
    def configure_models(self) -> None:
        raise NotImplementedError

    def configure_losses(self) -> None:
        """Loss modules or options; optional."""

    def configure_metrics(self) -> None:
        """torchmetrics objects; optional."""

    def configure_distiller(self) -> nn.Module | None:
        """The distiller (``distill.teacher.Distiller``) when the recipe distils, else None."""
        return None

    def parameter_overrides(self) -> dict[str, dict]:
        """{parameter-name suffix: optimizer options} for parameters that need their own (e.g. no decay)."""
        return {}

    # -- data facts ------------------------------------------------------------------------------
    @property
    def data_info(self):
        """The data facts as the task's ``DATA_INFO`` dataclass."""
        return self._data_info

    # -- teacher policy --------------------------------------------------------------------------
    def setup(self, stage: str) -> None:
        if stage == "fit" and self.distiller is None:
            self.distiller = self.configure_distiller()

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        if self.distiller is None:  # loaded for inference or evaluation: no teacher, no distillation state
            state = checkpoint.get("state_dict", {})
            for key in [k for k in state if k.startswith(DISTILLER_PREFIX)]:
                del state[key]
        if self._trainer is not None and "rng_states" in checkpoint:  # resuming a fit
            _set_rng_states(checkpoint["rng_states"])

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        # The global RNGs drive dropout and masking; saving them makes a resumed run exact.
        checkpoint["rng_states"] = _rng_states()
        checkpoint[TASK_KEY] = type(self).__name__  # what the checkpoint holds (tasks.loading.TASKS)

    def map_classes(self) -> tuple[list[int], list[str], Legend]:
        """(the codes its class maps hold, 0 meaning no data; their names; the legend its reference
        masks are read with). Only a classifying task makes class maps."""
        raise InputError(f"a {type(self).__name__} makes no class map; give a classifier or segmentation checkpoint")

    # -- the NaN guard ---------------------------------------------------------------------------
    def check_finite(self, terms: dict[str, torch.Tensor]) -> None:
        for name, value in terms.items():
            if torch.is_tensor(value) and not torch.isfinite(value).all():
                where = f" of {self._trainer.default_root_dir}" if self._trainer is not None else ""
                raise FloatingPointError(
                    f"loss term {name!r} became {value.item() if value.numel() == 1 else 'non-finite'} at step "
                    f"{self.global_step} (epoch {self.current_epoch}){where}; stopping without overwriting the last good checkpoint"
                )

    # -- optimizer -------------------------------------------------------------------------------
    def parameter_groups(self) -> list[dict]:
        """Decayed weights; undecayed biases and 1-D parameters; one group per override suffix."""
        overrides = self.parameter_overrides()
        groups: dict[str, dict] = {"decay": {"params": []}, "no_decay": {"params": [], "weight_decay": 0.0}}
        groups.update({suffix: {"params": [], **options} for suffix, options in overrides.items()})
        for name, parameter in self.named_parameters():
            if not parameter.requires_grad:
                continue
            suffix = next((s for s in overrides if name.endswith(s)), None)
            key = suffix or ("no_decay" if parameter.ndim <= 1 or name.endswith(".bias") else "decay")
            groups[key]["params"].append(parameter)
        return [g for g in groups.values() if g["params"]]

    def configure_optimizers(self):
        h = self.hparams
        optimizer = torch.optim.AdamW(self.parameter_groups(), lr=h.lr, weight_decay=h.weight_decay, betas=tuple(h.get("betas", (0.9, 0.999))), fused=True)
        total = max(int(_stepping_batches(self.trainer)), 1) if self._trainer is not None else 1
        per_epoch = total / max(self.trainer.max_epochs or 1, 1) if self._trainer is not None else 1
        warmup = int(round(h.get("warmup_epochs", 0.0) * per_epoch))

        def factor(step: int) -> float:  # linear warm-up, then cosine to 0, per optimizer step
            if step < warmup:
                return (step + 1) / warmup
            return 0.5 * (1 + math.cos(math.pi * min(step - warmup, total - warmup) / max(total - warmup, 1)))

        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    # -- the encoder a run leaves behind -----------------------------------------------------------
    def exported_encoder(self) -> nn.Module | None:
        """The encoder a finished fit writes to the run folder; None: the task leaves none."""
        return None

    @property
    def recipe(self) -> dict:
        return {k: v for k, v in self.hparams.items() if k not in NOT_RECIPE}

    def export(self, path, metrics: dict | None = None) -> None:
        """Save ``exported_encoder`` as safetensors + JSON card (architecture, preprocessing, recipe, metrics)."""
        from rsdistill.models.registry import save_encoder

        card = {"bands": self.preprocessing.channels, "sensor": getattr(self.data_info, "sensor", None), "scenes": getattr(self.data_info, "scenes", None),
                "recipe": self.recipe, "metrics": metrics or {}}
        save_encoder(self.exported_encoder(), path, self.preprocessing, card)

    def run_folder(self) -> Path | None:
        """The run folder (the logger's) for what a fit writes besides checkpoints, on global rank 0
        only; None elsewhere and without a logger (Lightning would fall back to the working
        directory). Every rank must call it: under DDP ``trainer.log_dir`` is a collective."""
        log_dir = self.trainer.log_dir if self.trainer.loggers else None
        return Path(log_dir) if log_dir is not None and self.trainer.is_global_zero else None

    def on_fit_end(self) -> None:
        """The encoder and its card go to the run folder."""
        log_dir = self.run_folder()
        if log_dir is not None and self.exported_encoder() is not None:
            metrics = {k: float(v) for k, v in self.trainer.callback_metrics.items() if k.startswith("val/")}
            self.export(Path(log_dir) / "encoder.safetensors", metrics)

    def count_parameters(self) -> int:
        """Parameters of the model a user keeps (not a distiller's, never a teacher's)."""
        return sum(p.numel() for name, p in self.named_parameters() if not name.startswith(DISTILLER_PREFIX))


def _stepping_batches(trainer) -> int:
    """The optimizer steps of the whole fit. Counting them loads the training data first; an epoch
    shorter than ``log_every_n_steps`` then lowers the interval to the epoch's length (Lightning
    would warn and log nothing for such an epoch)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*is smaller than the logging interval")
        total = trainer.estimated_stepping_batches
    batches = trainer.num_training_batches
    if 0 < batches < trainer.log_every_n_steps and batches != float("inf"):
        trainer.log_every_n_steps = int(batches)
    return total


def _rng_states() -> dict:
    """Plain containers and tensors only, so a checkpoint loads with ``weights_only=True``."""
    kind, keys, position, has_gauss, gauss = np.random.get_state()
    numpy_state = [kind, torch.from_numpy(keys.astype(np.int64)), int(position), int(has_gauss), float(gauss)]
    states = {"torch": torch.get_rng_state(), "numpy": numpy_state, "python": random.getstate()}
    if torch.cuda.is_available():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def _set_rng_states(states: dict) -> None:
    torch.set_rng_state(states["torch"])
    kind, keys, position, has_gauss, gauss = states["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), position, has_gauss, gauss))
    random.setstate(states["python"])
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])
