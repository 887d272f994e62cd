"""Compare models over seeds: fit, test, time, and aggregate as mean ± std (JSON + Markdown).

An experiment YAML has ``task`` (``classification``, the default, or ``segmentation``), ``data``
(the task's data module options: ``PixelClassificationData`` or ``SegmentationData``), ``trainer``
(Lightning ``Trainer`` options), ``models`` ({name: ``PixelClassifier`` or ``SemanticSegmenter``
options}; ``distill_from: NAME`` (or a list of names: an ensemble teacher) makes a student of
that model's checkpoint of the same seed; ``"{seed}"`` in an ``encoder`` path is the run's seed;
``data: {...}`` overrides data options for that model only, e.g. ``kd_unlabelled``; ``grid:
{option: [values]}`` searches options on the validation split, ``experiments.grid``, by the
experiment's ``select`` score), ``seeds``, ``pairs`` (``evaluation.paired``) and ``diagnose``
(teacher/student pairs compared on the validation pixels, ``evaluation.kd_diagnosis``). Each run is a recipe
(``recipes.make_recipe``) parsed and validated by the same parser as ``rsdistill fit``. Every model
of a seed sees the same split. Finished runs (``<out>/<name>/seed_<k>/scores.json``) are reused, so
an interrupted experiment resumes where it stopped; an interrupted run resumes from its ``last.ckpt``.

Costs: classifiers are timed per 1,000 test pixels; segmenters report parameters (all and
trained), forward GFLOPs and ms for one ``cost_tile``² tile (``evaluation.cost``; default 512).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import torch
import yaml

from rsdistill.console import restored_quietly
from rsdistill.data.classification import PixelClassificationData
from rsdistill.data.segmentation import SegmentationData
from rsdistill.errors import InputError
from rsdistill.evaluation.cost import forward_flops, latency_ms, ms_per_1000_pixels
from rsdistill.evaluation.kd_diagnosis import diagnose as diagnose_transfer
from rsdistill.evaluation.paired import check_pairs, paired_differences
from rsdistill.experiments.grid import grid_points, run_dir_of, with_point
from rsdistill.experiments.runner import finished_record, fit_resuming, only, run_once, search_grid
from rsdistill.experiments.tables import REPORTED, results_markdown, summarise
from rsdistill.files import write_json
from rsdistill.recipes import make_recipe, parse_recipe
from rsdistill.runs import LAST_NAME
from rsdistill.tasks.classification import PixelClassifier
from rsdistill.tasks.segmentation import SemanticSegmenter

TASKS = {"classification": (PixelClassifier, PixelClassificationData), "segmentation": (SemanticSegmenter, SegmentationData)}
SELECTED = {"classification": "oa", "segmentation": "miou"}  # the validation score a grid is searched on


def load_experiment(path, sections=("data", "models")) -> dict:
    try:
        config = yaml.safe_load(Path(path).read_text())
    except (OSError, yaml.YAMLError) as error:
        raise InputError(f"{path}: cannot read experiment config ({error})") from None
    for key in sections:
        if key not in (config or {}):
            raise InputError(f"{path}: experiment config needs a {key!r} section")
    return config


def inference_ms_per_1000(model: PixelClassifier, data: PixelClassificationData, pixels: int = 1024) -> float:
    """Wall time to classify 1,000 test pixels (batch 256, best of 3 passes, this machine's threads)."""
    dataset = data.dataset("test")
    patches = torch.stack([dataset[i]["image"] for i in range(min(pixels, len(dataset)))])
    model.eval()
    with torch.no_grad():
        model(patches[:8])
        return min(ms_per_1000_pixels(model, patches, 256) for _ in range(3))


def task_of(config: dict) -> str:
    task = config.get("task", "classification")
    if task not in TASKS:
        raise InputError(f"experiment task must be one of {sorted(TASKS)}, got {task!r}")
    return task


def experiment_recipes(config: dict, out_dir, seed: int) -> dict[str, dict]:
    """{run name: its recipe} for one seed; a ``grid`` model gives one run per point ("name (label)")."""
    recipes = {}
    for name, options in config["models"].items():
        for label, point in grid_points(name, options) or [(None, {})]:
            run_dir = run_dir_of(out_dir, name, label, seed)
            recipes[name if label is None else f"{name} ({label})"] = model_recipe(config, out_dir, seed, name, with_point(options, point), run_dir)
    return recipes


def model_recipe(config: dict, out_dir, seed: int, name: str, options: dict, run_dir: Path) -> dict:
    """One run's recipe: the experiment's data and trainer options, the model's options, with
    ``distill_from`` made teacher checkpoints of the same seed and ``{seed}`` filled in."""
    model_class, data_class = TASKS[task_of(config)]
    trainer_options = {"deterministic": True, **config.get("trainer", {})}
    options = dict(options)
    model_data = {**config["data"], "seed": seed, **options.pop("data", {})}  # e.g. {kd_unlabelled: N} for one student
    teacher = options.pop("distill_from", None)
    if teacher is not None:  # a model name, or a list of them (an ensemble teacher)
        checkpoints = [teacher_checkpoint(out_dir, t, seed) for t in ([teacher] if isinstance(teacher, str) else teacher)]
        options["teacher_ckpt"] = checkpoints[0] if isinstance(teacher, str) else checkpoints
    if "encoder" in options:  # a pretrained backbone per seed, e.g. .../seed_{seed}/encoder.safetensors
        options["encoder"] = options["encoder"].format(seed=seed)
    return make_recipe(model_class, data_class, options, model_data, trainer_options, run_dir, seed)


def teacher_checkpoint(out_dir, name: str, seed: int) -> str:
    """The checkpoint of model ``name``'s run of ``seed``: the one its record names once it has
    finished (a model with a ``grid``: the chosen point's), else where its run writes it."""
    run_dir = run_dir_of(out_dir, name, None, seed)
    finished = finished_record(run_dir)
    return finished["checkpoint"] if finished is not None else str(run_dir / LAST_NAME)


def fitted(name: str, recipe: dict, seed: int, callbacks: tuple = ()):
    """(trainer, model, data) of one recipe, fitted (resuming from its ``last.ckpt`` if present)."""
    cli = parse_recipe(recipe, where=f"experiment model {name!r}, seed {seed}")
    trainer, model, data = cli.trainer, cli.model, cli.datamodule
    trainer.callbacks.extend(callbacks)
    fit_resuming(trainer, model, data, recipe["run_dir"])
    return trainer, model, data


def fit_and_test(name: str, recipe: dict, seed: int, callbacks: tuple = (), cost_tile: int = 512) -> dict:
    """Fit one recipe's model (resuming from its ``last.ckpt`` if present), test it, return its record."""
    trainer, model, data = fitted(name, recipe, seed, callbacks)
    return tested(name, seed, recipe, trainer, model, data, cost_tile)


def tested(name: str, seed: int, recipe: dict, trainer, model, data, cost_tile: int, ckpt_path: str | None = None) -> dict:
    """The record of ``model`` (or of the weights of ``ckpt_path``) tested on the data's test split."""
    with restored_quietly():
        trainer.test(model, data, ckpt_path=ckpt_path, verbose=False, weights_only=True)
    record = {"model": name, "seed": seed, "params": model.count_parameters(), "checkpoint": str(Path(recipe["run_dir"]) / LAST_NAME)}
    return {**record, **RECORDS[model.kind](model, data, cost_tile)}


def run_settings(config: dict, options: dict, seed: int) -> dict:
    """What a run is (``runs.claim_settings``): the model's options, the data, the trainer, the seed."""
    return {"task": task_of(config), "model": options, "data": config["data"], "trainer": config.get("trainer", {}), "seed": seed}


def search_and_test(config: dict, out_dir: Path, seed: int, name: str, cost_tile: int, overwrite: bool = False) -> dict:
    """A ``grid`` model's run of ``seed`` (``experiments.grid``): every point fitted and validated
    (each point's ``val.json`` reused when present), the best on validation tested once."""
    options, metric = config["models"][name], config.get("select", SELECTED[task_of(config)])

    def validate(label: str, point_options: dict, run_dir: Path) -> dict:
        trainer, model, data = fitted(f"{name} ({label})", model_recipe(config, out_dir, seed, name, point_options, run_dir), seed)
        (scores,) = trainer.validate(model, data, verbose=False)
        return {k.split("/", 1)[1]: float(v) for k, v in scores.items()}

    best, validated = search_grid(name, options, out_dir, seed, metric, lambda o: run_settings(config, o, seed), validate, overwrite)
    recipe = model_recipe(config, out_dir, seed, name, with_point(options, best["point"]), run_dir_of(out_dir, name, best["label"], seed))
    cli = parse_recipe(recipe, where=f"experiment model {name!r} ({best['label']}), seed {seed}")
    record = tested(name, seed, recipe, cli.trainer, cli.model, cli.datamodule, cost_tile, ckpt_path=str(Path(recipe["run_dir"]) / LAST_NAME))
    return {**record, "chosen": best["label"], "select": metric, "grid": validated}


def classification_record(model: PixelClassifier, data: PixelClassificationData, cost_tile: int) -> dict:
    """Test scores, per-class scores and confusion, and ms per 1,000 test pixels."""
    return {**{k: model.scores["test"][k] for k in (*REPORTED["classification"], "per_class", "confusion")},
            "ms_per_1000_px": inference_ms_per_1000(model, data), "class_ids": data.class_ids}


def segmentation_record(model: SemanticSegmenter, data: SegmentationData, cost_tile: int) -> dict:
    """Test scores (with the last validation's, when the run validated), per-class IoU and the costs of one tile."""
    test = model.scores["test"]
    tile = torch.randn(1, model.preprocessing.channels, cost_tile, cost_tile)
    return {
        **{k: v for k, v in test.items() if k not in ("iou", "confusion")}, "iou": test["iou"], "confusion": test["confusion"],
        "val": {k: v for k, v in model.scores.get("val", {}).items() if k not in ("iou", "confusion")},
        "trained_params": sum(p.numel() for p in model.parameters() if p.requires_grad),
        "gflops": forward_flops(model, tile) / 1e9, "ms_per_tile": latency_ms(model, tile), "cost_tile": cost_tile,
    }


# the record of a tested run, by what its task is for (tasks.base ``kind``)
RECORDS = {"pixel_classification": classification_record, "segmentation": segmentation_record}


def diagnosed(config: dict, out_dir: Path, seed: int, teacher: str, student: str, records: dict) -> dict:
    """``evaluation.kd_diagnosis`` of one seed's teacher and student runs, on the split they were
    trained with; kept as ``diagnosis_<teacher>.json`` in the student's run folder and reused."""
    run_dir = Path(records[student, seed]["checkpoint"]).parent
    if (kept := finished_record(run_dir, f"diagnosis_{teacher}.json")) is not None:
        return kept
    recipe = model_recipe(config, out_dir, seed, student, config["models"][student], run_dir)
    data = TASKS["classification"][1](**recipe["data"]["init_args"])
    record = {"teacher": teacher, "student": student, "seed": seed,
              **diagnose_transfer(records[teacher, seed]["checkpoint"], records[student, seed]["checkpoint"], data)}
    write_json(run_dir / f"diagnosis_{teacher}.json", record)
    return record


def check_teachers(models: dict) -> None:
    """Every ``distill_from`` names a model declared before its student (models run in declared order)."""
    for position, (name, options) in enumerate(models.items()):
        teachers = options.get("distill_from") or []
        for teacher in [teachers] if isinstance(teachers, str) else teachers:
            if teacher not in list(models)[:position]:
                where = "declared after it" if teacher in models else "not one of the experiment's models"
                raise InputError(f"model {name!r}: distill_from {teacher!r} is {where}; a teacher must be declared before its students")


def check_prerequisites(models: dict, seeds) -> None:
    """Files a model needs that another command makes (a pretrained ``encoder``, an explicit
    ``teacher_ckpt``), checked for every seed before anything trains: the missing ones in one line."""
    from rsdistill.data.paths import resolve
    from rsdistill.models.pretrained import WEIGHTS

    missing = []
    for name, options in models.items():
        needed = [("encoder", options.get("encoder"))] + [("teacher_ckpt", p) for p in
                                                          ([options["teacher_ckpt"]] if isinstance(options.get("teacher_ckpt"), str)
                                                           else options.get("teacher_ckpt") or [])]
        for key, path in needed:
            for seed in seeds:
                if path is None or str(path).lower() in WEIGHTS:
                    continue
                file = str(path).format(seed=seed)
                if not Path(file).exists() and not resolve(file).exists():
                    missing.append(f"{name}.{key} {file}")
    if missing:
        raise InputError(f"missing before anything trains: {'; '.join(dict.fromkeys(missing))} (made by another run: "
                         "the experiment file's header names the command that makes each)")


def run_experiment(config: dict, out_dir, seeds: list[int] | None = None, models: list[str] | None = None, log=print,
                   overwrite: bool = False) -> list[dict]:
    """Fit and test every model (or those named in ``models``) for every seed; write results.json
    and results.md: mean ± std per model and the declared ``pairs`` compared seed by seed. A run
    folder is reused only for the same settings (``runs.claim_settings``; ``overwrite`` replaces it)."""
    out_dir = Path(out_dir)
    pairs = check_pairs(config.get("pairs"), config["models"])
    check_teachers(config["models"])
    for name, options in config["models"].items():  # a malformed grid fails before anything trains
        grid_points(name, options)
    diagnose = check_pairs(config.get("diagnose"), config["models"], "diagnose")
    if diagnose and task_of(config) != "classification":
        raise InputError("diagnose: teacher/student diagnosis is for pixel classifiers")
    config = {**config, "models": only(config["models"], models, "--models")}
    pairs = [pair for pair in pairs if set(pair) <= set(config["models"])]
    diagnose = [pair for pair in diagnose if set(pair) <= set(config["models"])]
    check_prerequisites(config["models"], seeds if seeds is not None else config.get("seeds", [0, 1, 2]))
    out_dir.mkdir(parents=True, exist_ok=True)
    records, task, cost_tile = [], task_of(config), config.get("cost_tile", 512)
    for seed in seeds if seeds is not None else config.get("seeds", [0, 1, 2]):
        for name, options in config["models"].items():  # in declared order: teachers before their students
            run_dir = run_dir_of(out_dir, name, None, seed)

            def compute() -> dict:  # run_once calls it at once, inside this iteration
                if "grid" in options:
                    return search_and_test(config, out_dir, seed, name, cost_tile, overwrite)
                return fit_and_test(name, model_recipe(config, out_dir, seed, name, options, run_dir), seed, cost_tile=cost_tile)

            record, fresh = run_once(run_dir, run_settings(config, options, seed), compute, overwrite)
            records.append(record)
            if fresh:
                log(f"seed {seed} {name}: " + " ".join(f"{k} {record[k]:.4f}" for k in REPORTED[task]) + f" params {record['params']}"
                    + (f" (chosen on validation: {record['chosen']})" if "chosen" in record else ""))
        # every model of a seed sees the same split; its runs saved it, keep one copy per seed beside the results
        first_split = Path(records[-1]["checkpoint"]).parent / "split.json"
        if first_split.is_file():
            shutil.copyfile(first_split, out_dir / f"split_seed_{seed}.json")
    by_run = {(r["model"], r["seed"]): r for r in records}
    results = {"runs": records, "summary": summarise(records), "paired": paired_differences(records, pairs, REPORTED[task]),
               # seed by seed, so that pairs sharing a teacher follow each other (kd_diagnosis loads it once)
               "diagnosis": [diagnosed(config, out_dir, seed, teacher, student, by_run) for seed in dict.fromkeys(s for _, s in by_run)
                             for teacher, student in diagnose if (teacher, seed) in by_run and (student, seed) in by_run]}
    write_json(out_dir / "results.json", results)
    (out_dir / "results.md").write_text(results_markdown(results))
    return records
