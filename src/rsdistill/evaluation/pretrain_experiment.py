"""Compare pretraining recipes over seeds at an equal budget: reconstruction metrics on the test
tiles and linear-probe OA, as mean ± std (JSON + Markdown), encoders saved with their cards.

An experiment YAML has ``data`` (``TileData`` options; the test tiles are the held-out ones),
``trainer``, ``recipes`` ({name: ``MAEPretrainer`` options}), ``seeds``, optionally ``probe``
({"tile_lists": {"train": csv, "test": csv}} of image,mask pairs, e.g. the EnMAP Potsdam lists) and
optionally ``datasets`` (several scenes or sensors, each with its own ``data`` and ``model``
overrides; one table row per dataset and recipe). Each run is a recipe in ``rsdistill fit``'s
dialect, validated by the same parser. Finished runs are reused on a rerun; an interrupted run
resumes from its ``last.ckpt``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from rsdistill.data.paths import read_tile_list, resolve
from rsdistill.data.tiles import TileData
from rsdistill.errors import InputError
from rsdistill.evaluation.experiment import finished_record, fit_resuming, summarise_columns
from rsdistill.evaluation.figures import reconstruction_figure
from rsdistill.evaluation.linear_probe import linear_probe_accuracy, pixel_features
from rsdistill.files import write_json
from rsdistill.io.scene import Scene
from rsdistill.models.registry import PretrainedEncoder
from rsdistill.recipes import make_recipe, parse_recipe
from rsdistill.tasks.pretrain import MAEPretrainer

RECONSTRUCTION = ("psnr_masked", "ssim_masked", "sam_masked", "psnr_tile", "ssim_tile", "sam_tile")


def probe_tiles(tile_lists: dict, encoder: PretrainedEncoder, root=None, align: str | None = None, scale: float = 1.0) -> dict[str, tuple[torch.Tensor, np.ndarray]]:
    """Labelled tiles per subset as the encoder's input: {subset: (tiles (T, C, H, W), labels (T, H, W))}.

    With ``align`` the tiles' bands are aggregated into the encoder's (an encoder of another
    sensor, e.g. a HyperKD teacher or Prithvi), ``scale`` bringing their units to the encoder's.
    """
    subsets = {}
    for subset, csv in tile_lists.items():
        tiles, labels = [], []
        for image, mask in read_tile_list(resolve(csv, root)):
            scene = Scene.read(image, labels=mask)
            preprocessing = encoder.for_scene(scene, align, scale).preprocessing
            tiles.append(preprocessing.cube(scene.cube, scene.valid))
            labels.append(np.where(scene.valid, scene.labels, 0))
        subsets[subset] = (torch.from_numpy(np.stack(tiles)), np.stack(labels))
    return subsets


def probe_accuracy(encoder, probe: dict, seed: int = 0) -> float:
    train_x, train_y = pixel_features(encoder, *probe["train"])
    test_x, test_y = pixel_features(encoder, *probe["test"])
    return linear_probe_accuracy(train_x, train_y, test_x, test_y, seed=seed)


def run_pretrain_experiment(config: dict, out_dir, seeds=None, log=print) -> list[dict]:
    """Every recipe × seed on ``data``, or on each entry of ``datasets`` ({name: {data: TileData
    options over ``data``, model: recipe options over every recipe's}}), e.g. one per sensor."""
    out_dir = Path(out_dir)
    records = []
    for dataset, data_options, model_overrides in experiment_datasets(config):
        dataset_dir = out_dir if dataset is None else out_dir / dataset
        for seed in seeds if seeds is not None else config.get("seeds", [0, 1, 2]):
            for record in _run_recipes(config, data_options, model_overrides, seed, dataset_dir, log):
                records.append(record if dataset is None else {"dataset": dataset, **record})
    columns = [*RECONSTRUCTION, *(["probe_oa"] if "probe" in config else [])]
    labelled = [{**r, "recipe": f"{r['dataset']} · {r['recipe']}" if "dataset" in r else r["recipe"]} for r in records]
    summary = summarise_columns(labelled, "recipe", columns)
    out_dir.mkdir(parents=True, exist_ok=True)
    write_json(out_dir / "results.json", {"runs": records, "summary": summary})
    (out_dir / "results.md").write_text(markdown_columns(summary, "recipe", columns) + "\n")
    return records


def experiment_datasets(config: dict) -> list[tuple[str | None, dict, dict]]:
    """(name, TileData options, model overrides) of each dataset; one unnamed one without ``datasets``."""
    out = []
    for dataset, overrides in (config.get("datasets") or {None: {}}).items():
        unknown = set(overrides) - {"data", "model"}
        if unknown:
            raise InputError(f"dataset {dataset!r}: unknown keys {sorted(unknown)}; a dataset has 'data' and 'model'")
        out.append((dataset, {**config.get("data", {}), **overrides.get("data", {})}, overrides.get("model", {})))
    return out


def pretrain_recipes(config: dict, data_options: dict, model_overrides: dict, seed: int, out_dir) -> dict[str, dict]:
    """{recipe name: its run's recipe} for one seed on one dataset."""
    return {
        name: make_recipe(MAEPretrainer, TileData, {**options, **model_overrides}, {**data_options, "seed": seed},
                         config.get("trainer", {}), Path(out_dir) / name / f"seed_{seed}", seed)
        for name, options in config["recipes"].items()
    }


def _run_recipes(config: dict, data_options: dict, model_overrides: dict, seed: int, out_dir: Path, log) -> list[dict]:
    """One seed of every recipe on one dataset; finished runs are reused."""
    records = []
    for name, recipe in pretrain_recipes(config, data_options, model_overrides, seed, out_dir).items():
        run_dir = Path(recipe["run_dir"])
        if (finished := finished_record(run_dir)) is not None:
            records.append(finished)
            continue
        run_dir.mkdir(parents=True, exist_ok=True)
        cli = parse_recipe(recipe, where=f"experiment recipe {name!r}, seed {seed}")
        trainer, task, data = cli.trainer, cli.model, cli.datamodule
        fit_resuming(trainer, task, data, run_dir)
        metrics = {k: float(v) for k, v in trainer.test(task, data, verbose=False)[0].items()}
        record = {"recipe": name, "seed": seed, **{k: metrics[f"test/{k}"] for k in RECONSTRUCTION}}
        if "probe" in config:
            encoder = PretrainedEncoder(task.model.encoder, task.preprocessing)
            probe = probe_tiles(config["probe"]["tile_lists"], encoder, data_options.get("root"))
            record["probe_oa"] = probe_accuracy(task.model.encoder, probe, seed)
        task.export(run_dir / "encoder.safetensors", {k: v for k, v in record.items() if k not in ("recipe", "seed")})
        reconstruction_figure(task, data.test_set.images(3), run_dir / "reconstruction.png")
        write_json(run_dir / "scores.json", record)
        records.append(record)
        log(f"{out_dir.name} seed {seed} {name}: " + ", ".join(f"{k} {v:.4f}" for k, v in record.items() if isinstance(v, float)))
    return records


def markdown_columns(summary: list[dict], key: str, columns: list[str]) -> str:
    lines = [f"| {key} | " + " | ".join(columns) + " | seeds |", "|---" * (len(columns) + 2) + "|"]
    for row in summary:
        cells = [f"{row[c]['mean']:.4f} ± {row[c]['std']:.4f}" for c in columns]
        lines.append(f"| {row[key]} | " + " | ".join(cells) + f" | {row['seeds']} |")
    return "\n".join(lines)
