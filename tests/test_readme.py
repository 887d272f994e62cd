"""The README's commands and Python snippets, as written.

Every ``rsdistill`` command of its bash blocks is either **run** (shortened: one epoch of one batch,
one seed, one timing round) in README order in a scratch folder, or, where running it here is
impossible or hours long, **parsed** exactly as the CLI would (the verb's parser; LightningCLI's
``--print_config`` for training verbs, which validates the recipe and every override), with the
reason and the test that runs its work written next to the rule. Then every ``python`` block runs,
its file names pointed at real files. A README placeholder (``SCENE.tif``, ``CKPT``) stands for a
real file made by an earlier command or found under the data root; one that is not in
``PLACEHOLDERS`` fails the run, so a new README command cannot drift from the code unnoticed.
"""

from __future__ import annotations

import re
from glob import glob
from pathlib import Path

import numpy as np
import pytest

from fixtures import SHORTER, shell_commands
from rsdistill.cli import main
from rsdistill.cli.main import VERBS, build_parser, trainer_overrides

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
TRAINING_VERBS = ("fit", "validate", "test", "predict")
TILE = "enmap_potsdam_specdeepmap/images/enmap_potsdam_tile_128_0.tif"
LABELS = "enmap_potsdam_specdeepmap/labels/enmap_potsdam_tile_128_0.tif"
PHOTO = "dubai_aerial_hitl/tile_1/images/image_part_001.jpg"

# commands that are parsed, not run: (pattern on the command line, why, and where their work is tested)
PARSED_ONLY = [
    (r"^(experiment|pretrain-experiment) ", "hours of training; every run of every experiment config is parsed as a recipe "
     "by test_task_vocabulary.py::test_every_experiment_run_is_a_valid_recipe, and experiments run in test_runs.py"),
    (r"--trainer\.strategy ddp|--trainer\.accelerator gpu|--trainer\.num_nodes", "DDP over processes and GPUs: "
     "test_ddp.py runs Lightning's DDP on CPU ranks, the README's two-node line included; no GPU here"),
    (r"^weights --download", "network: test_galileo.py downloads through a mocked urlopen"),
    (r"^quickstart$", "the main job exactly as a user starts it, in a process of its own, with its console checked line by line: "
     "test_synthetic_and_cli.py::test_the_quickstart_console_has_no_warning_line; on a user's scene: test_tutorial.py"),
    (r"^(fit|validate|test|predict) .*configs/(segmentation|hyperkd|mask_cdkd)/|runs/(segmentation|hyperkd|mask_cdkd)/", "one step of a 256² tile or a "
     "218-band MAE costs a minute here: one batch of every one of these recipes runs in "
     "test_task_vocabulary.py::test_every_recipe_runs_one_batch; the HyperKD teacher → student recipes end to end on real "
     "data in test_hyperkd.py, Mask-CDKD's stages in test_mask_cdkd.py, a segmenter's test and map in test_segmentation.py, "
     "its export in test_export.py"),
]

def placeholders(data: Path) -> dict[str, str]:
    """README placeholder -> the file the test gives it (made by an earlier README command, or real data)."""
    return {
        "SCENE.tif": str(data / TILE), "scene.tif": str(data / TILE), "IMAGE": str(data / PHOTO),
        "MASK": str(data / PHOTO.replace("images", "masks").replace(".jpg", ".png")),
        # the experiments' checkpoints (parsed only) stood for by the recipes' own runs above them
        "runs/blm_kd/enmap_tiles/student/seed_0/last.ckpt": "runs/blm_kd/student_kd/last.ckpt",
        "runs/blm_kd/enmap_tiles/cnn/seed_0/last.ckpt": "runs/blm_kd/teacher/last.ckpt",
        "runs/blm_kd/enmap_tiles/student/seed_*/last.ckpt": "runs/blm_kd/*/last.ckpt",
        "CKPT": "runs/blm_kd/student_kd/last.ckpt",
        "docs/results/*.json": str(REPO / "docs/results/*.json"),
        "runs/blm_kd/enmap_tiles/results.json": str(REPO / "docs/results/blm_kd_enmap_tiles.json"),  # its committed copy
        "RECIPE.yaml": "configs/blm_kd/teacher.yaml", "PATH/sam_vit_l_0b3195.pth": "sam_vit_l_0b3195.pth",
    }


def filled(argv: list[tuple[str, bool]], data: Path) -> list[str]:
    """Placeholders replaced; the README's ``../shared/data`` is the test's data root; an unquoted
    glob expanded as the shell would."""
    given, words = placeholders(data), []
    for word, quoted in argv:
        word = given.get(word, word.replace("../shared/data", str(data)))
        words += sorted(glob(word)) if "*" in word and not quoted else [word]
    return words


def parsed_only(argv: list[tuple[str, bool]]) -> str | None:
    line = " ".join(w for w, _ in argv)
    return next((why for pattern, why in PARSED_ONLY if re.search(pattern, line)), None)


def parse(argv: list[str]) -> int:
    """The command parsed as ``rsdistill`` would, nothing run: its exit code (0 when it parses)."""
    try:
        if argv[0] in TRAINING_VERBS:  # LightningCLI validates the recipe and its overrides, prints it, exits 0
            return main([*argv, "--print_config"])
        if argv[0] in ("experiment", "pretrain-experiment"):
            argv, _ = trainer_overrides(argv)
        build_parser().parse_args(argv)
    except SystemExit as done:
        return done.code
    return 0


def test_every_readme_command_is_a_verb_with_options_and_recipes_that_exist(data_dir, monkeypatch, capsys):
    monkeypatch.setenv("RSDISTILL_DATA", str(data_dir))
    monkeypatch.chdir(REPO)
    commands = shell_commands(README.read_text())
    assert len(commands) > 60
    for line, argv in commands:
        argv = filled(argv, data_dir)
        assert argv[0] in VERBS or argv[0] in TRAINING_VERBS, f"not a verb: {line}"
        for recipe in (b for a, b in zip(argv, argv[1:]) if a in ("-c", "--config") or (a == "--scene" and b.endswith(".yaml"))):
            assert (REPO / recipe).is_file(), f"{line}: no recipe {recipe}"
        for path in (w for w in argv if w.startswith(str(data_dir))):
            assert glob(path), f"{line}: no {path}"
        assert parse(argv) == 0, f"{line}\n{capsys.readouterr().err[-1500:]}"


@pytest.mark.filterwarnings("error")  # a warning the user cannot act on is a failure (rsdistill.console drops the known ones)
def test_the_readme_runs_as_written(data_dir, tmp_path, monkeypatch, capsys):
    """Every command not in PARSED_ONLY, shortened, in README order; then every Python block. No
    warning, and no third-party log line, on the way."""
    monkeypatch.setenv("RSDISTILL_DATA", str(data_dir))
    monkeypatch.chdir(tmp_path)
    (tmp_path / "configs").symlink_to(REPO / "configs")
    ran = []
    for line, argv in shell_commands(README.read_text()):
        if parsed_only(argv):
            continue
        argv = filled(argv, data_dir)
        argv += SHORTER.get(argv[0], [])
        if argv[0] in ("fit", "test", "predict"):
            argv += ["--trainer.enable_progress_bar", "false"]
        assert main(argv) == 0, f"{line}\n{capsys.readouterr().err[-2000:]}"
        printed = capsys.readouterr()
        assert not re.search(r"(?im)^W\d{4} |warning", printed.out + printed.err), f"{line}: {printed.err[-2000:]}"
        ran.append(argv[0])
    assert {"info", "show", "sensors", "align", "stats", "weights", "fit", "test", "predict", "map", "export", "benchmark",
            "score-tiles", "probe", "unmixing-eval"} <= set(ran)
    for made in ("tile.png", "stats.json", "map.tif", "runs/blm_kd/student_kd/test", "runs/unmixing/samson/results.md"):
        assert (tmp_path / made).exists(), made
    run_python_blocks(data_dir, tmp_path)


def run_python_blocks(data: Path, scratch: Path) -> None:
    """The README's ``python`` blocks in one namespace, in order. Their file names point at real
    tiles, a Dubai photo and the runs made above; the HyperKD teacher (a recipe parsed, not run) is
    a small HLS ViT saved with its card. ``raw_batch``, ``valid`` and ``class_map``, which the
    README's text gives as the user's, are EnMAP pixels, their mask, and a class map of the tile."""
    import torch

    from rsdistill import Preprocessing, save_encoder
    from rsdistill.io import read_scene, write_geotiff
    from rsdistill.models import ViTEncoder

    teacher = scratch / "runs/hyperkd/teacher/encoder.safetensors"
    teacher.parent.mkdir(parents=True)
    save_encoder(ViTEncoder(6, 16, 4, 32, 2, 4), teacher, Preprocessing.create(6, [1000.0] * 6, [500.0] * 6, sensor="hls"))
    tile = read_scene(data / TILE)
    # a scene labelled densely enough for five folds of 16-px blocks, as a user's GeoTIFF pair
    slovenia = read_scene(data / "eolearn_slovenia_s2/REFERENCE_SCENES.npy", time_index=2, sensor="sentinel2")
    write_geotiff(scratch / "slovenia.tif", slovenia.cube, like=slovenia)
    write_geotiff(scratch / "slovenia_labels.tif", np.load(data / "eolearn_slovenia_s2/LULC.npy")[..., 0].astype(np.uint8))
    files = {"tile.tif": data / TILE, "big_scene.tif": data / TILE, "enmap_tile.tif": data / TILE, "scene.tif": scratch / "slovenia.tif",
             "a.tif": data / TILE, "b.tif": data / TILE.replace("128_0", "128_32"), "tile_labels.tif": data / LABELS,
             "labels.tif": scratch / "slovenia_labels.tif", "photo.jpg": data / PHOTO,
             "train.csv": "enmap_potsdam_specdeepmap/train_files.csv", "test.csv": "enmap_potsdam_specdeepmap/test_files.csv"}
    given = {"raw_batch": np.ascontiguousarray(tile.cube[None, :16, :16].transpose(0, 3, 1, 2)),
             "valid": tile.valid[None, :16, :16], "class_map": tile.valid.astype(np.int64)}
    namespace = {k: torch.from_numpy(v) if k != "class_map" else v for k, v in given.items()}
    for block in re.findall(r"```python\n(.*?)```", README.read_text(), re.S):
        for name, path in files.items():
            block = block.replace(f'"{name}"', repr(str(path)))
        exec(compile(block, str(README), "exec"), namespace)
    assert (scratch / "scene.png").stat().st_size > 0 and (scratch / "split.png").stat().st_size > 0
    assert namespace["photo"].card["input"]["live_groups"] == ["S2_RGB"]
    assert namespace["maps"][0].shape == (1, 128, 4, 4)  # Galileo at patch size 4 on the 16² pixels
