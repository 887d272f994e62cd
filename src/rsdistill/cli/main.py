"""``rsdistill``: one entry point, one verb per job.

Data verbs (``info``, ``sensors``, ``align``, ``stats``) and the ``quickstart`` are jsonargparse
subcommands. Training verbs (``fit``, ``validate``, ``test``, ``predict``) are added by the tasks
through LightningCLI, with the same ``-c recipe.yaml`` conventions.
"""

from __future__ import annotations

import os
import sys
from typing import Optional

from jsonargparse import ArgumentParser

from rsdistill import __version__
from rsdistill.console import quiet
from rsdistill.errors import InputError


def _info_parser() -> ArgumentParser:
    parser = ArgumentParser(description="Describe a scene or label file: format, shape, dtype, value range, "
                            "nodata, bad bands, wavelengths, CRS and pixel size, and classes with pixel counts.")
    parser.add_argument("path", help=".mat (v5/v7.3), ENVI (.hdr or data file), GeoTIFF/PNG/JPEG, or .npy")
    parser.add_argument("--key", default=None, help=".mat variable to read (found automatically otherwise)")
    parser.add_argument("--time_index", "--time-index", type=int, default=None, help="acquisition of a (T,H,W,B) .npy stack")
    parser.add_argument("--sensor", default=None, help="registered sensor giving wavelengths to a file that has none")
    return parser


def _show_parser() -> ArgumentParser:
    parser = ArgumentParser(description="A quick look at a scene as a PNG: true colour picked by wavelength (or three bands, "
                            "said so), no-data pixels, the label map with class names, and spectra against wavelength "
                            "(class means with labels, else a few random pixels). A large scene is previewed at every "
                            "n-th pixel, read window by window.")
    parser.add_argument("--scene", required=True, help="any reader format (.mat, ENVI, GeoTIFF/PNG/JPEG, .npy, band folder)")
    parser.add_argument("--labels", default=None, help="its label map (0 = unlabelled)")
    parser.add_argument("--legend", default=None, help="a segmentation legend YAML naming the classes (name, id or colour)")
    parser.add_argument("--out", default=None, help="the PNG (default: <scene name>.png in the current folder)")
    parser.add_argument("--key", default=None, help=".mat variable holding the cube")
    parser.add_argument("--sensor", default=None, help="registered sensor giving wavelengths to a file that has none")
    parser.add_argument("--time_index", "--time-index", type=Optional[int], default=None, help="acquisition of a .npy stack")
    parser.add_argument("--longest", type=int, default=1024, help="longest side of the preview in pixels")
    return parser


def _weights_parser() -> ArgumentParser:
    parser = ArgumentParser(description="List the pretrained weights rsdistill knows by name (load_encoder(NAME), encoder: NAME "
                            "in recipes): input bands, licence, source, and where each is found here ($RSDISTILL_WEIGHTS, the "
                            "user cache, the data root's weights/), every file checked against its sha256.")
    parser.add_argument("--download", default=None, help="fetch this entry's files from their source into the user cache "
                        "(each checked against its sha256 where the publisher gives one)")
    return parser


def _sensors_parser() -> ArgumentParser:
    return ArgumentParser(description="List the registered sensors and their bands.")


def _align_parser() -> ArgumentParser:
    parser = ArgumentParser(description="Show which source bands make each target band (band_alignment).")
    parser.add_argument("--source", required=True, help="sensor name or a scene file (its own bands and bad-band list)")
    parser.add_argument("--target", required=True, help="sensor name or a scene file")
    parser.add_argument("--method", default="mean", choices=["mean", "srf", "nearest"], help="how to fill the matrix")
    return parser


def _stats_parser() -> ArgumentParser:
    parser = ArgumentParser(description="Per-band mean/std over the valid pixels of one or more files, "
                            "computed in one streaming pass; written as JSON for normalisation.")
    parser.add_argument("paths", nargs="+", help="scene files with the same band count")
    parser.add_argument("--out", required=True, help="output JSON file")
    parser.add_argument("--tile", type=int, default=256, help="tile size of the streaming pass (memory bound)")
    parser.add_argument("--key", default=None, help=".mat variable holding the cube")
    parser.add_argument("--time_index", "--time-index", type=int, default=None, help="acquisition of a (T,H,W,B) .npy stack")
    return parser


def _quickstart_parser() -> ArgumentParser:
    parser = ArgumentParser(description="The main job, in about a minute: the distillation regime that paid under spatial "
                            "cross-validation (docs/results-distillation.md) — a teacher about 11x larger on every band, a compact "
                            "student on a cheaper sensor's bands, 10 labels per class, KD on unlabelled pixels — against "
                            "the same student without KD, paired per seed (params, OA, kappa, ms per 1,000 pixels). Uses "
                            "the embedded synthetic EnMAP scene unless a scene is named.")
    parser.add_argument("--scene", default=None, help="a scene file; the synthetic scene when omitted (also accepted "
                        "as the first argument)")
    parser.add_argument("scene_argument", nargs="?", default=None, help="the scene, as --scene")
    parser.add_argument("--labels", default=None, help="label map of the scene (0 = unlabelled)")
    parser.add_argument("--sensor", default="enmap", help="sensor of the synthetic scene")
    parser.add_argument("--student-sensor", default=None, help="the student's bands, made from the scene's by spectral "
                        "response (a registered sensor, see rsdistill sensors); 'none': the scene's own bands. Default: "
                        "sentinel2 for the synthetic scene, the scene's own bands for yours")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="seeds (split, label draw, training), "
                        "each a paired unit; three or more give a paired t-test")
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--out", default="runs/quickstart", help="where checkpoints, split and results go")
    parser.add_argument("--overwrite", type=bool, default=False, help="replace runs in --out made with other settings "
                        "(without it, a run folder is reused only for the same settings and refused otherwise)")
    return parser


def _map_parser() -> ArgumentParser:
    parser = ArgumentParser(description="Map a whole scene with a trained checkpoint: a pixel classifier classifies every "
                            "valid pixel block by block from the file (any scene size), a segmentation model segments it in "
                            "sliding windows; writes a GeoTIFF class map (scene CRS/transform, tiled, colour table, 0 = nodata) "
                            "and a PNG with a legend of class names.")
    parser.add_argument("--ckpt", required=True, help="a PixelClassifier or SemanticSegmenter checkpoint (e.g. runs/.../last.ckpt), "
                        "or a pixel classifier's ONNX export (then onnxruntime classifies)")
    parser.add_argument("--scene", required=True, help="scene file with the checkpoint's bands")
    parser.add_argument("--out", required=True, help="output GeoTIFF (the PNG goes next to it)")
    parser.add_argument("--key", default=None, help=".mat variable holding the cube")
    parser.add_argument("--sensor", default=None, help="sensor giving wavelengths to a file that has none")
    parser.add_argument("--time_index", "--time-index", type=Optional[int], default=None, help="acquisition of a .npy stack")
    parser.add_argument("--batch_size", "--batch-size", type=int, default=512, help="pixels per batch (pixel classifiers)")
    parser.add_argument("--engine", default="auto", choices=["auto", "torch", "onnx"],
                        help="pixel classifiers: who classifies; auto: onnxruntime for an .onnx file, PyTorch for a checkpoint "
                        "(onnx with a checkpoint exports it to fp32 ONNX first)")
    parser.add_argument("--block", type=int, default=256, help="pixel classifiers: the scene is read and mapped in blocks of "
                        "this many pixels a side (memory grows with the block, not the scene)")
    parser.add_argument("--tile", type=int, default=256, help="window size in pixels (segmentation)")
    parser.add_argument("--overlap", type=int, default=64, help="overlap of neighbouring windows in pixels (segmentation)")
    parser.add_argument("--blend", default="cosine", choices=["uniform", "cosine"], help="how overlapping windows' scores are weighted")
    parser.add_argument("--reference", default=None, help="the scene's reference mask: the PNG shows it beside the prediction")
    return parser


def _export_parser() -> ArgumentParser:
    parser = ArgumentParser(description="Export a trained model to ONNX (raw band values in, logits or features out; "
                            "its card — bands, wavelengths, normalisation, classes — in the metadata) and check it against "
                            "PyTorch on real validation inputs: max |Δ|, argmax agreement, OA or mIoU of both "
                            "(<out>.parity.json and .md).")
    parser.add_argument("--ckpt", default=None, help="a task checkpoint (classifier, segmenter, MAE, Mask-CDKD) or an encoder "
                        ".safetensors (also accepted as the first argument)")
    parser.add_argument("ckpt_argument", nargs="?", default=None, help="the checkpoint, as --ckpt")
    parser.add_argument("--format", default="onnx", choices=["onnx"], help="export format")
    parser.add_argument("--precision", default="fp32", choices=["fp32", "fp16", "int8"])
    parser.add_argument("--int8", default="auto", choices=["auto", "dynamic", "static"],
                        help="int8 scheme: dynamic (weights) or static QDQ (calibrated); auto: static for convolution-heavy models")
    parser.add_argument("--calibration", type=int, default=256, help="training inputs that calibrate static int8")
    parser.add_argument("--data", default=None, help="recipe whose data gives the parity and calibration inputs "
                        "(default: config.yaml beside the checkpoint)")
    parser.add_argument("--samples", type=int, default=1024, help="inputs for the parity check (0: no check)")
    parser.add_argument("--subset", default="val", choices=["val", "test"], help="the data's subset the parity check runs on")
    parser.add_argument("--threads", type=Optional[int], default=None, help="onnxruntime threads in the parity check")
    parser.add_argument("--min_agreement", "--min-agreement", type=float, default=0.9,
                        help="the export fails (and its file is removed) when argmax agreement with PyTorch (encoders: "
                        "the lowest feature cosine) on the parity inputs is below this")
    parser.add_argument("--out", default=None, help="the ONNX file (default: <checkpoint stem>.<precision>.onnx beside it)")
    return parser


def _benchmark_parser() -> ArgumentParser:
    parser = ArgumentParser(description="Params, FLOPs (attention and selective scans counted), latency and peak memory of "
                            "checkpoints (PyTorch) and ONNX exports (onnxruntime), timed in interleaved rounds at fixed threads "
                            "(median and min–max); per 1,000 pixels for pixel classifiers, per tile otherwise. An export's parity check "
                            "(<file>.parity.json from rsdistill export) adds what each engine keeps: OA or mIoU, argmax agreement, max |Δ|.")
    parser.add_argument("models", nargs="+", help="checkpoints (.ckpt, encoder .safetensors), ONNX files from rsdistill export, "
                        "and/or pretrained weights by name (NAME or NAME:pP for patch size P, e.g. galileo-nano:p4; one 64² chip a pass)")
    parser.add_argument("--threads", type=int, default=1, help="torch, numba and onnxruntime threads")
    parser.add_argument("--rounds", type=int, default=7, help="interleaved timing rounds")
    parser.add_argument("--pixels", type=int, default=1024, help="patches per round for pixel classifiers")
    parser.add_argument("--memory", type=bool, default=True, help="measure peak memory in a fresh process per model")
    parser.add_argument("--out", default=None, help="write the rows as JSON here (and the table as .md beside it)")
    return parser


def _score_tiles_parser() -> ArgumentParser:
    parser = ArgumentParser(description="Score a pixel classifier's or a segmenter's class maps of labelled tiles: mIoU, OA, "
                            "mF1, per-class IoU and SpecDeepMap's per-batch IoU (per checkpoint, and mean ± std; JSON with --out).")
    parser.add_argument("--ckpt", required=True, help="a PixelClassifier or SemanticSegmenter checkpoint, or a glob of several "
                        "(e.g. runs/x/seed_*/last.ckpt: mean ± std over them)")
    parser.add_argument("--tiles", required=True, help="tile list CSV (image,mask), relative paths under the data root")
    parser.add_argument("--batch_size", "--batch-size", type=int, default=2, help="tiles per batch of SpecDeepMap's IoU (its trainer's)")
    parser.add_argument("--tile", type=int, default=256, help="window size in pixels (segmentation)")
    parser.add_argument("--overlap", type=int, default=64, help="overlap of neighbouring windows in pixels (segmentation)")
    parser.add_argument("--out", default=None, help="write the scores as JSON here")
    return parser


def _tables_parser() -> ArgumentParser:
    parser = ArgumentParser(description="Print the Markdown tables of results files, rendered from the files alone: results.json (or a sweep's curve.json) of "
                            "experiment, pretrain-experiment, unmixing-eval and teacher-knowledge, and benchmark --out (e.g. the "
                            "committed docs/results/*.json, to check a published table without re-running it).")
    parser.add_argument("results", nargs="+", help="results JSON files")
    return parser


def _probe_parser() -> ArgumentParser:
    parser = ArgumentParser(description="Linear probe: freeze a pretrained encoder, train a linear classifier on the "
                            "labelled pixels of the training tiles, report overall accuracy on the test tiles.")
    parser.add_argument("--encoder", required=True, help="encoder.safetensors (its .json card next to it), a Prithvi checkpoint, "
                        "a Galileo folder or a weights name (rsdistill weights, e.g. galileo-nano)")
    parser.add_argument("--encoder_options", "--encoder-options", type=Optional[dict], default=None,
                        help="load options of a Galileo encoder, e.g. '{patch_size: 1, gsd_m: 30}'")
    parser.add_argument("--align", choices=["mean", "srf", "nearest"], default=None,
                        help="aggregate the probe tiles into the encoder's bands (an encoder of another sensor, e.g. a HyperKD teacher)")
    parser.add_argument("--scale", type=float, default=1.0, help="with --align: factor from the tiles' units to the encoder's")
    parser.add_argument("--trust_pickle", "--trust-pickle", action="store_true", help="allow unpickling a checkpoint that is not plain tensors")
    parser.add_argument("--train_list", "--train-list", default="enmap_potsdam_specdeepmap/train_files.csv")
    parser.add_argument("--test_list", "--test-list", default="enmap_potsdam_specdeepmap/test_files.csv")
    parser.add_argument("--seed", type=int, default=0)
    return parser


def _teacher_knowledge_parser() -> ArgumentParser:
    parser = ArgumentParser(description="What pretrained encoders know before anyone distils from them: linear-probe and k-NN "
                            "scores of their frozen features against the raw bands and a randomly initialised twin, on chips "
                            "(stratified folds), a scene (buffered spatial blocks) and tile lists; results.json and results.md.")
    parser.add_argument("-c", "--config", required=True, help="e.g. configs/galileo/teacher_knowledge.yaml")
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--datasets", type=Optional[list[str]], default=None, help="run only these of the config's datasets, "
                        "e.g. '[slovenia]' (default: all)")
    return parser


def _unmixing_parser() -> ArgumentParser:
    parser = ArgumentParser(description="Unmix a scene with KARMA and with classical extractions + FCLS (VCA, the best of 10 "
                            "VCA draws by reconstruction error, N-FINDR, NMF; KARMA starts from one of them, --init) and score "
                            "all against a reference: SAD per endmember (Hungarian-matched), whether every material was found, "
                            "abundance RMSE, and KARMA's endmembers refined per pixel by FCLS; and how well the reference itself "
                            "fits the cube under linear mixing (its endmembers with FCLS). Per seed: scores.json, "
                            "unmixing.npz, unmixing.png.")
    parser.add_argument("--scene", required=True, help="the cube (any reader format), or a scene YAML holding the options "
                        "below (configs/unmixing/samson.yaml, moffett.yaml, muufl.yaml)")
    parser.add_argument("--reference", default=None, help=".mat with reference endmembers (bands × M), abundances "
                        "(M × pixels or H × W × M) and optionally names (default: the scene's own file)")
    parser.add_argument("-c", "--recipe", required=True, help="a KARMA recipe (MAEPretrainer with a mixing branch), "
                        "e.g. configs/unmixing/karma.yaml; its scene list is replaced by the scene")
    parser.add_argument("--endmembers", type=Optional[int], default=None, help="endmembers to estimate (default: the reference's count)")
    parser.add_argument("--names", type=Optional[list[str]], default=None, help="material names in the reference's order")
    parser.add_argument("--scale", type=float, default=1.0, help="factor from the cube's values to the reference's units "
                        "(a .mat maxValue is applied when the cube is read)")
    parser.add_argument("--key", default=None, help=".mat variable holding the cube")
    parser.add_argument("--endmembers_key", "--endmembers-key", default=None, help=".mat variable of the reference endmembers")
    parser.add_argument("--abundances_key", "--abundances-key", default=None, help=".mat variable of the reference abundances")
    parser.add_argument("--pixel_order", "--pixel-order", default="auto", choices=["auto", "column", "row"],
                        help="pixel order of an (M, pixels) abundance matrix; auto: the order whose E·A reproduces the cube")
    parser.add_argument("--init", default="vca", help="the extraction whose draw starts KARMA's endmembers: vca, vca_restarts, "
                        "nfindr or nmf (rsdistill.unmixing.EXTRACTORS; every one is also a baseline with FCLS)")
    parser.add_argument("--seeds", type=list[int], default=[0, 1, 2])
    parser.add_argument("--epochs", type=Optional[int], default=None, help="override the recipe's max_epochs")
    parser.add_argument("--overwrite", type=bool, default=False, help="replace runs in --out made with other settings "
                        "(without it, a finished run is reused only for the same settings and refused otherwise)")
    parser.add_argument("--out", required=True, help="results.json, results.md and one folder per seed")
    parser.add_argument("--against", default=None, help="another unmixing-eval --out folder of the same scene and seeds (e.g. "
                        "karma.yaml's): KARMA's abundance RMSE and SAD paired per seed against it")
    return parser


def _seeded_experiment_parser(description: str, sections: str) -> ArgumentParser:
    parser = ArgumentParser(description=description + " Finished runs of the same settings are reused, so an interrupted experiment resumes.")
    parser.add_argument("-c", "--config", required=True, help=f"experiment YAML ({sections})")
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--seeds", type=int, nargs="+", default=None, help="override the config's seeds, e.g. --seeds 0 1")
    parser.add_argument("--overwrite", type=bool, default=False, help="replace runs in --out made with other settings "
                        "(without it, a finished or interrupted run is reused only for the same settings and refused otherwise)")
    parser.add_argument("--points", type=str, nargs="+", default=None, help="with a sweep: run and tabulate only these of its "
                        "values, e.g. --points 150 all (default: every value); the curve written then holds only these")
    parser.epilog = "--trainer.KEY VALUE (e.g. --trainer.max_epochs 1) sets a Lightning Trainer option for every run."
    return parser


def _experiment_parser() -> ArgumentParser:
    parser = _seeded_experiment_parser(
        "Fit and test every model of an experiment YAML over several seeds; write results.json and results.md "
        "(mean ± std, and the config's pairs compared seed by seed: differences, paired t and Wilcoxon p). "
        "With sweep: {data option: [values]}, one experiment per value and curve.md/curve.png over them.",
        "data, trainer, models, seeds, pairs, select, sweep")
    parser.add_argument("--models", type=str, nargs="+", default=None, help="run and report only these models, e.g. --models student student_kd (default: all)")
    return parser


def _pretrain_experiment_parser() -> ArgumentParser:
    parser = _seeded_experiment_parser(
        "Pretrain every MAE recipe of an experiment YAML over several seeds; write held-out PSNR/SSIM/SAM, "
        "linear-probe OA (results.json, results.md), encoders (safetensors + card) and reconstruction figures.",
        "data, trainer, recipes, probe, seeds")
    parser.add_argument("--recipes", type=str, nargs="+", default=None, help="run and report only these recipes, e.g. --recipes no_kd kd_b1 (default: all)")
    return parser


VERBS = {
    "info": (_info_parser, "describe a scene or label file"),
    "show": (_show_parser, "a quick-look PNG of a scene: true colour, labels, spectra"),
    "sensors": (_sensors_parser, "list the registered sensors"),
    "weights": (_weights_parser, "pretrained weights by name, and whether they are here"),
    "align": (_align_parser, "band alignment between two sensors"),
    "stats": (_stats_parser, "per-band mean/std for normalisation"),
    "map": (_map_parser, "whole-scene class map as GeoTIFF + PNG"),
    "export": (_export_parser, "ONNX fp32/fp16/int8 with the model card and a parity check"),
    "benchmark": (_benchmark_parser, "params, FLOPs, latency and memory of checkpoints and ONNX files"),
    "score-tiles": (_score_tiles_parser, "mIoU/OA/mF1 of a checkpoint's maps of labelled tiles"),
    "experiment": (_experiment_parser, "compare models over seeds (mean ± std tables)"),
    "pretrain-experiment": (_pretrain_experiment_parser, "compare MAE recipes over seeds"),
    "probe": (_probe_parser, "linear-probe OA of a pretrained encoder"),
    "teacher-knowledge": (_teacher_knowledge_parser, "what a pretrained teacher knows (probe, k-NN) before distilling"),
    "unmixing-eval": (_unmixing_parser, "KARMA and VCA + FCLS against an unmixing reference"),
    "tables": (_tables_parser, "the tables of results files, rendered from the files alone"),
    "quickstart": (_quickstart_parser, "teacher -> distilled student on the synthetic scene or yours"),
}


def build_parser() -> ArgumentParser:
    parser = ArgumentParser(
        prog="rsdistill", version=__version__,
        description="Label-free pretraining and knowledge distillation for multispectral and hyperspectral imagery. "
        "Training verbs: rsdistill fit|validate|test|predict -c recipe.yaml (LightningCLI, one recipe dialect: "
        "model/data class_path + init_args, run_dir, base; see rsdistill fit --help).",
    )
    subcommands = parser.add_subcommands(dest="verb")
    for name, (make, summary) in VERBS.items():
        subcommands.add_subcommand(name, make(), help=summary)
    return parser


EXPERIMENT_VERBS = ("experiment", "pretrain-experiment")


def trainer_overrides(argv: list[str]) -> tuple[list[str], dict]:
    """``--trainer.KEY VALUE`` of an experiment verb, taken out of ``argv`` as {KEY: VALUE (YAML)}:
    applied to every run of the experiment (``--trainer.max_epochs 1`` to try one quickly)."""
    import yaml

    rest, overrides, args = [], {}, iter(argv)
    for arg in args:
        if arg.startswith("--trainer."):
            key, _, value = arg[len("--trainer."):].partition("=")
            value = value if _ else next(args, None)
            if not key or value is None:
                raise InputError(f"{arg}: a trainer override is --trainer.KEY VALUE, e.g. --trainer.max_epochs 1")
            overrides[key] = yaml.safe_load(value)
        else:
            rest.append(arg)
    return rest, overrides


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if "--verbose" in argv:  # everything third-party libraries print, for reporting a problem
        argv = [a for a in argv if a != "--verbose"]
        os.environ["RSDISTILL_VERBOSE"] = "1"
    quiet()
    try:
        if argv and argv[0] in ("fit", "validate", "test", "predict"):
            from rsdistill.recipes import run_lightning

            run_lightning(argv)
            return 0
        overrides = {}
        if argv and argv[0] in EXPERIMENT_VERBS:
            argv, overrides = trainer_overrides(argv)
        config = build_parser().parse_args(argv)
        from rsdistill.cli import verbs

        if config.verb in EXPERIMENT_VERBS:
            config[config.verb].trainer = overrides
        getattr(verbs, config.verb.replace("-", "_"))(config[config.verb])
    except InputError as error:
        # a file name that is not valid UTF-8 is printed escaped, never as an encoding traceback
        message = str(error).encode("utf-8", "backslashreplace").decode("utf-8")
        print(f"rsdistill: error: {message}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # the reader of a pipe stopped early (rsdistill tables FILE | head): nothing to report
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # so the interpreter's final flush is silent
        return 0
    except FloatingPointError as error:  # the NaN guard of tasks.base: a diverged run, not bad input
        print(f"rsdistill: error: training diverged: {error} (a lower learning rate or loss weight may hold it)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
