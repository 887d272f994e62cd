"""What each data verb does with its parsed arguments (printing only; the work lives in the library)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from rsdistill.data.paths import data_file
from rsdistill.data.statistics import band_statistics
from rsdistill.errors import InputError
from rsdistill.io.describe import describe_file
from rsdistill.io.readers import open_scene, read_scene
from rsdistill.spectral import band_alignment, describe_alignment, get_sensor, sensor_names
from rsdistill.spectral.alignment import uncovered_bands
from rsdistill.spectral.sensors import Sensor


def flag_or_argument(flag, argument, name: str, required: bool = True):
    """One value given as ``--name VALUE`` (every verb's spelling) or as the first argument (kept for older commands)."""
    if flag is not None and argument is not None and flag != argument:
        raise InputError(f"--{name} {flag} and the argument {argument} disagree; give the {name} once")
    if flag is None and argument is None and required:
        raise InputError(f"give the {name}: --{name} PATH")
    return flag if flag is not None else argument


def info(args) -> None:
    print("\n".join(describe_file(data_file(args.path), key=args.key, time_index=args.time_index, sensor=args.sensor)))


def sensors(args) -> None:
    for name in sensor_names():
        sensor = get_sensor(name)
        centres = sensor.centers
        print(f"{name:10} {len(sensor):4d} bands  {centres.min():7.1f}-{centres.max():7.1f} nm  "
              f"{int((~sensor.valid).sum())} flagged bad  {sensor.description}")


def weights(args) -> None:
    from rsdistill.models import pretrained

    if args.download:
        print(f"{args.download}: {pretrained.download(args.download)}")
        return
    print(f"{'name':<20} {'params':>8} {'patch':>5}  {'licence':<13} {'bands':<44} here")
    for entry in pretrained.WEIGHTS.values():
        folder = pretrained.present(entry.name)
        if folder is not None:
            try:
                pretrained.locate(entry.name)
                here = str(folder)
            except InputError as error:
                here = f"BROKEN: {error}"
        else:
            here = "not here (--download)"
        bands = ",".join(entry.bands)
        print(f"{entry.name:<20} {entry.params:>8} {entry.patch_size:>5}  {entry.licence:<13} {bands[:44]:<44} {here}")
    print("\nlooked up in: " + ", ".join(str(root) for root in pretrained.search_roots()))


def _sensor_or_scene(name: str) -> Sensor:
    """A registered sensor, or a scene file (by the data-root rule) with its own bands."""
    if name.lower() in sensor_names() or not Path(name).suffix:
        return get_sensor(name)
    path = data_file(name)
    source = open_scene(path)
    if source.meta.wavelengths is None:
        source.read().require_wavelengths()
    return Sensor.from_wavelengths(path.name, source.meta.wavelengths, source.meta.fwhm, source.meta.bad_bands)


def align(args) -> None:
    source, target = _sensor_or_scene(args.source), _sensor_or_scene(args.target)
    weights = band_alignment(source, target, args.method, uncovered="zero")
    print(f"{source.name} ({len(source)} bands) -> {target.name} ({len(target)} bands), method {args.method}")
    skipped = uncovered_bands(source, target, args.method)
    if len(skipped) == len(target):
        raise InputError(f"no band of {target.name} is covered by a valid band of {source.name}")
    if skipped:
        print(f"not covered by {source.name}, skipped: {', '.join(skipped)}")
    print("\n".join(describe_alignment(weights, source, target)))


def stats(args) -> None:
    result = band_statistics([data_file(p) for p in args.paths], tile=args.tile, key=args.key, time_index=args.time_index)
    out = result.save(args.out)
    valid = np.array(result.count)
    print(f"{result.bands} bands, {int(valid.max())} valid pixels, {len(result.bad_bands)} bad bands -> {out}")


def quickstart(args) -> None:
    from rsdistill.evaluation.paired import paired_differences
    from rsdistill.experiments.quickstart import PAIR, run_quickstart, student_sensor_of
    from rsdistill.experiments.tables import summarise

    scene = flag_or_argument(args.scene, args.scene_argument, "scene", required=False)
    student_sensor = student_sensor_of(scene, args.student_sensor)
    records = run_quickstart(scene, args.labels, args.sensor, args.seeds, args.epochs, args.out, student_sensor, args.overwrite)
    print(f"\n{'model':<11} {'params':>9} {'OA':>7} {'kappa':>7} {'ms/1000 px':>11}   bands")
    for row in summarise(records):
        bands = student_sensor if row["model"] != "teacher" and student_sensor else "all of the scene's"
        print(f"{row['model']:<11} {row['params']:>9,} {100 * row['oa']['mean']:>6.2f}% "
              f"{100 * row['kappa']['mean']:>6.2f}% {row['ms_per_1000_px']['mean']:>11.1f}   {bands}")
    print(f"\n{quickstart_verdict(paired_differences(records, [PAIR], ['oa'])[0])}")
    print(f"split, checkpoints and results.json/results.md in {args.out}")


def quickstart_verdict(row: dict) -> str:
    """The paired OA difference student_kd − student in one honest line, whatever its sign."""
    differences = ", ".join(f"{100 * d:+.2f}" for d in row["differences"])
    line = f"KD − no KD, OA points per seed: {differences}"
    if len(row["differences"]) < 3:
        return line + " (fewer than 3 seeds: no test; --seeds 0 1 2 gives one)"
    p = "–" if row["t_p"] is None else f"{row['t_p']:.3f}"
    return (line + f"; mean {100 * row['mean']:+.2f} ± {100 * row['std']:.2f}, ahead on {row['ahead']} of "
            f"{len(row['differences'])} seeds, paired t p {p}")


def pretrain_experiment(args) -> None:
    from rsdistill.experiments.curve import at_points, run_pretrain_sweep
    from rsdistill.experiments.experiment import load_experiment
    from rsdistill.experiments.pretrain import run_pretrain_experiment

    config = at_points(load_experiment(args.config, sections=("data", "recipes")), args.points)
    config["trainer"] = {**config.get("trainer", {}), **args.trainer}  # --trainer.KEY VALUE, every run
    if "sweep" in config:  # one experiment per value of a data option, and the curve of the probe over them
        run_pretrain_sweep(config, args.out, args.seeds, overwrite=args.overwrite, recipes=args.recipes)
        print((Path(args.out) / "curve.md").read_text())
        return
    run_pretrain_experiment(config, args.out, args.seeds, overwrite=args.overwrite, recipes=args.recipes)
    print((Path(args.out) / "results.md").read_text())


def experiment(args) -> None:
    from rsdistill.experiments.cross_validation import folds_of, run_cross_validation
    from rsdistill.experiments.curve import at_points, run_sweep
    from rsdistill.experiments.experiment import load_experiment, run_experiment

    config = at_points(load_experiment(args.config), args.points)
    config["trainer"] = {**config.get("trainer", {}), **args.trainer}  # --trainer.KEY VALUE, every run
    if "sweep" in config:  # one experiment (cross-validated or not) per value of a data option, and the curve over them
        run_sweep(config, args.out, args.seeds, args.models, overwrite=args.overwrite)
        print((Path(args.out) / "curve.md").read_text())
        return
    if folds_of(config):  # spatial cross-validation: every fold, pooled and paired per (fold, seed)
        run_cross_validation(config, args.out, args.seeds, args.models, overwrite=args.overwrite)
        print((Path(args.out) / "results.md").read_text())
        return
    run_experiment(config, args.out, args.seeds, args.models, overwrite=args.overwrite)
    print((Path(args.out) / "results.md").read_text())


def export(args) -> None:
    from rsdistill.deploy.onnx_export import deployable, export_onnx, int8_scheme
    from rsdistill.deploy.parity import markdown, parity_failure, parity_report, recipe_datamodule, report_files, validation_batches
    from rsdistill.errors import InputError
    from rsdistill.files import write_json

    ckpt = Path(flag_or_argument(args.ckpt, args.ckpt_argument, "ckpt"))
    model = deployable(ckpt)
    out = Path(args.out) if args.out else ckpt.with_name(f"{ckpt.stem}.{args.precision}.onnx")
    scheme = (int8_scheme(model.module) if args.int8 == "auto" else args.int8) if args.precision == "int8" else None
    needs_data = args.samples > 0 or scheme == "static"
    datamodule = recipe_datamodule(args.data or ckpt.parent / "config.yaml") if needs_data else None
    calibration = [raw for raw, _ in validation_batches(model, datamodule, args.calibration, "train")] if scheme == "static" else None
    report_json, report_md = report_files(out)
    for stale in (report_json, report_md):  # a check of the file this one replaces
        stale.unlink(missing_ok=True)
    export_onnx(model, out, args.precision, calibration, scheme or "auto")
    print(f"{out}: {model.kind}, {args.precision}{f' ({scheme})' if scheme else ''}, input (N, {', '.join(str(n) for n in model.input_shape)}) raw values")
    if args.samples > 0:
        report = parity_report(model, out, validation_batches(model, datamodule, args.samples, args.subset), args.threads)
        report["subset"] = args.subset
        write_json(report_json, report)
        report_md.write_text(markdown(report))
        print(markdown(report))
        failure = parity_failure(report, args.min_agreement)
        if failure:  # nothing left to deploy by mistake; the report stays
            out.unlink()
            raise InputError(f"{out}: {failure}; the file is removed, its parity report kept")


def benchmark(args) -> None:
    from rsdistill.evaluation.benchmark import benchmark as run
    from rsdistill.evaluation.benchmark import markdown
    from rsdistill.files import write_json

    for option in ("threads", "rounds", "pixels"):
        if getattr(args, option) < 1:
            raise InputError(f"--{option} must be a positive integer, got {getattr(args, option)}")
    rows = run(args.models, args.threads, args.rounds, args.pixels, args.memory)
    table = markdown(rows)
    if args.out:
        write_json(args.out, rows)
        Path(args.out).with_suffix(".md").write_text(table)
    print(table)


def map(args) -> None:  # noqa: A001 - the verb's name
    from rsdistill.inference.mapping import PatchClassifier, map_scene_file, segment_scene_file, write_class_png
    from rsdistill.io.readers import open_scene

    out = Path(args.out)
    model = _map_model(args.ckpt, args.engine, out)
    try:
        class_ids, names, legend = model.map_classes()
    except InputError as error:
        raise InputError(f"{args.ckpt}: {error}") from None
    source = open_scene(data_file(args.scene), key=args.key, sensor=args.sensor, time_index=args.time_index)
    if model.kind == "segmentation":  # blended sliding windows from the file, strip by strip into the GeoTIFF
        result = segment_scene_file(model, source.with_scene_bad_bands(), out, args.tile, args.overlap, args.blend)
    else:  # a pixel classifier (PyTorch or ONNX), block by block from the file into the GeoTIFF
        result = map_scene_file(PatchClassifier(model, args.batch_size), source, out, args.block)
    class_map, rgb, step, counts = result["classes"], result["rgb"], result["step"], result["counts"]
    shape = (source.height, source.width)
    timing = f" in {result['seconds']:.1f} s ({result['pixels_per_s']:,.0f} px/s)"
    reference = reference_codes(legend, args.reference, class_ids, shape)[::step, ::step] if args.reference else None
    png = write_class_png(out.with_suffix(".png"), rgb, class_map, class_ids, names, reference, Path(args.scene).name)
    labels = dict(zip(class_ids, names))
    print(f"{out} and {png}{timing}: " + ", ".join(f"{labels[int(i)]}: {n} px" for i, n in sorted(counts.items())))


def _map_model(path, engine: str, out: Path):
    """The model ``map`` runs: a task (PyTorch) or an ``OnnxModel`` (an .onnx file, or a checkpoint
    exported beside the map when ``engine`` is onnx)."""
    from rsdistill.deploy.onnx_export import deployable, export_onnx
    from rsdistill.deploy.runtime import OnnxModel
    from rsdistill.tasks.loading import load_task

    if Path(path).suffix == ".onnx":
        if engine == "torch":
            raise InputError(f"{path}: an ONNX file runs in onnxruntime; give its checkpoint for --engine torch")
        return OnnxModel(path)
    if engine != "onnx":
        return load_task(path)
    return OnnxModel(export_onnx(deployable(path), out.with_suffix(".onnx")))


def reference_codes(legend, mask, class_ids: list[int], shape) -> np.ndarray:
    """A reference mask in the map's codes (0 = unlabelled), read through the model's ``legend``."""
    from rsdistill.io.masks import IGNORE_INDEX, read_mask

    indices, _ = read_mask(mask, legend)
    if indices.shape != tuple(shape):
        raise InputError(f"{mask}: reference is {indices.shape[0]}×{indices.shape[1]} but the scene is {shape[0]}×{shape[1]}")
    codes = np.asarray(class_ids)[np.minimum(indices, len(class_ids) - 1)]
    return np.where(indices == IGNORE_INDEX, 0, codes).astype(np.uint8)


def score_tiles(args) -> None:
    import glob
    import json

    from rsdistill.data.paths import read_tile_list, resolve
    from rsdistill.files import write_json
    from rsdistill.inference.tile_scores import score_tiles as score
    from rsdistill.inference.tile_scores import summarise_scores
    from rsdistill.tasks.loading import load_task

    checkpoints = sorted(glob.glob(args.ckpt)) or [args.ckpt]  # a glob (e.g. one model's seeds) or one path
    pairs = read_tile_list(resolve(args.tiles))
    runs = {path: score(load_task(path), pairs, args.batch_size, args.tile, args.overlap) for path in checkpoints}
    result = {"runs": runs, "summary": summarise_scores(list(runs.values()))}
    if args.out:
        write_json(args.out, result)
    for path, scores in runs.items():
        print(path, " ".join(f"{k} {scores[k]:.4f}" for k in ("miou", "oa", "mf1", "specdeepmap_iou")))
    print(json.dumps(result["summary"], indent=1))


def probe(args) -> None:
    from rsdistill.data.paths import read_tile_list, resolve
    from rsdistill.models.registry import load_encoder

    encoder = load_encoder(args.encoder, trust_pickle=args.trust_pickle, **(args.encoder_options or {}))
    from rsdistill.experiments.pretrain import probe_accuracy, probe_tiles  # Lightning's import (seconds) after the encoder is known good

    tiles = probe_tiles({"train": args.train_list, "test": args.test_list}, encoder, align=args.align, scale=args.scale)
    if args.align is not None:  # the encoder as the tiles' sensor feeds it (an encoder with band groups masks the uncovered ones)
        first = read_scene(read_tile_list(resolve(args.train_list))[0][0])
        encoder = encoder.for_scene(first, args.align, args.scale)
    print(f"linear-probe OA {probe_accuracy(encoder.encoder, tiles, args.seed)['test']:.4f} ({args.encoder}, test tiles {args.test_list})")


def teacher_knowledge(args) -> None:
    import yaml

    from rsdistill.evaluation.teacher_knowledge import markdown, run_teacher_knowledge
    from rsdistill.files import write_json

    try:
        config = yaml.safe_load(Path(args.config).read_text())
    except (OSError, yaml.YAMLError) as error:
        raise InputError(f"{args.config}: not a readable YAML file ({error})") from None
    if args.datasets:
        unknown = [name for name in args.datasets if name not in config.get("datasets", {})]
        if unknown:
            raise InputError(f"{args.config}: no dataset {unknown[0]!r}; it declares {', '.join(config.get('datasets', {}))}")
        config["datasets"] = {name: config["datasets"][name] for name in args.datasets}
    results = run_teacher_knowledge(config)
    out = Path(args.out)
    write_json(out / "results.json", {"config": config, "results": results})
    (out / "results.md").write_text(markdown(results) + "\n")
    print(markdown(results))


def unmixing_eval(args) -> None:
    import inspect
    import json

    from rsdistill.errors import InputError
    from rsdistill.experiments.unmixing import load_unmixing_scene, paired_against, paired_comparisons, reference_check, results_markdown, run_unmixing_eval
    from rsdistill.files import write_json

    options = {"reference": args.reference, "key": args.key, "scale": args.scale, "endmembers_key": args.endmembers_key,
               "abundances_key": args.abundances_key, "pixel_order": args.pixel_order, "names": args.names}
    defaults = {k: p.default for k, p in inspect.signature(load_unmixing_scene).parameters.items() if k in options}
    if str(args.scene).endswith((".yaml", ".yml")):
        given = [k for k, v in options.items() if v != defaults[k]]
        if given:
            raise InputError(f"{args.scene}: a scene YAML holds the scene's options; put {', '.join(given)} in it, not on the command line")
        scene = load_unmixing_scene(args.scene)
    else:
        scene = load_unmixing_scene(args.scene, **options)
    other = Path(args.against) / "results.json" if args.against else None
    if other is not None and not other.is_file():  # before anything trains
        raise InputError(f"--against {args.against}: no results.json there (an unmixing-eval --out folder)")
    out = Path(args.out)
    rows = run_unmixing_eval(scene, args.recipe, args.seeds, out, args.endmembers, args.epochs, args.init, args.overwrite)
    pairs = paired_comparisons(rows, args.init)
    if other is not None:
        pairs += paired_against(rows, json.loads(other.read_text())["runs"], str(args.recipe), args.against)
    results = {"runs": rows, "paired": pairs, "reference": reference_check(scene)}
    write_json(out / "results.json", results)
    (out / "results.md").write_text(results_markdown(results))
    print(results_markdown(results), end="")


def tables(args) -> None:
    from rsdistill.experiments.results_files import render_files

    print(render_files(args.results))


def show(args) -> None:
    from rsdistill.figures import scene_figure

    source = open_scene(data_file(args.scene), key=args.key, sensor=args.sensor, time_index=args.time_index, empty_bands="bad")
    if args.longest < 16:
        raise InputError(f"--longest {args.longest}: the preview needs at least 16 pixels on its longer side")
    scene, step = source.preview(args.longest)
    labels, names = None, None
    if args.labels is not None:
        labels, names = _labels_for_show(args.labels, args.legend, (source.height, source.width))
        labels = labels[::step, ::step]
    elif args.legend is not None:
        raise InputError("--legend names the classes of --labels; give the label map too")
    out = Path(args.out) if args.out else Path(Path(args.scene).name.split(".")[0] + ".png")
    title = f"{Path(args.scene).name}: {source.height}×{source.width}, {source.bands} bands"
    title += f" (shown at 1 pixel in {step} along each side)" if step > 1 else ""
    scene_figure(scene, out, labels, names, title)
    wavelengths = scene.wavelengths
    print(title)
    print(f"wavelengths: {wavelengths.min():.1f}-{wavelengths.max():.1f} nm" if wavelengths is not None
          else "wavelengths: none in the file (--sensor gives them)")
    print(f"no data: {100 * (1 - scene.valid.mean()):.1f} % of the pixels shown; bad bands: {int(scene.bad_bands.sum())}")
    if labels is not None:
        ids, counts = np.unique(labels[labels > 0], return_counts=True)
        print("classes (pixels shown): " + ", ".join(f"{(names or {}).get(int(i), f'class {i}')} {c}" for i, c in zip(ids, counts)))
    print(f"wrote {out}")


def _labels_for_show(path, legend_file, shape) -> tuple[np.ndarray, dict | None]:
    """(H, W) class ids (0 = unlabelled) and {id: name}: ids as stored, or through a legend YAML (its
    own ``classes``/``ignore``, or a segmentation recipe's ``data.init_args.legend``: class k is id k + 1)."""
    import yaml

    from rsdistill.io.masks import IGNORE_INDEX, Legend, read_mask
    from rsdistill.io.readers import read_label_map

    if legend_file is None:
        labels = read_label_map(data_file(path)).labels
    else:
        try:
            doc = yaml.safe_load(Path(legend_file).read_text()) or {}
        except (OSError, yaml.YAMLError) as error:
            raise InputError(f"{legend_file}: cannot read the legend ({error})") from None
        doc = doc.get("data", {}).get("init_args", {}).get("legend", doc) if "classes" not in doc else doc
        if "classes" not in doc:
            raise InputError(f"{legend_file}: no legend (a 'classes' list, or a recipe with data.init_args.legend)")
        legend = Legend.parse(doc["classes"], doc.get("ignore"), where=str(legend_file))
        indices, _ = read_mask(data_file(path), legend)
        labels = np.where(indices == IGNORE_INDEX, 0, indices.astype(np.int64) + 1)
    if labels.shape != tuple(shape):
        raise InputError(f"{path} is {labels.shape[0]}×{labels.shape[1]} but the scene is {shape[0]}×{shape[1]}")
    names = None if legend_file is None else {k + 1: name for k, name in enumerate(legend.names)}
    return labels, names
