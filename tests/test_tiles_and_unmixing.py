import json

import numpy as np
import pytest
import scipy.io

from rsdistill.data.synthetic import make_synthetic_scene
from rsdistill.data.tiles import TileData
from rsdistill.errors import InputError
from rsdistill.unmixing import abundance_rmse, fcls, match_endmembers, vca

ENMAP_LISTS = {"train": "enmap_potsdam_specdeepmap/train_files.csv", "test": "enmap_potsdam_specdeepmap/test_files.csv"}


def test_enmap_tiles_drop_bad_bands_and_hold_out_test_tiles(real_file):
    data = TileData(tile_lists=ENMAP_LISTS, root=str(real_file("")), tile_size=16, stride=8)
    assert data.num_bands == 218 and len(data.wavelengths) == 218
    assert len(data.train_set) == 14 * 9 and len(data.test_set) == 2 * 4 and len(data.val_set) == 0
    images = data.train_set.images(len(data.train_set))
    assert abs(float(images.mean())) < 0.05 and images.shape[1:] == (218, 16, 16)


@pytest.mark.parametrize("block_bytes", [10**9, 16 * 32 * 13 * 4])
def test_tiles_read_a_row_at_a_time_give_what_each_window_reads(real_file, block_bytes, monkeypatch):
    """``SceneEntry.read_each`` (one read per row of tiles, in blocks) gives every window exactly what
    its own read gives, on a region of a scene, scaled and aligned to another sensor, with whole rows
    in one block and with rows split into blocks of three tiles. Checked against a break: the
    columns sliced one pixel off (every window after a block's first differs)."""
    from rsdistill.data import tiles
    from rsdistill.data.streaming import full_windows

    monkeypatch.setattr(tiles, "BLOCK_BYTES", block_bytes)
    image = {"path": "eolearn_slovenia_s2/REFERENCE_SCENES.npy", "time_index": 2, "sensor": "sentinel2", "scale": 2.0,
             "window": {"row": 3, "col": 5, "height": 60, "width": 70}}
    entry = TileData(images=[image], root=str(real_file("")), target_sensor="rgb", tile_size=16).train_set.entries[0]
    windows = full_windows(entry.region, 16, 8)
    read = list(entry.read_each(windows))
    assert [window for window, _, _ in read] == windows and len(windows) == 6 * 7
    for window, cube, valid in read:
        expected_cube, expected_valid = entry.read(window)
        assert cube.shape == (16, 16, 3) and np.array_equal(cube, expected_cube) and np.array_equal(valid, expected_valid)


def test_stats_file_must_match_band_count(tmp_path, real_file):
    stats = tmp_path / "stats.json"
    stats.write_text(json.dumps({"files": [], "count": [1] * 13, "mean": [0.0] * 13, "std": [1.0] * 13, "bad_bands": []}))
    with pytest.raises(InputError, match="statistics for 13 bands, but the data has 224 bands"):
        TileData(tile_lists=ENMAP_LISTS, root=str(real_file("")), stats=str(stats))


def test_tile_larger_than_scene():
    with pytest.raises(InputError, match="tile size 64 is larger than scene"):
        TileData(synthetic={"sensor": "sentinel2", "height": 32, "width": 32}, tile_size=64)


def test_vca_fcls_recover_a_synthetic_mixture():
    synthetic = make_synthetic_scene("sentinel2", 40, 40, noise=0.0, sharpness=8.0, seed=3)
    pixels = synthetic.scene.cube.reshape(-1, 13).T.astype(np.float64)
    endmembers = vca(pixels, 4, seed=0)
    order, angles = match_endmembers(endmembers, synthetic.endmembers)
    assert angles.mean() < 0.1
    abundances = fcls(pixels, endmembers[:, order])
    assert abundance_rmse(abundances, synthetic.abundances.reshape(-1, 4).T) < 0.1


def test_vca_on_samson_matches_reference_endmembers(real_file):
    reference = scipy.io.loadmat(real_file("unmixing_samson/samson_dataset.mat"))
    endmembers = vca(reference["Y"], 3, seed=0)
    _, angles = match_endmembers(endmembers, reference["M"])
    assert angles.mean() < 0.15


def test_mae_recipe_fit_exports_encoder_and_probe_runs(real_file, tmp_path, monkeypatch, capsys):
    from pathlib import Path

    from rsdistill.cli import main
    from rsdistill.models.registry import load_encoder

    repo = Path(__file__).resolve().parents[1]
    monkeypatch.setenv("RSDISTILL_DATA", str(real_file("")))
    monkeypatch.chdir(tmp_path)
    assert main(["fit", "-c", str(repo / "configs/mae/karma_gabor.yaml"), "--trainer.max_epochs", "1", "--trainer.limit_train_batches", "2",
                 "--trainer.limit_val_batches", "1", "--model.init_args.embed_dim", "32", "--model.init_args.depth", "1",
                 "--trainer.enable_progress_bar", "false"]) == 0
    encoder = load_encoder(tmp_path / "runs/mae/karma_gabor/encoder.safetensors")
    card = encoder.card
    assert card["bands"] == 218 and len(encoder.preprocessing.kept) == 218 and "val/psnr_masked" in card["metrics"]
    assert card["recipe"]["mask_score"] == "gabor" and card["recipe"]["endmembers"] == 6
    capsys.readouterr()
    assert main(["probe", "--encoder", str(tmp_path / "runs/mae/karma_gabor/encoder.safetensors")]) == 0
    assert "linear-probe OA 0." in capsys.readouterr().out


def test_scene_windows_give_disjoint_training_and_held_out_regions(real_file):
    scene = {"path": "hsi_anomaly_lren/HYDICE_data.mat"}
    data = TileData(images=[{**scene, "window": {"row": 0, "col": 0, "height": 68, "width": 80}}],
                    test=[{**scene, "window": {"row": 68, "col": 0, "height": 32, "width": 80}}],
                    root=str(real_file("")), tile_size=16, stride=8)
    assert data.num_bands == 162 and len(data.train_set) == 7 * 9 and len(data.test_set) == 2 * 5
    with pytest.raises(InputError, match="window .* lies outside the 100×80 scene"):
        TileData(images=[{**scene, "window": {"row": 90, "col": 0, "height": 32, "width": 80}}], root=str(real_file("")))
    with pytest.raises(InputError, match="window needs exactly row, col, height and width"):
        TileData(images=[{**scene, "window": {"row": 0, "col": 0, "rows": 32}}], root=str(real_file("")))


def test_pretrain_experiment_over_datasets_of_different_band_counts(tmp_path):
    from rsdistill.experiments.pretrain import run_pretrain_experiment

    tiny = {"embed_dim": 16, "depth": 1, "num_heads": 2, "decoder_embed_dim": 8, "decoder_depth": 1, "decoder_num_heads": 2}
    config = {
        "data": {"tile_size": 8, "batch_size": 8},
        "datasets": {
            "s2": {"data": {"synthetic": {"sensor": "sentinel2", "height": 16, "width": 16}}},
            "hls": {"data": {"synthetic": {"sensor": "hls_l30", "height": 16, "width": 16}}, "model": {"patch_size": 2}},
        },
        "trainer": {"max_epochs": 1, "enable_progress_bar": False, "enable_model_summary": False},
        "recipes": {"random": {**tiny, "mask_score": "random", "loss_weights": {"mse": 1.0}}},
        "seeds": [0],
    }
    records = run_pretrain_experiment(config, tmp_path, log=lambda _: None)
    assert [(r["dataset"], r["recipe"]) for r in records] == [("s2", "random"), ("hls", "random")]
    card = json.loads((tmp_path / "hls/random/seed_0/encoder.json").read_text())
    assert card["architecture"]["patch_size"] == 2 and card["bands"] < 13
    table = (tmp_path / "results.md").read_text()
    assert "| s2 · random |" in table and "| hls · random |" in table
    assert "± –" in table and "± 0.0000" not in table, "one seed: no spread to show"
    assert run_pretrain_experiment(config, tmp_path, log=lambda _: None) == records  # finished runs are reused
    with pytest.raises(InputError, match="dataset 's2': unknown keys \\['models'\\]"):
        run_pretrain_experiment({**config, "datasets": {"s2": {"models": {}}}}, tmp_path / "bad")
    # --recipes: only the named recipes run and are reported (the finished ones reused), unknown names refused
    two = {**config, "recipes": {**config["recipes"], "gabor": {**tiny, "mask_score": "gabor"}}}
    assert [r["recipe"] for r in run_pretrain_experiment(two, tmp_path, log=lambda _: None, recipes=["random"])] == ["random", "random"]
    assert not (tmp_path / "s2/gabor").exists() and "gabor" not in (tmp_path / "results.md").read_text()
    with pytest.raises(InputError, match="--recipes: 'gabbor' is not one of the experiment's recipes \\(random, gabor\\)"):
        run_pretrain_experiment(two, tmp_path, recipes=["gabbor"])


def test_a_fit_without_validation_tiles_has_no_validation_loop(tmp_path, real_file, recwarn):
    """Lightning warned "Total length of `list` across ranks is zero" at every such fit (an empty
    validation loader); the data module now switches the loop off instead."""
    from rsdistill.experiments.pretrain import run_pretrain_experiment

    config = {"data": {"tile_lists": ENMAP_LISTS, "root": str(real_file("")), "tile_size": 16, "stride": 16, "batch_size": 8},
              "trainer": {"max_epochs": 1, "limit_train_batches": 1, "enable_progress_bar": False, "enable_model_summary": False},
              "recipes": {"random": {"embed_dim": 16, "depth": 1, "num_heads": 2, "decoder_embed_dim": 8, "decoder_depth": 1, "decoder_num_heads": 2}},
              "seeds": [0]}
    run_pretrain_experiment(config, tmp_path, log=lambda _: None)
    assert not [str(w.message) for w in recwarn if "across ranks is zero" in str(w.message)]


def test_train_tiles_per_epoch_draws_anew_and_repeats_a_small_set():
    data = TileData(synthetic={"sensor": "sentinel2", "height": 32, "width": 32}, tile_size=8, stride=4, batch_size=4,
                    train_tiles_per_epoch=6)
    loader = data.train_dataloader()
    assert len(data.train_set) > 6 and len(loader.sampler) == 6
    first = list(loader.sampler)
    loader.sampler.set_epoch(1)
    assert list(loader.sampler) != first
    data.train_tiles_per_epoch = 2 * len(data.train_set) + 1  # fixed steps for a shrunken set: every tile twice or three times
    counts = np.bincount(list(data.train_dataloader().sampler), minlength=len(data.train_set))
    assert counts.min() == 2 and counts.max() == 3


def test_max_train_scenes_takes_nested_seeded_subsets(real_file):
    options = {"tile_lists": ENMAP_LISTS, "root": str(real_file("")), "tile_size": 16, "stride": 8}
    trained = {}
    for count, seed in [(2, 0), (4, 0), (2, 1)]:
        data = TileData(**options, max_train_scenes=count, seed=seed)
        trained[count, seed] = set(data.info["scenes"]) - {entry.name for entry in data.test_set.entries}
        assert len(trained[count, seed]) == count and len(data.train_set) == count * 9 and len(data.test_set) == 2 * 4
    assert trained[2, 0] < trained[4, 0] and trained[2, 0] != trained[2, 1]
    for bad in (0, 15):
        with pytest.raises(InputError, match=f"max_train_scenes must be a whole number from 1 to the 14 training scenes, got {bad}"):
            TileData(**options, max_train_scenes=bad)


def test_pretraining_data_budget_curve_chooses_on_validation_and_tests_once(real_file, tmp_path):
    """A sweep over max_train_scenes of a plain recipe and a grid recipe (a dotted, nested option):
    the grid is chosen on the probe's validation tiles, only the chosen point is tested."""
    from rsdistill.experiments.curve import run_pretrain_sweep

    lists = "enmap_potsdam_specdeepmap/{}_files.csv"
    tiny = {"embed_dim": 16, "depth": 1, "num_heads": 2, "decoder_embed_dim": 8, "decoder_depth": 1, "decoder_num_heads": 2, "mask_score": "random"}
    config = {
        "data": {"tile_lists": ENMAP_LISTS, "root": str(real_file("")), "tile_size": 16, "stride": 8, "batch_size": 4, "train_tiles_per_epoch": 4},
        "trainer": {"max_epochs": 1, "enable_progress_bar": False, "enable_model_summary": False},
        "recipes": {"plain": {**tiny, "loss_weights": {"mse": 1.0}},
                    "searched": {**tiny, "loss_weights": {"mse": 1.0}, "grid": {"loss_weights.ssim": [0.0, 1.0]}}},
        "probe": {"tile_lists": {s: lists.format(s) for s in ("train", "validation", "test")}},
        "pairs": [["searched", "plain"]],
        "sweep": {"max_train_scenes": [2]},
        "seeds": [0],
    }
    config["probe"]["tile_lists"]["val"] = config["probe"]["tile_lists"].pop("validation")
    curve = run_pretrain_sweep(config, tmp_path, log=lambda _: None)
    assert [p["value"] for p in curve["points"]] == [2] and curve["score"] == "probe_oa"
    assert "| searched − plain |" in (tmp_path / "curve.md").read_text()
    run = tmp_path / "max_train_scenes_2/searched/seed_0"
    record = json.loads((run / "scores.json").read_text())
    assert record["select"] == "probe_oa" and [p["label"] for p in record["grid"]] == ["loss_weights.ssim_0.0", "loss_weights.ssim_1.0"]
    card = json.loads((run / "encoder.json").read_text())
    assert card["recipe"]["loss_weights"] == {"mse": 1.0, "ssim": float(record["chosen"].rsplit("_", 1)[1])}
    assert len(set(card["scenes"])) == 2 + 2  # the budget's two training scenes, the two test tiles
    for point in record["grid"]:
        metrics = run.parent / point["label"] / "seed_0" / "metrics.csv"
        assert (metrics.is_file() and "test/" in metrics.read_text()) == (point["label"] == record["chosen"])
    assert "Chosen on the probe's validation tiles" in (tmp_path / "max_train_scenes_2/results.md").read_text()
    with pytest.raises(InputError, match="recipe 'searched': a grid is searched on the probe's validation tiles; give probe.tile_lists.val"):
        run_pretrain_sweep({**config, "probe": {"tile_lists": ENMAP_LISTS}}, tmp_path / "bad", log=lambda _: None)


