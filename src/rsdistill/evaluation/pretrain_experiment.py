"""Compare pretraining recipes over seeds at an equal budget: reconstruction metrics on held-out
tiles and linear-probe OA, as mean ± std (JSON + Markdown), encoders saved with their cards.

An experiment YAML has ``data`` (``TileData`` options), ``trainer``, ``recipes`` ({name:
``MAEPretrainer`` options}), ``seeds``, optionally ``probe`` ({"tile_lists": {"train": csv,
"test": csv}} of image,mask pairs, e.g. the EnMAP Potsdam lists) and optionally ``datasets``
(several scenes or sensors, each with its own ``data`` and ``model`` overrides; one table row per
dataset and recipe). Finished runs are reused on a rerun.
"""

from __future__ import annotations

from pathlib import Path

import lightning as L
import numpy as np
import torch

from rsdistill.data.paths import read_tile_list, resolve
from rsdistill.data.tiles import TileData
from rsdistill.errors import InputError
from rsdistill.evaluation.experiment import finished_record, summarise_columns
from rsdistill.files import write_json
from rsdistill.evaluation.figures import reconstruction_figure
from rsdistill.evaluation.linear_probe import linear_probe_accuracy, pixel_features
from rsdistill.io.scene import Scene
from rsdistill.models.cross_spectral import teacher_sensor
from rsdistill.spectral.alignment import band_alignment
from rsdistill.tasks.pretrain import MAEPretrainer

RECONSTRUCTION = ("psnr_masked", "ssim_masked", "sam_masked", "psnr_tile", "ssim_tile", "sam_tile")


def probe_tiles(tile_lists: dict, keep_bands, band_mean, band_std, root=None, alignment=None) -> dict[str, tuple[torch.Tensor, np.ndarray]]:
    """Labelled tiles per subset, normalised like the encoder's pretraining data (its bands and statistics).

    ``alignment`` (C_encoder, len(keep_bands)), if given, maps the kept bands to the encoder's bands
    (e.g. EnMAP tiles aggregated into the HLS bands of a multispectral teacher).
    """
    mean = np.array(band_mean, np.float32)[:, None, None]
    std = np.array(band_std, np.float32)[:, None, None]
    subsets = {}
    for subset, csv in tile_lists.items():
        tiles, labels = [], []
        for image, mask in read_tile_list(resolve(csv, root)):
            scene = Scene.read(image, labels=mask)
            cube = scene.cube[:, :, keep_bands]
            cube = (cube if alignment is None else cube @ np.asarray(alignment, np.float32).T).transpose(2, 0, 1)
            tiles.append(np.where(scene.valid[None], (cube - mean) / std, 0.0))
            labels.append(np.where(scene.valid, scene.labels, 0))
        subsets[subset] = (torch.from_numpy(np.stack(tiles).astype(np.float32)), np.stack(labels))
    return subsets


def encoder_probe_tiles(card: dict, tile_lists: dict, align: str | None = None, scale: float = 1.0, name: str = "encoder"):
    """Probe tiles prepared for an encoder from its card: its kept bands, or with ``align`` the
    tiles aggregated into the bands of the sensor it was trained on (a HyperKD teacher, Prithvi)."""
    mean, std = card["normalisation"]["mean"], card["normalisation"]["std"]
    if align is not None:
        source = Scene.read(read_tile_list(resolve(tile_lists["train"]))[0][0]).sensor()
        alignment = band_alignment(source, teacher_sensor(card, name), align) * scale
        return probe_tiles(tile_lists, np.arange(len(source)), mean, std, alignment=alignment)
    bands = card.get("kept_band_indices")
    if bands is None:
        raise InputError(f"{name}: the card has no kept_band_indices; cannot select the probe scenes' bands (use --align for an encoder of another sensor)")
    return probe_tiles(tile_lists, bands, mean, std)


def probe_accuracy(encoder, probe: dict, seed: int = 0) -> float:
    train_x, train_y = pixel_features(encoder, *probe["train"])
    test_x, test_y = pixel_features(encoder, *probe["test"])
    return linear_probe_accuracy(train_x, train_y, test_x, test_y, seed=seed)


def run_pretrain_experiment(config: dict, out_dir, seeds=None, log=print) -> list[dict]:
    """Every recipe × seed on ``data``, or on each entry of ``datasets`` ({name: {data: TileData
    options over ``data``, model: recipe options over every recipe's}}), e.g. one per sensor."""
    out_dir = Path(out_dir)
    datasets = config.get("datasets") or {None: {}}
    records = []
    for dataset, overrides in datasets.items():
        unknown = set(overrides) - {"data", "model"}
        if unknown:
            raise InputError(f"dataset {dataset!r}: unknown keys {sorted(unknown)}; a dataset has 'data' and 'model'")
        data_options = {**config.get("data", {}), **overrides.get("data", {})}
        dataset_dir = out_dir if dataset is None else out_dir / dataset
        for seed in seeds if seeds is not None else config.get("seeds", [0, 1, 2]):
            for record in _run_recipes(config, data_options, overrides.get("model", {}), seed, dataset_dir, log):
                records.append(record if dataset is None else {"dataset": dataset, **record})
    columns = [*RECONSTRUCTION, *(["probe_oa"] if "probe" in config else [])]
    labelled = [{**r, "recipe": f"{r['dataset']} · {r['recipe']}" if "dataset" in r else r["recipe"]} for r in records]
    summary = summarise_columns(labelled, "recipe", columns)
    out_dir.mkdir(parents=True, exist_ok=True)
    write_json(out_dir / "results.json", {"runs": records, "summary": summary})
    (out_dir / "results.md").write_text(markdown_columns(summary, "recipe", columns) + "\n")
    return records


def _run_recipes(config: dict, data_options: dict, model_overrides: dict, seed: int, out_dir: Path, log) -> list[dict]:
    """One seed of every recipe on one dataset; finished runs are reused."""
    data = TileData(**{**data_options, "seed": seed})
    probe = None
    if "probe" in config:
        probe = probe_tiles(config["probe"]["tile_lists"], data.keep_bands, data.band_mean, data.band_std, data_options.get("root"))
    records = []
    for name, options in config["recipes"].items():
        run_dir = out_dir / name / f"seed_{seed}"
        if (finished := finished_record(run_dir)) is not None:
            records.append(finished)
            continue
        run_dir.mkdir(parents=True, exist_ok=True)
        L.seed_everything(seed, workers=True)
        task = MAEPretrainer(
            num_bands=data.num_bands, img_size=data.tile_size, band_mean=data.band_mean, band_std=data.band_std,
            wavelengths=data.wavelengths, data_range=data.data_range, **{**options, **model_overrides},
        )
        trainer = L.Trainer(
            default_root_dir=run_dir, logger=L.pytorch.loggers.CSVLogger(run_dir, name="", version=""),
            enable_checkpointing=False, **config.get("trainer", {}),
        )
        trainer.fit(task, data)
        metrics = {k: float(v) for k, v in trainer.validate(task, data, verbose=False)[0].items()}
        record = {"recipe": name, "seed": seed, **{k: metrics[f"val/{k}"] for k in RECONSTRUCTION}}
        if probe is not None:
            record["probe_oa"] = probe_accuracy(task.model.encoder, probe, seed)
        task.export(run_dir / "encoder.safetensors", {k: v for k, v in record.items() if k not in ("recipe", "seed")})
        reconstruction_figure(task, data.val_set.tensors[0][:3], run_dir / "reconstruction.png")
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
