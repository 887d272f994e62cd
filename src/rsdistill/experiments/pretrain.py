"""Compare pretraining recipes over seeds at an equal budget: reconstruction metrics on the test
tiles and linear-probe OA, as mean ± std (JSON + Markdown), encoders saved with their cards.

An experiment YAML has ``data`` (``TileData`` options; the test tiles are the held-out ones),
``trainer``, ``recipes`` ({name: ``MAEPretrainer`` options}), ``seeds``, optionally ``probe``
({"tile_lists": {"train": csv, "val": csv, "test": csv}} of image,mask pairs, e.g. the EnMAP
Potsdam lists; ``val`` optional) and optionally:
- ``datasets``: several scenes or sensors, each with its own ``data`` and ``model`` overrides; one
  table row per dataset and recipe;
- a recipe's ``grid`` (``experiments.grid``, e.g. ``{distill.weight: [0.1, 1, 10]}``): every point
  pretrained, the one with the best linear-probe OA on the probe's ``val`` tiles scored on the test
  tiles, once; its encoder goes to ``<recipe>/seed_<k>/`` like any recipe's;
- ``pairs`` ([[recipe, reference]]): the probe OA compared seed by seed (``evaluation.paired``);
- ``sweep`` (``experiments.curve``): the whole experiment per value of a data option, e.g.
  ``max_train_scenes`` for a data-budget curve.
Each run is a recipe in ``rsdistill fit``'s dialect, validated by the same parser. Finished runs
are reused on a rerun; an interrupted run resumes from its ``last.ckpt``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from rsdistill.data.paths import read_tile_list, resolve
from rsdistill.data.tiles import TileData
from rsdistill.errors import InputError
from rsdistill.evaluation.linear_probe import linear_probe_accuracy, pixel_features
from rsdistill.evaluation.paired import check_pairs, paired_differences, paired_table
from rsdistill.experiments.grid import grid_points, grid_table, run_dir_of, with_point
from rsdistill.experiments.runner import fit_resuming, only, run_once, search_grid
from rsdistill.experiments.tables import mean_std_cell, summarise_columns
from rsdistill.figures import reconstruction_figure
from rsdistill.files import write_json
from rsdistill.io.readers import read_scene
from rsdistill.models.registry import PretrainedEncoder
from rsdistill.recipes import make_recipe, parse_recipe
from rsdistill.tasks.pretrain import MAEPretrainer

RECONSTRUCTION = ("psnr_masked", "ssim_masked", "sam_masked", "psnr_tile", "ssim_tile", "sam_tile")


def probe_tiles(tile_lists: dict, encoder: PretrainedEncoder, root=None, align: str | None = None,
                scale: float = 1.0) -> dict[str, tuple[torch.Tensor, np.ndarray]]:
    """Labelled tiles per subset as the encoder's input: {subset: (tiles (T, C, H, W), labels (T, H, W))}.

    With ``align`` the tiles' bands are aggregated into the encoder's (an encoder of another
    sensor, e.g. a HyperKD teacher or Prithvi), ``scale`` bringing their units to the encoder's.
    """
    subsets = {}
    for subset, csv in tile_lists.items():
        tiles, labels = [], []
        for image, mask in read_tile_list(resolve(csv, root)):
            scene = read_scene(image, labels=mask)
            preprocessing = encoder.for_scene(scene, align, scale).preprocessing
            tiles.append(preprocessing.cube(scene.cube, scene.valid))
            labels.append(np.where(scene.valid, scene.labels, 0))
        subsets[subset] = (torch.from_numpy(np.stack(tiles)), np.stack(labels))
    return subsets


def probe_accuracy(encoder, probe: dict, seed: int = 0, subsets=("test",)) -> dict[str, float]:
    """Linear-probe OA on each of ``subsets`` of ``probe`` (``probe_tiles``), the probe trained once on its "train" tiles."""
    train_x, train_y = pixel_features(encoder, *probe["train"])
    return linear_probe_accuracy(train_x, train_y, {subset: pixel_features(encoder, *probe[subset]) for subset in subsets}, seed=seed)


def run_pretrain_experiment(config: dict, out_dir, seeds=None, log=print, overwrite: bool = False, recipes: list[str] | None = None) -> list[dict]:
    """Every recipe (or those named in ``recipes``) × seed on ``data``, or on each entry of
    ``datasets`` ({name: {data: TileData options over ``data``, model: recipe options over every
    recipe's}}), e.g. one per sensor. A run folder is reused only for the same settings
    (``runs.claim_settings``; ``overwrite`` replaces it)."""
    out_dir = Path(out_dir)
    for name, options in config["recipes"].items():  # a malformed grid, pair or probe fails before anything trains
        grid_points(name, options)
        if "grid" in options and "val" not in config.get("probe", {}).get("tile_lists", {}):
            raise InputError(f"recipe {name!r}: a grid is searched on the probe's validation tiles; give probe.tile_lists.val")
    pairs = check_pairs(config.get("pairs"), config["recipes"])
    config = {**config, "recipes": only(config["recipes"], recipes, "--recipes")}
    pairs = [pair for pair in pairs if set(pair) <= set(config["recipes"])]
    if pairs and "probe" not in config:
        raise InputError("pairs compare the linear-probe OA seed by seed; give a probe section")
    records, datasets = [], experiment_datasets(config)
    for dataset, data_options, model_overrides in datasets:
        dataset_dir = out_dir if dataset is None else out_dir / dataset
        for seed in seeds if seeds is not None else config.get("seeds", [0, 1, 2]):
            for record in _run_recipes(config, data_options, model_overrides, seed, dataset_dir, log, overwrite):
                records.append(record if dataset is None else {"dataset": dataset, **record})
    columns = [*RECONSTRUCTION, *probe_columns(config)]
    labelled = [{**r, "recipe": f"{r['dataset']} · {r['recipe']}" if "dataset" in r else r["recipe"]} for r in records]
    summary = summarise_columns(labelled, "recipe", columns)
    by_model = [{**r, "model": r["recipe"]} for r in labelled]
    named = [d for d, _, _ in datasets if d is not None]  # pairs compare recipes within each dataset
    paired = paired_differences(by_model, [(f"{d} · {a}", f"{d} · {b}") for d in named for a, b in pairs] or pairs, ["probe_oa"])
    out_dir.mkdir(parents=True, exist_ok=True)
    results = {"runs": records, "summary": summary, "paired": paired}
    write_json(out_dir / "results.json", results)
    (out_dir / "results.md").write_text(results_markdown(results))
    return records


def results_markdown(results: dict) -> str:
    """``results.md`` of a pretraining ``results.json``: the recipes' scores, the grids' validation probe OA, the pairs."""
    summary, paired = results["summary"], results["paired"]
    columns = [k for k in summary[0] if k not in ("recipe", "seeds")]
    grids = [{**r, "model": f"{r['dataset']} · {r['recipe']}" if "dataset" in r else r["recipe"]} for r in results["runs"] if "grid" in r]
    return (markdown_columns(summary, "recipe", columns) + "\n"
            + (f"\nChosen on the probe's validation tiles (best validation probe OA per seed; the test scores above are the chosen setting's):\n\n"
               f"{grid_table(grids, 'probe_oa')}\n" if grids else "")
            + (f"\nPaired over seeds:\n\n{paired_table(paired)}\n" if paired else ""))


def probe_columns(config: dict) -> list[str]:
    """The probe's scores in a record: test OA, and validation OA where the probe has validation tiles."""
    if "probe" not in config:
        return []
    return ["probe_oa", *(["probe_val_oa"] if "val" in config["probe"]["tile_lists"] else [])]


def experiment_datasets(config: dict) -> list[tuple[str | None, dict, dict]]:
    """(name, TileData options, model overrides) of each dataset; one unnamed one without ``datasets``."""
    out = []
    for dataset, overrides in (config.get("datasets") or {None: {}}).items():
        unknown = set(overrides) - {"data", "model"}
        if unknown:
            raise InputError(f"dataset {dataset!r}: unknown keys {sorted(unknown)}; a dataset has 'data' and 'model'")
        out.append((dataset, {**config.get("data", {}), **overrides.get("data", {})}, overrides.get("model", {})))
    return out


def pretrain_recipe(config: dict, data_options: dict, model_options: dict, seed: int, run_dir) -> dict:
    """One run's recipe (``rsdistill fit``'s dialect) of one seed on one dataset."""
    return make_recipe(MAEPretrainer, TileData, model_options, {**data_options, "seed": seed}, config.get("trainer", {}), Path(run_dir), seed)


def pretrain_recipes(config: dict, data_options: dict, model_overrides: dict, seed: int, out_dir) -> dict[str, dict]:
    """{run name: its recipe} of one seed on one dataset; a grid recipe gives one run per point ("name (label)")."""
    recipes = {}
    for name, options in config["recipes"].items():
        options = {**options, **model_overrides}
        for label, point in grid_points(name, options) or [(None, {})]:
            run_dir = run_dir_of(out_dir, name, label, seed)
            recipes[name if label is None else f"{name} ({label})"] = pretrain_recipe(config, data_options, with_point(options, point), seed, run_dir)
    return recipes


def _run_recipes(config: dict, data_options: dict, model_overrides: dict, seed: int, out_dir: Path, log, overwrite: bool) -> list[dict]:
    """One seed of every recipe on one dataset; finished runs of the same settings are reused."""
    records = []
    for name, options in config["recipes"].items():
        run_dir, options = run_dir_of(out_dir, name, None, seed), {**options, **model_overrides}

        def compute() -> dict:  # run_once calls it at once, inside this iteration
            if "grid" in options:
                return _searched(config, data_options, options, name, seed, out_dir, overwrite)
            return _scored(config, data_options, name, seed, pretrain_recipe(config, data_options, options, seed, run_dir), run_dir)

        record, fresh = run_once(run_dir, run_settings(config, data_options, options, seed), compute, overwrite)
        records.append(record)
        if fresh:
            log(f"{out_dir.name} seed {seed} {name}: " + ", ".join(f"{k} {v:.4f}" for k, v in record.items() if isinstance(v, float))
                + (f" (chosen on validation: {record['chosen']})" if "chosen" in record else ""))
    return records


def _pretrained(name: str, recipe: dict, seed: int):
    """(trainer, task, data) of one recipe, fitted (resuming from its ``last.ckpt``; a finished run only reloads)."""
    cli = parse_recipe(recipe, where=f"experiment recipe {name!r}, seed {seed}")
    fit_resuming(cli.trainer, cli.model, cli.datamodule, recipe["run_dir"])
    return cli.trainer, cli.model, cli.datamodule


def _probe(config: dict, data_options: dict, task: MAEPretrainer, seed: int, subsets) -> dict[str, float]:
    """{"probe_oa": test OA, "probe_val_oa": validation OA} of the task's encoder, for the subsets asked."""
    encoder = PretrainedEncoder(task.model.encoder, task.preprocessing)
    tiles = probe_tiles({s: config["probe"]["tile_lists"][s] for s in ("train", *subsets)}, encoder, data_options.get("root"))
    scores = probe_accuracy(task.model.encoder, tiles, seed, subsets)
    return {"probe_oa" if subset == "test" else f"probe_{subset}_oa": score for subset, score in scores.items()}


def _scored(config: dict, data_options: dict, name: str, seed: int, recipe: dict, out_dir: Path, extra: dict | None = None) -> dict:
    """Fit (or reload) one recipe's run, then score it on the held-out tiles, once: reconstruction
    metrics and the linear probe; its encoder (with card) and a reconstruction figure go to ``out_dir``."""
    trainer, task, data = _pretrained(name, recipe, seed)
    metrics = {k: float(v) for k, v in trainer.test(task, data, verbose=False)[0].items()}
    record = {"recipe": name, "seed": seed, **{k: metrics[f"test/{k}"] for k in RECONSTRUCTION}}
    if "probe" in config:
        record.update(_probe(config, data_options, task, seed, [s for s in ("val", "test") if s in config["probe"]["tile_lists"]]))
    record.update(extra or {})
    task.export(out_dir / "encoder.safetensors", {k: v for k, v in record.items() if isinstance(v, float)})
    reconstruction_figure(task, data.test_set.images(3), out_dir / "reconstruction.png")
    return record


def run_settings(config: dict, data_options: dict, options: dict, seed: int) -> dict:
    """What a pretraining run is (``runs.claim_settings``): recipe options, data, trainer, probe, seed."""
    return {"recipe": options, "data": data_options, "trainer": config.get("trainer", {}), "probe": config.get("probe"), "seed": seed}


def _searched(config: dict, data_options: dict, options: dict, name: str, seed: int, out_dir: Path, overwrite: bool) -> dict:
    """A ``grid`` recipe's run of ``seed`` (``experiments.grid``): every point pretrained and probed on
    the validation tiles (each point's ``val.json`` reused), the best scored on the test tiles once."""
    def validate(label: str, point_options: dict, run_dir: Path) -> dict:
        _, task, _ = _pretrained(f"{name} ({label})", pretrain_recipe(config, data_options, point_options, seed, run_dir), seed)
        return {"probe_oa": _probe(config, data_options, task, seed, ["val"])["probe_val_oa"]}

    best, validated = search_grid(name, options, out_dir, seed, "probe_oa", lambda o: run_settings(config, data_options, o, seed), validate, overwrite)
    recipe = pretrain_recipe(config, data_options, with_point(options, best["point"]), seed, run_dir_of(out_dir, name, best["label"], seed))
    chosen = {"chosen": best["label"], "select": "probe_oa", "grid": validated}
    return _scored(config, data_options, name, seed, recipe, run_dir_of(out_dir, name, None, seed), chosen)


def markdown_columns(summary: list[dict], key: str, columns: list[str]) -> str:
    lines = [f"| {key} | " + " | ".join(columns) + " | seeds |", "|---" * (len(columns) + 2) + "|"]
    for row in summary:
        cells = [mean_std_cell(row[c], row["seeds"], 1.0, 4) for c in columns]
        lines.append(f"| {row[key]} | " + " | ".join(cells) + f" | {row['seeds']} |")
    return "\n".join(lines)
