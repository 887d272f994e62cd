"""The shared task vocabulary: self-contained checkpoints, the teacher policy, the encoder registry
(with a parity test against an official MAE-layout checkpoint), predict, and every shipped recipe
run once (``fast_dev_run``) or, for experiments, every run parsed by the recipe parser."""

import csv
import shutil
from pathlib import Path

import lightning as L
import numpy as np
import pytest
import torch
import torch.nn.functional as F
import yaml

from fixtures import TINY_BLM, classifier_recipe, write_fixture_scenes
from rsdistill.cli import main
from rsdistill.data.synthetic import make_synthetic_scene
from rsdistill.data.tiles import TileData
from rsdistill.errors import InputError
from rsdistill.experiments.curve import sweep_of
from rsdistill.experiments.experiment import experiment_recipes, fit_and_test, load_experiment
from rsdistill.experiments.pretrain import experiment_datasets, pretrain_recipes
from rsdistill.io import open_scene, write_geotiff
from rsdistill.models.pretrained import WEIGHTS
from rsdistill.models.registry import load_encoder, save_encoder
from rsdistill.models.sam import SAMImageEncoder
from rsdistill.models.vit import ViTEncoder
from rsdistill.preprocessing import Preprocessing
from rsdistill.recipes import load_recipe, parse_recipe
from rsdistill.runs import last_checkpoint
from rsdistill.tasks.pretrain import MAEPretrainer

REPO = Path(__file__).resolve().parents[1]
DIM, DEPTH, HEADS, PATCH, GRID = 32, 2, 4, 4, 4


# -- an official MAE checkpoint, and a ViT written independently of rsdistill's ----------------------
def mae_sincos(dim: int, grid: int) -> np.ndarray:
    """facebookresearch/mae ``get_2d_sincos_pos_embed`` with a zero cls row, written out as the oracle."""

    def code(d, positions):
        omega = 1.0 / 10000 ** (np.arange(d // 2) / (d / 2.0))
        angles = np.outer(positions.reshape(-1), omega)
        return np.concatenate([np.sin(angles), np.cos(angles)], axis=1)

    w, h = np.meshgrid(np.arange(grid, dtype=float), np.arange(grid, dtype=float))  # MAE: meshgrid(grid_w, grid_h)
    return np.concatenate([np.zeros((1, dim)), np.concatenate([code(dim // 2, w), code(dim // 2, h)], axis=1)])


def official_mae_state(seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    r = lambda *shape: torch.randn(*shape, generator=g) * 0.1  # noqa: E731
    state = {"cls_token": r(1, 1, DIM), "pos_embed": torch.from_numpy(mae_sincos(DIM, GRID))[None].float(),
             "patch_embed.proj.weight": r(DIM, 3, PATCH, PATCH), "patch_embed.proj.bias": r(DIM),
             "norm.weight": 1 + r(DIM), "norm.bias": r(DIM),
             "mask_token": r(1, 1, 16), "decoder_embed.weight": r(16, DIM), "decoder_pos_embed": r(1, 17, 16), "decoder_pred.weight": r(48, 16)}
    for n in range(DEPTH):
        for name, shape in {"norm1.weight": (DIM,), "norm1.bias": (DIM,), "attn.qkv.weight": (3 * DIM, DIM), "attn.qkv.bias": (3 * DIM,),
                            "attn.proj.weight": (DIM, DIM), "attn.proj.bias": (DIM,), "norm2.weight": (DIM,), "norm2.bias": (DIM,),
                            "mlp.fc1.weight": (4 * DIM, DIM), "mlp.fc1.bias": (4 * DIM,), "mlp.fc2.weight": (DIM, 4 * DIM), "mlp.fc2.bias": (DIM,)}.items():
            state[f"blocks.{n}.{name}"] = (1 if name.startswith("norm") and name.endswith("weight") else 0) + r(*shape)
    return state


def reference_vit(state: dict, images: torch.Tensor) -> torch.Tensor:
    """timm/MAE ViT forward from the state dict alone: (N, 3, H, W) -> (N, 1 + L, D), final norm applied."""
    ln = lambda x, prefix: F.layer_norm(x, (DIM,), state[f"{prefix}.weight"], state[f"{prefix}.bias"], eps=1e-6)  # noqa: E731
    tokens = F.conv2d(images, state["patch_embed.proj.weight"], state["patch_embed.proj.bias"], stride=PATCH).flatten(2).transpose(1, 2)
    pos = state["pos_embed"]
    x = torch.cat([(state["cls_token"] + pos[:, :1]).expand(len(images), -1, -1), tokens + pos[:, 1:]], dim=1)
    n, length, _ = x.shape
    for b in range(DEPTH):
        p = f"blocks.{b}"
        qkv = (ln(x, f"{p}.norm1") @ state[f"{p}.attn.qkv.weight"].T + state[f"{p}.attn.qkv.bias"]).reshape(n, length, 3, HEADS, DIM // HEADS)
        q, k, v = qkv.permute(2, 0, 3, 1, 4)
        attention = torch.softmax(q @ k.transpose(-2, -1) / (DIM // HEADS) ** 0.5, dim=-1)
        x = x + (attention @ v).transpose(1, 2).reshape(n, length, DIM) @ state[f"{p}.attn.proj.weight"].T + state[f"{p}.attn.proj.bias"]
        hidden = F.gelu(ln(x, f"{p}.norm2") @ state[f"{p}.mlp.fc1.weight"].T + state[f"{p}.mlp.fc1.bias"])
        x = x + hidden @ state[f"{p}.mlp.fc2.weight"].T + state[f"{p}.mlp.fc2.bias"]
    return ln(x, "norm")


def test_official_mae_checkpoint_loads_into_vit_with_forward_parity(tmp_path):
    state = official_mae_state()
    torch.save({"model": state}, tmp_path / "mae_pretrain_vit_tiny.pth")  # the official file layout
    pretrained = load_encoder(tmp_path / "mae_pretrain_vit_tiny.pth", num_heads=HEADS)
    report = pretrained.card["load_report"]
    assert pretrained.card["format"] == "mae" and report["decoder_keys_unused"] == 4 and report["unmapped_keys"] == []
    assert report["pos_embed_max_difference"] < 1e-6  # the regenerated sin-cos code is the checkpoint's
    images = torch.randn(2, 3, GRID * PATCH, GRID * PATCH)
    tokens, _ = pretrained.encoder(images)
    torch.testing.assert_close(tokens, reference_vit(state, images), rtol=1e-4, atol=1e-5)
    raw = torch.rand(1, 3, 16, 16) * 255  # raw RGB: scaled to 0-1 and ImageNet-normalised, as MAE was trained
    normalised = (raw / 255 - torch.tensor([0.485, 0.456, 0.406])[:, None, None]) / torch.tensor([0.229, 0.224, 0.225])[:, None, None]
    torch.testing.assert_close(pretrained(raw)[0], pretrained.encoder.forward_features(normalised)[0], rtol=1e-4, atol=1e-5)
    state["blocks.1.attn.qkv.weight"] = torch.zeros(5, DIM)
    torch.save(state, tmp_path / "broken.pth")
    with pytest.raises(InputError, match=r"blocks\.1\.attn\.qkv\.weight: checkpoint \(5, 32\), expected \(96, 32\)"):
        load_encoder(tmp_path / "broken.pth", num_heads=HEADS)


def test_forward_features_are_the_patch_tokens_on_their_grid():
    encoder = ViTEncoder(5, 16, 4, 32, 3, 4)
    images = torch.randn(2, 5, 16, 24)
    final, layers = encoder(images, return_layers=(1, 3))
    maps = encoder.forward_features(images, (1, 3))
    assert [tuple(m.shape) for m in maps] == [(2, 32, 4, 6)] * 2
    torch.testing.assert_close(maps[0][:, :, 1, 2], layers[1][:, 1 + 1 * 6 + 2])
    torch.testing.assert_close(encoder.forward_features(images)[0].flatten(2).transpose(1, 2), final[:, 1:])


def test_pretrained_encoder_takes_raw_scenes_and_aligns_other_sensors(tmp_path):
    encoder = ViTEncoder(6, 16, 4, 32, 1, 4)
    save_encoder(encoder, tmp_path / "hls.safetensors", Preprocessing.create(6, [1000.0] * 6, [500.0] * 6, sensor="hls"))
    pretrained = load_encoder(tmp_path / "hls.safetensors")
    scene = make_synthetic_scene("enmap", 20, 20).scene
    with pytest.raises(InputError, match="224 bands, but the encoder takes 6 raw bands"):
        pretrained.scene_features(scene)
    features = pretrained.scene_features(scene, align="mean", scale=10000)
    assert tuple(features[0].shape) == (32, 5, 5)  # 20 px padded to 20 (a multiple of 4): 5 × 5 patches


# -- the teacher policy and self-contained checkpoints ---------------------------------------------------
def test_distilled_student_checkpoint_loads_alone_in_another_folder_and_maps(tmp_path, monkeypatch):
    teacher = fit_and_test("teacher", classifier_recipe(tmp_path / "teacher", 1), seed=0)
    student = fit_and_test("student", classifier_recipe(tmp_path / "student", 2, d_model=4, teacher_ckpt=teacher["checkpoint"], kd_warmup_epochs=1), seed=0)
    with open(tmp_path / "student" / "metrics.csv") as f:
        assert "train/kd" in next(csv.reader(f))  # it was distilled
    state = torch.load(student["checkpoint"], weights_only=True)["state_dict"]
    assert not any("teacher" in k or k.startswith("distiller") for k in state)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    shutil.copy(student["checkpoint"], elsewhere / "student.ckpt")
    scene = make_synthetic_scene("sentinel2", 24, 24, seed=1).scene
    write_geotiff(elsewhere / "scene.tif", scene.cube, like=scene)
    shutil.rmtree(tmp_path / "teacher")
    shutil.rmtree(tmp_path / "student")
    monkeypatch.chdir(elsewhere)
    monkeypatch.setenv("RSDISTILL_DATA", str(tmp_path / "no_data_here"))
    assert main(["map", "--ckpt", "student.ckpt", "--scene", "scene.tif", "--out", "map.tif"]) == 0
    assert (elsewhere / "map.tif").is_file() and (elsewhere / "map.png").is_file()


def test_hyperkd_student_checkpoint_holds_no_teacher_resumes_with_it_and_loads_without(tmp_path):
    save_encoder(ViTEncoder(6, 16, 4, 32, 2, 4), tmp_path / "teacher.safetensors", Preprocessing.create(6, [1000.0] * 6, [500.0] * 6, sensor="hls"))
    data = TileData(synthetic={"sensor": "enmap", "height": 32, "width": 32}, tile_size=16, stride=8, batch_size=4)
    options = dict(img_size=16, embed_dim=32, depth=2, num_heads=4, decoder_embed_dim=16, decoder_depth=1,
                   distill={"teacher": str(tmp_path / "teacher.safetensors"), "scale": 10000.0})
    trainer = lambda epochs: L.Trainer(max_epochs=epochs, limit_train_batches=2, limit_val_batches=1, logger=False, default_root_dir=tmp_path,  # noqa: E731
                                       callbacks=[last_checkpoint(tmp_path / "run")], enable_progress_bar=False, enable_model_summary=False)
    L.seed_everything(0)
    task = MAEPretrainer(data.info, **options)
    trainer(1).fit(task, data)
    ckpt = tmp_path / "run" / "last.ckpt"
    state = torch.load(ckpt, weights_only=True)["state_dict"]
    assert not any("teacher" in k for k in state) and "distiller.projections.2_2.weight" in state  # projections kept for resuming
    resumed = MAEPretrainer(data.info, **options)
    trainer(2).fit(resumed, data, ckpt_path=ckpt)  # the teacher is loaded again from its own file, the projections from the checkpoint
    assert resumed.distiller is not None and resumed.current_epoch == 2
    (tmp_path / "teacher.safetensors").unlink()
    loaded = MAEPretrainer.load_from_checkpoint(ckpt, weights_only=True)
    assert loaded.distiller is None
    for key, value in loaded.model.state_dict().items():
        torch.testing.assert_close(value, resumed.model.state_dict()[key])


# -- predict and the recipe dialect on tiny fixture scenes ------------------------------------------------
def recipe_file(path: Path, base: str, **sections) -> Path:
    path.write_text(yaml.safe_dump({"base": str(REPO / "configs" / base), **sections}))
    return path


def test_fit_then_predict_writes_predictions_for_both_tasks(tmp_path, monkeypatch):
    lists = {k: str(v) for k, v in write_fixture_scenes(tmp_path / "scenes").items()}
    monkeypatch.chdir(tmp_path)
    quick = ["--trainer.max_epochs", "1", "--trainer.enable_progress_bar", "false"]
    classify = recipe_file(tmp_path / "classify.yaml", "blm_kd/teacher.yaml", run_dir="runs/classify",
                           data={"init_args": {"tile_lists": lists, "max_train_per_class": 20, "patch_size": 5}}, model={"init_args": TINY_BLM})
    assert main(["fit", "-c", str(classify), *quick]) == 0
    assert main(["predict", "-c", str(classify), "--ckpt_path", "last", *quick]) == 0
    predictions = torch.load(tmp_path / "runs/classify/predict/predictions.pt", weights_only=True)
    assert predictions.ndim == 1 and len(predictions) == int((open_scene(tmp_path / "scenes/tile_3_labels.tif").read().cube > 0).sum())
    mae = recipe_file(tmp_path / "mae.yaml", "mae/gabor.yaml", run_dir="runs/mae",
                      data={"init_args": {"tile_lists": lists, "tile_size": 8, "stride": 8}},
                      model={"init_args": {"embed_dim": 16, "depth": 1, "num_heads": 2, "decoder_embed_dim": 8, "decoder_depth": 1}})
    assert main(["fit", "-c", str(mae), *quick]) == 0
    assert main(["test", "-c", str(mae), "--ckpt_path", "last", *quick]) == 0
    assert main(["predict", "-c", str(mae), "--ckpt_path", "last", *quick]) == 0
    features = torch.load(tmp_path / "runs/mae/predict/predictions.pt", weights_only=True)
    assert tuple(features.shape) == (9, 16, 2, 2)  # 24 px test scene: 3 × 3 tiles of 8 px, 2 × 2 patches each
    assert (tmp_path / "runs/mae/encoder.safetensors").is_file() and (tmp_path / "runs/mae/test/metrics.csv").is_file()


def test_a_recipe_typo_names_the_key(tmp_path, capsys):
    bad = recipe_file(tmp_path / "bad.yaml", "mae/base.yaml", model={"init_args": {"embed_dmi": 16}})
    assert main(["fit", "-c", str(bad)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and str(bad) in err and "'embed_dmi' is not accepted; did you mean embed_dim" in err
    with pytest.raises(InputError, match="'d_modle' is not accepted; did you mean d_model"):
        parse_recipe(classifier_recipe(tmp_path / "x", 1, d_modle=4))


# -- every shipped recipe ---------------------------------------------------------------------------------
CONFIGS = sorted((REPO / "configs").rglob("*.yaml"))
EXPERIMENTS = [c for c in CONFIGS if {"models", "recipes"} & set(yaml.safe_load(c.read_text()))]
UNMIXING_SCENES = [c for c in CONFIGS if "scene" in yaml.safe_load(c.read_text())]
TEACHER_KNOWLEDGE = [c for c in CONFIGS if "encoders" in yaml.safe_load(c.read_text())]  # tests/test_teacher_knowledge.py
RECIPES = [c for c in CONFIGS if c not in EXPERIMENTS and c not in UNMIXING_SCENES and c not in TEACHER_KNOWLEDGE]


@pytest.mark.parametrize("config", UNMIXING_SCENES, ids=lambda p: str(p.relative_to(REPO / "configs")))
def test_every_unmixing_scene_reads_with_its_reference(config, data_dir, monkeypatch):
    from rsdistill.experiments.unmixing import load_unmixing_scene

    monkeypatch.setenv("RSDISTILL_DATA", str(data_dir))
    scene = load_unmixing_scene(config)
    reference = scene.reference
    assert reference.abundances.shape == (reference.count, scene.cube.shape[0] * scene.cube.shape[1])
    assert np.allclose(reference.abundances.sum(axis=0), 1, atol=1e-6) and len(reference.names) == reference.count


@pytest.fixture(scope="module")
def artefacts(tmp_path_factory, data_dir):
    """What recipes that build on others need: a BLM teacher checkpoint for EnMAP (one real batch),
    a multispectral (HLS) teacher encoder, an EnMAP encoder (random weights, real band layout) and
    an RGB ViT/16 encoder (for the VHR segmentation recipes)."""
    out = tmp_path_factory.mktemp("artefacts")
    recipe = REPO / "configs/blm_kd/teacher.yaml"
    env = {"RSDISTILL_DATA": str(data_dir)}
    with pytest.MonkeyPatch.context() as patch:
        for k, v in env.items():
            patch.setenv(k, v)
        assert main(["fit", "-c", str(recipe), "--run_dir", str(out / "teacher"), "--trainer.max_epochs", "1",
                     "--trainer.limit_train_batches", "1", "--trainer.limit_val_batches", "1", "--trainer.enable_progress_bar", "false",
                     "--model.init_args.d_model", "8"]) == 0
    save_encoder(ViTEncoder(6, 16, 4, 32, 4, 4), out / "hls.safetensors", Preprocessing.create(6, [1000.0] * 6, [500.0] * 6, sensor="hls"))
    source = open_scene(data_dir / "enmap_potsdam_specdeepmap/images/enmap_potsdam_tile_128_0.tif")
    kept = np.flatnonzero(~source.meta.bad_bands)
    save_encoder(ViTEncoder(len(kept), 16, 4, 32, 4, 4), out / "enmap.safetensors",
                 Preprocessing.create(source.bands, [0.0] * len(kept), [1.0] * len(kept), kept=kept))
    save_encoder(ViTEncoder(3, 32, 16, 32, 4, 4), out / "rgb.safetensors", Preprocessing.create(3, [100.0] * 3, [50.0] * 3))
    save_encoder(SAMImageEncoder(3, 64, 16, 32, 4, 2, window_size=2, global_blocks=[2, 4], out_chans=16), out / "sam.safetensors",
                 Preprocessing.create(3, [123.675, 116.28, 103.53], [58.395, 57.12, 57.375]))
    return {"teacher_ckpt": out / "teacher/last.ckpt", "teacher": out / "hls.safetensors", "encoder": out / "enmap.safetensors",
            "rgb_encoder": out / "rgb.safetensors", "sam": out / "sam.safetensors"}


def encoder_artefact(path: str, artefacts: dict) -> str:
    """The test's stand-in for an encoder a recipe names: RGB for the VHR encoders (MAE or Mask-CDKD), EnMAP otherwise."""
    return str(artefacts["rgb_encoder" if "vhr" in str(path) or "mask_cdkd" in str(path) else "encoder"])


def needs(recipe: Path, artefacts: dict) -> list[str]:
    """Overrides pointing a recipe's inputs made by another recipe at the test's artefacts; named
    pretrained weights (galileo-nano) are the real ones, found under the data root."""
    model = load_recipe(recipe).get("model", {}).get("init_args", {})
    if WEIGHTS.keys() & {model.get("encoder"), model.get("teacher"), (model.get("distill") or {}).get("teacher")}:
        small_tiles = ["--data.init_args.tile_size", "64", "--data.init_args.batch_size", "2"]  # a 256-px batch costs a minute
        return small_tiles if "segment" in recipe.name or "mask_cdkd" in recipe.name else []
    if "teacher_ckpt" in model:
        return ["--model.init_args.teacher_ckpt", str(artefacts["teacher_ckpt"])]
    if "distill" in model:
        return ["--model.init_args.distill.teacher", str(artefacts["teacher"])]
    if "encoder" in model:
        return ["--model.init_args.encoder", encoder_artefact(model["encoder"], artefacts)]
    if "teacher" in model:  # Mask-CDKD: a tiny SAM-layout teacher, and tiles the CPU can take in one step
        return ["--model.init_args.teacher", str(artefacts["sam"]), "--data.init_args.tile_size", "64",
                "--model.init_args.kd_layers", "[[3, 2], [6, 4]]"]
    return []


@pytest.mark.parametrize("recipe", RECIPES, ids=lambda p: str(p.relative_to(REPO / "configs")))
def test_every_recipe_runs_one_batch(recipe, artefacts, data_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("RSDISTILL_DATA", str(data_dir))
    monkeypatch.chdir(tmp_path)
    assert main(["fit", "-c", str(recipe), "--trainer.fast_dev_run", "true", "--trainer.enable_progress_bar", "false", *needs(recipe, artefacts)]) == 0


# one recipe per task, covering SSIM, spectral angle, physics, logit KL, feature KD and segmentation
# CE; bf16 is emulated on this CPU (no AVX-512 BF16), so the segmenter runs on small tiles
BF16_RECIPES = {"blm_kd/student_kd.yaml": [], "hyperkd/student_kd.yaml": [], "mae/karma.yaml": [], "mask_cdkd/distill_cpu.yaml": [],
                "segmentation/dubai.yaml": ["--data.init_args.tile_size", "64", "--data.init_args.batch_size", "2"]}


# Lightning turns ``16-mixed`` on a CPU into bf16; its plugin given directly keeps float16 autocast
# (with a GradScaler), so fp16's narrow range (max 65,504) is exercised as on a GPU
PRECISIONS = {"bf16-mixed": ["--trainer.precision", "bf16-mixed"],
              "16-mixed": ["--trainer.plugins", '{"class_path": "lightning.pytorch.plugins.precision.MixedPrecision", '
                                                '"init_args": {"precision": "16-mixed", "device": "cpu"}}']}


@pytest.mark.parametrize("precision", PRECISIONS)
@pytest.mark.parametrize("name", BF16_RECIPES)
def test_one_recipe_of_each_task_trains_in_mixed_precision(name, precision, artefacts, data_dir, tmp_path, monkeypatch):
    """``precision: bf16-mixed`` and ``16-mixed`` (the GPU recipes' settings) through Lightning's CPU
    autocast: a training and a validation step of each task, losses finite (``check_finite``) and
    in float32."""
    monkeypatch.setenv("RSDISTILL_DATA", str(data_dir))
    monkeypatch.chdir(tmp_path)
    recipe = REPO / "configs" / name
    assert main(["fit", "-c", str(recipe), "--trainer.fast_dev_run", "true", *PRECISIONS[precision],
                 "--trainer.enable_progress_bar", "false", *needs(recipe, artefacts), *BF16_RECIPES[name]]) == 0


@pytest.mark.parametrize("config", EXPERIMENTS, ids=lambda p: str(p.relative_to(REPO / "configs")))
def test_every_experiment_run_is_a_valid_recipe(config, artefacts, data_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("RSDISTILL_DATA", str(data_dir))
    experiment = load_experiment(config, sections=())
    if "sweep" in experiment:  # the recipes of the first swept value (a misspelt option fails to parse)
        option, values = sweep_of(experiment)
        experiment["data"] = {**experiment["data"], option: values[0]}
    if "models" in experiment:
        for options in experiment["models"].values():
            if "encoder" in options and str(options["encoder"]).lower() not in WEIGHTS:  # named weights are the real ones
                options["encoder"] = encoder_artefact(options["encoder"], artefacts)
        recipes = list(experiment_recipes(experiment, tmp_path, seed=0).values())
    else:
        recipes = [r for _, data, model in experiment_datasets(experiment) for r in pretrain_recipes(experiment, data, model, 0, tmp_path).values()]
    for recipe in recipes:
        cli = parse_recipe(recipe)
        # the recipe's data module gives the facts its task reads, typed
        assert cli.model.data_info == type(cli.model).DATA_INFO.from_dict(cli.datamodule.info)


def test_data_info_round_trips_as_plain_data_and_names_a_missing_key():
    import io

    import torch

    from rsdistill.data.info import PixelDataInfo, SegmentationDataInfo, TileDataInfo

    info = PixelDataInfo({"bands": 2, "mean": [0, 0], "std": [1, 1]}, [1, 3], 5)
    assert PixelDataInfo.from_dict(info.to_dict()) == info
    buffer = io.BytesIO()
    torch.save({"data_info": info.to_dict()}, buffer)
    buffer.seek(0)
    assert PixelDataInfo.from_dict(torch.load(buffer, weights_only=True)["data_info"]) == info  # plain data: weights-only safe
    assert TileDataInfo.from_dict({"preprocessing": {}, "tile_size": 16}).data_range == 1.0  # older cards lack the newer keys
    with pytest.raises(InputError, match="a SegmentationDataInfo needs preprocessing, class_names, tile_size; missing tile_size"):
        SegmentationDataInfo.from_dict({"preprocessing": {}, "class_names": ["a"]})
    legend = SegmentationDataInfo({}, ["road", "roof"], 16).mask_legend()
    assert legend.names == ("road", "roof") and legend.codes == ((1,), (2,))


def test_one_registry_names_every_network_and_task_and_refuses_the_unknown_in_one_line():
    from rsdistill.models.registry import ENCODERS, PIXEL_CLASSIFIERS, SEGMENTATION_NETS
    from rsdistill.models.spectral import SpectralMLP
    from rsdistill.registry import Registry
    from rsdistill.tasks.loading import TASKS

    assert list(TASKS) == ["PixelClassifier", "SemanticSegmenter", "MAEPretrainer", "MaskCDKD"]
    assert {"vit", "sam", "sam_mmoa", "galileo"} <= set(ENCODERS) and {"unet", "specdeepmap_cnn"} <= set(SEGMENTATION_NETS)
    # a task's flat options: only what the network's constructor names is passed
    net = PIXEL_CLASSIFIERS.build("spectral_mlp", 6, 3, options={"dropout": 0.3, "d_model": 16, "lr": 1.0})
    assert isinstance(net, SpectralMLP) and net.body[3].p == 0.3
    with pytest.raises(InputError, match=r"^unknown pixel classifier architecture 'mlp'; registered: blm, hybrid_cnn, spectral_mlp, spectral_cnn1d$"):
        PIXEL_CLASSIFIERS["mlp"]
    with pytest.raises(InputError, match=r"^segmentation architecture 'unet': .*'wdth'"):
        SEGMENTATION_NETS.build("unet", 3, 2, wdth=8)
    with pytest.raises(ValueError, match="registered twice"):
        Registry("thing", {"a": 1}).register("a", 2)
    # a task that makes no class map says so; the classifying ones answer what their maps hold
    with pytest.raises(InputError, match="MAEPretrainer makes no class map"):
        TASKS["MAEPretrainer"].map_classes(object.__new__(TASKS["MAEPretrainer"]))
