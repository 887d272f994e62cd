"""Unmixing on any scene: reference files in the common layouts, scale-free FCLS, fair seeds, the
``unmixing-eval`` verb end to end, and ``info`` on reference files."""

import json
from pathlib import Path

import numpy as np
import pytest
import scipy.io

from fixtures import tile_info
from rsdistill.cli import main
from rsdistill.data.synthetic import make_synthetic_scene
from rsdistill.errors import InputError
from rsdistill.io.describe import describe_file
from rsdistill.io.matlab import load_mat_variables
from rsdistill.io.unmixing_reference import read_reference
from rsdistill.unmixing import extract_endmembers, fcls, match_endmembers, nfindr, reconstruction_rmse, vca, vca_restarts

REPO = Path(__file__).resolve().parents[1]
NAMES = ["1-Asphalt", "2-Grass", "3-Tree", "4-Roof"]


def _synthetic(height=20, width=12, seed=3):
    """A non-square noise-free mixture: cube (H, W, 13), endmembers (13, 4), abundances (H, W, 4)
    (smoothness 2: at the default 6 a scene this small has one constant mixture)."""
    synthetic = make_synthetic_scene("sentinel2", height, width, smoothness=2.0, noise=0.0, sharpness=8.0, seed=seed)
    return synthetic.scene.cube.astype(np.float64), synthetic.endmembers, synthetic.abundances


def _column_major(abundances_hwm: np.ndarray) -> np.ndarray:
    """(H, W, M) -> (M, N) with MATLAB's column-major pixel order."""
    return abundances_hwm.transpose(2, 1, 0).reshape(abundances_hwm.shape[2], -1)


def _write_reference_file(path, cube, endmembers, abundances, order="column", **extra):
    height, width, bands = cube.shape
    pixels = cube.transpose(2, 1, 0).reshape(bands, -1)  # the cube itself as a column-major pixel matrix
    a = _column_major(abundances) if order == "column" else abundances.reshape(-1, abundances.shape[2]).T
    names = np.empty((4, 1), dtype=object)
    names[:, 0] = [np.array([n]) for n in NAMES]
    scipy.io.savemat(path, {"Y": pixels, "nRow": height, "nCol": width, "M": endmembers,
                            "M1": endmembers[:, ::-1] + 0.01, "A": a, "cood": names, **extra})
    return path


def test_nfindr_finds_the_pure_pixels_and_restarts_choose_by_reconstruction_only():
    """A noisy mixture that holds one pure pixel of each material: N-FINDR returns exactly those
    pixels from any start; the best of 10 VCA draws is the draw with the least FCLS reconstruction
    error (never worse than any single draw); every extraction is one line when misnamed."""
    rng = np.random.default_rng(0)
    endmembers = rng.uniform(0.05, 0.9, (20, 4))
    abundances = rng.dirichlet(np.full(4, 0.7), 500).T
    abundances[:, :4] = np.eye(4)  # pure pixels 0-3
    pixels = endmembers @ abundances + rng.normal(0, 0.002, (20, 500))
    for seed in range(3):
        assert sorted(np.flatnonzero(np.isin(pixels.T, nfindr(pixels, 4, seed=seed).T).all(axis=1))) == [0, 1, 2, 3]
    draws = [reconstruction_rmse(pixels, vca(pixels, 4, seed=r)) for r in range(10)]
    assert reconstruction_rmse(pixels, vca_restarts(pixels, 4, seed=0)) == min(draws)
    for method in ("vca", "vca_restarts", "nfindr", "nmf"):
        _, angles = match_endmembers(extract_endmembers(method, pixels, 4), endmembers)
        assert angles.max() < 0.05, method  # pure pixels present: each method finds every material
    with pytest.raises(InputError, match="unknown endmember extraction 'ppi'"):
        extract_endmembers("ppi", pixels, 4)


def test_fcls_is_scale_free():
    cube, endmembers, _ = _synthetic()
    pixels = cube.reshape(-1, cube.shape[2]).T
    reflectance = fcls(pixels, endmembers)
    digital_numbers = fcls(pixels * 1000, endmembers * 1000)
    assert np.abs(reflectance - digital_numbers).max() < 1e-6
    assert np.abs(digital_numbers.sum(axis=0) - 1).max() < 1e-3


@pytest.mark.parametrize("order", ["column", "row"])
def test_reference_pixel_order_is_detected_from_the_cube(tmp_path, order):
    cube, endmembers, abundances = _synthetic()
    path = _write_reference_file(tmp_path / "scene.mat", cube, endmembers, abundances, order)
    reference = read_reference(path, load_mat_variables(path), cube)
    assert reference.endmembers_key == "M" and reference.abundances_key == "A"  # M1 (an initialisation) loses to the name M
    assert reference.names == ["Asphalt", "Grass", "Tree", "Roof"]
    assert np.allclose(reference.abundances, abundances.reshape(-1, 4).T)
    assert f"{order}-major pixel order" in reference.notes[0]


def test_ambiguous_or_mismatched_references_are_one_line_errors(tmp_path):
    cube, endmembers, abundances = _synthetic()
    path = tmp_path / "two.mat"
    scipy.io.savemat(path, {"P": endmembers, "Q": endmembers + 0.1, "A": _column_major(abundances)})
    with pytest.raises(InputError, match="several endmember-like matrices \\(P, Q\\); name one with endmembers_key"):
        read_reference(path, load_mat_variables(path), cube)
    assert read_reference(path, load_mat_variables(path), cube, endmembers_key="Q").endmembers_key == "Q"
    with pytest.raises(InputError, match=r"endmembers 'P' are 13×4; expected \(bands = 12, M\) with M ≤ 32 and M = \[4\]"):
        read_reference(path, load_mat_variables(path), cube[:, :, :12], endmembers_key="P")


def test_info_describes_a_reference_and_never_calls_abundances_a_cube(tmp_path):
    cube, endmembers, abundances = _synthetic()
    only = tmp_path / "groundtruth.mat"
    scipy.io.savemat(only, {"M": endmembers, "A": _column_major(abundances), "nRow": 20, "nCol": 12})
    text = "\n".join(describe_file(only))
    assert "image cube" not in text and "4 endmembers × 13 bands ('M'" in text
    assert "'A': 4 × 240 pixels = 20 × 12; sum to one" in text


def test_max_value_scales_the_cube(tmp_path):
    from rsdistill.io.readers import read_scene

    cube, endmembers, abundances = _synthetic()
    kept = np.arange(3, 29, 2)  # 1-based indices of 13 of 30 original bands, as Zhu's SlectBands
    path = _write_reference_file(tmp_path / "dn.mat", cube * 4096, endmembers, abundances, maxValue=4096,
                                 SlectBands=kept[:, None], wavelength=np.linspace(400, 2500, 30)[None])
    scene = read_scene(path)
    assert np.allclose(scene.cube, cube, atol=1e-5)
    assert np.allclose(scene.wavelengths, np.linspace(400, 2500, 30)[kept - 1])
    text = "\n".join(describe_file(path))
    assert "divided by the file's maxValue 4096" in text and "bands SlectBands (1-based) 3-27 of the original sensor" in text


def test_endmember_init_file_of_the_wrong_shape_is_named(tmp_path):
    from rsdistill.tasks.pretrain import MAEPretrainer

    bad = tmp_path / "init.npy"
    np.save(bad, np.zeros((5, 4), dtype=np.float32))
    with pytest.raises(InputError, match="unknown endmember_init 'vcaa'"):
        MAEPretrainer(tile_info(13), endmembers=4, endmember_init="vcaa")
    task = MAEPretrainer(tile_info(13), embed_dim=16, depth=1, num_heads=2, decoder_embed_dim=8, decoder_depth=1,
                         endmembers=4, endmember_init=str(bad))
    with pytest.raises(InputError, match=r"init.npy: endmember_init holds 5×4; expected \(bands, endmembers\) = \(13, 4\)"):
        task._initial_endmembers(4)


def test_unmixing_eval_on_a_user_scene_end_to_end(tmp_path, monkeypatch, capsys):
    """A user's cube and reference (a .mat in DN with maxValue, non-square, column-major): one
    seed, one epoch. The baseline and KARMA start from the same VCA draw; every output is written."""
    monkeypatch.chdir(tmp_path)
    cube, endmembers, abundances = _synthetic(height=24, width=16)
    _write_reference_file(tmp_path / "user_scene.mat", cube * 1000, endmembers, abundances, maxValue=1000)
    recipe = tmp_path / "karma.yaml"
    recipe.write_text((REPO / "configs/unmixing/karma.yaml").read_text().replace("embed_dim: 64", "embed_dim: 32")
                      .replace("decoder_embed_dim: 64", "decoder_embed_dim: 32"))
    code = main(["unmixing-eval", "--scene", "user_scene.mat", "-c", str(recipe), "--seeds", "[1]", "--epochs", "1", "--out", "out"])
    assert code == 0
    run = tmp_path / "out/seed_1"
    record = json.loads((run / "scores.json").read_text())
    methods = record["methods"]
    assert list(methods) == ["VCA + FCLS", "VCA best of 10 + FCLS", "N-FINDR + FCLS", "NMF + FCLS", "KARMA", "KARMA endmembers + FCLS"]
    assert set(methods["KARMA"]["sad_per_endmember"]) == {"Asphalt", "Grass", "Tree", "Roof"}
    # noise-free synthetic mixture: VCA + FCLS is near exact
    assert methods["VCA + FCLS"]["sad"] < 0.1 and methods["VCA + FCLS"]["abundance_rmse"] < 0.1
    # the refinement uses KARMA's endmembers: same SAD, per-pixel abundances
    assert methods["KARMA endmembers + FCLS"]["sad"] == methods["KARMA"]["sad"]
    pixels = cube.reshape(-1, 13).T
    assert np.allclose(np.load(run / "endmember_init.npy"), vca(pixels, 4, seed=1), atol=1e-5)  # the baseline's draw
    arrays = np.load(run / "unmixing.npz")
    assert arrays["karma_abundances"].shape == (24, 16, 4) and arrays["reference_abundances"].shape == (24, 16, 4)
    assert (run / "unmixing.png").stat().st_size > 0 and (tmp_path / "out/results.md").exists()
    assert "| user_scene | VCA + FCLS |" in capsys.readouterr().out
    paired = json.loads((tmp_path / "out/results.json").read_text())["paired"]
    # the reference's own endmembers with FCLS: a noise-free mixture gives its abundances back
    assert json.loads((tmp_path / "out/results.json").read_text())["reference"]["fcls"]["abundance_rmse"] < 1e-3
    sad = next(p for p in paired if p["metric"] == "sad")
    assert (sad["model"], sad["reference"]) == ("KARMA", "VCA + FCLS")
    assert sad["differences"] == [pytest.approx(methods["KARMA"]["sad"] - methods["VCA + FCLS"]["sad"])]
    # the same folder with other settings is refused, not reused; KARMA can start from another extraction
    assert main(["unmixing-eval", "--scene", "user_scene.mat", "-c", str(recipe), "--seeds", "[1]", "--epochs", "1", "--out", "out",
                 "--init", "nfindr"]) == 2
    assert "init: 'vca' -> 'nfindr'" in capsys.readouterr().err
    assert main(["unmixing-eval", "--scene", "user_scene.mat", "-c", str(recipe), "--seeds", "[1]", "--epochs", "1", "--out", "out_nfindr",
                 "--init", "nfindr"]) == 0
    assert np.allclose(np.load(tmp_path / "out_nfindr/seed_1/endmember_init.npy"), nfindr(pixels, 4, seed=1), atol=1e-5)
    # a variant against another run of the same scene and seeds: KARMA paired per seed
    assert main(["unmixing-eval", "--scene", "user_scene.mat", "-c", str(recipe), "--seeds", "[1]", "--epochs", "1", "--out", "out_nfindr",
                 "--init", "nfindr", "--against", "out"]) == 0
    against = [p for p in json.loads((tmp_path / "out_nfindr/results.json").read_text())["paired"] if p["reference"] == "KARMA (out)"]
    other = json.loads((tmp_path / "out_nfindr/seed_1/scores.json").read_text())["methods"]["KARMA"]
    assert [p["metric"] for p in against] == ["abundance_rmse", "sad"]
    assert against[1]["differences"] == [pytest.approx(other["sad"] - methods["KARMA"]["sad"])]
    assert main(["unmixing-eval", "--scene", "user_scene.mat", "-c", str(recipe), "--seeds", "[1]", "--out", "out_nfindr", "--init", "nfindr",
                 "--epochs", "1", "--against", "nowhere"]) == 2
    assert "--against nowhere: no results.json there" in capsys.readouterr().err
    assert main(["unmixing-eval", "--scene", "user_scene.mat", "-c", str(recipe), "--out", "out_bad", "--init", "ppi"]) == 2
    assert "init 'ppi': KARMA starts from one of the extractions vca, vca_restarts, nfindr, nmf" in capsys.readouterr().err
    # a scene YAML holds the scene's options: giving them on the command line too is refused
    (tmp_path / "scene.yaml").write_text("scene: user_scene.mat\n")
    assert main(["unmixing-eval", "--scene", "scene.yaml", "--scale", "2", "-c", str(recipe), "--out", "out2"]) == 2
    assert "put scale in it" in capsys.readouterr().err
    # more materials than the reference: each reference material matched, no abundance RMSE; fewer: refused
    assert main(["unmixing-eval", "--scene", "user_scene.mat", "--endmembers", "5", "-c", str(recipe), "--seeds", "[0]",
                 "--epochs", "1", "--out", "out5"]) == 0
    five = json.loads((tmp_path / "out5/seed_0/scores.json").read_text())["methods"]["KARMA"]
    assert len(five["sad_per_endmember"]) == 4 and "abundance_rmse" not in five
    assert main(["unmixing-eval", "--scene", "user_scene.mat", "--endmembers", "3", "-c", str(recipe), "--out", "out3"]) == 2
    assert "3 endmembers to estimate; expected from the reference's 4" in capsys.readouterr().err


def test_reference_check_finds_a_reference_stored_max_normalised():
    """A noise-free mixture: its own endmembers with FCLS give back its abundances; the same
    endmembers each divided by its maximum (as Samson's file stores them) do not, and the
    per-endmember scale fitted to the cube undoes exactly that division."""
    from rsdistill.experiments.unmixing import UnmixingScene, reference_check
    from rsdistill.io.unmixing_reference import UnmixingReference

    cube, endmembers, abundances = _synthetic()
    as_given = abundances.reshape(-1, 4).T

    def check(stored):
        return reference_check(UnmixingScene("s", "s.mat", None, 1.0, cube, UnmixingReference("s.mat", stored, as_given, NAMES, "M", "A")))

    exact = check(endmembers)
    assert exact["reconstruction_rmse"] < 1e-6 and exact["fcls"]["abundance_rmse"] < 1e-3
    np.testing.assert_allclose(exact["scales"], 1.0, atol=1e-6)
    maxima = endmembers.max(axis=0)
    normalised = check(endmembers / maxima)
    assert normalised["fcls"]["abundance_rmse"] > 0.05 and normalised["reconstruction_rmse"] > 0.01
    np.testing.assert_allclose(normalised["scales"], maxima, rtol=1e-6)
    assert normalised["scaled_fcls"]["abundance_rmse"] < 1e-3 and normalised["scaled_reconstruction_rmse"] < 1e-6


def test_unmixing_eval_on_samson(real_file, monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("RSDISTILL_DATA", str(real_file("")))
    monkeypatch.chdir(tmp_path)
    code = main(["unmixing-eval", "--scene", str(REPO / "configs/unmixing/samson.yaml"), "-c", str(REPO / "configs/unmixing/karma.yaml"),
                 "--seeds", "[0]", "--epochs", "1", "--out", "out"])
    assert code == 0
    methods = json.loads((tmp_path / "out/seed_0/scores.json").read_text())["methods"]
    assert methods["VCA + FCLS"]["sad"] < 0.15
    # KARMA starts from the baseline's VCA draw: after one epoch its endmembers are still close
    assert methods["KARMA"]["sad"] < methods["VCA + FCLS"]["sad"] + 0.05
    assert set(methods["KARMA"]["sad_per_endmember"]) == {"soil", "tree", "water"}
    assert "| samson | KARMA |" in capsys.readouterr().out


def test_nonnegative_endmembers_are_projected_after_each_step():
    import torch

    from rsdistill.preprocessing import Preprocessing
    from rsdistill.tasks.pretrain import MAEPretrainer

    info = {**tile_info(5), "preprocessing": Preprocessing.create(5, [0.5] * 5, [0.25] * 5).to_dict()}
    task = MAEPretrainer(info, embed_dim=16, depth=1, num_heads=2, decoder_embed_dim=8, decoder_depth=1, endmembers=3,
                         nonnegative_endmembers=True)
    task.model.mixing.endmembers.data.fill_(-5.0)  # physical value 0.5 − 5 × 0.25 < 0
    task.on_train_batch_end(None, None, 0)
    physical = task.preprocessing.denormalise(task.model.mixing.endmembers.detach(), channel_axis=0)
    assert torch.allclose(physical, torch.zeros_like(physical))


def test_spectral_angle_hungarian_matching_and_rmse_by_hand():
    from rsdistill.unmixing import abundance_rmse, match_endmembers, spectral_angles

    # 2-band spectra at known angles from the x axis: reference at 0°, 30°, 90°
    def at(*degrees):
        radians = np.radians(degrees)
        return np.stack([np.cos(radians), np.sin(radians)])  # (bands 2, M)

    reference = at(0, 30, 90)
    np.testing.assert_allclose(spectral_angles(reference, 3.0 * at(45)), np.radians([[45], [15], [45]]), atol=1e-12)  # scale-free
    # estimated 85°, 5°, 40° (shuffled): matched columns (1, 2, 0), angles 5°, 10°, 5°
    order, angles = match_endmembers(at(85, 5, 40), reference)
    assert order.tolist() == [1, 2, 0]
    np.testing.assert_allclose(np.degrees(angles), [5, 10, 5], atol=1e-9)
    # where the nearest-first choice is wrong: reference 0°, 20° and estimated 19°, 40°. Nearest first pairs
    # 20°-19° (1°) and leaves 0°-40° (40°), 41° in all; the assignment 0°-19°, 20°-40° costs 39°
    order, angles = match_endmembers(at(19, 40), at(0, 20))
    assert order.tolist() == [0, 1] and np.degrees(angles).sum() == pytest.approx(39)
    estimated, truth = np.array([[0.5, 0.0], [0.5, 1.0]]), np.array([[1.0, 0.0], [0.0, 1.0]])
    assert abundance_rmse(estimated, truth) == pytest.approx(np.sqrt((0.25 + 0 + 0.25 + 0) / 4))


def test_the_volume_term_is_the_simplex_log_volume_and_shrinks_the_endmembers():
    """½·log det(DᵀD) by hand on a right triangle (area ½·|u|·|v|), invariant to a shift of every
    endmember; in a KARMA step with only that term the endmembers move toward each other."""
    import torch

    from rsdistill.losses.reconstruction import reconstruction_terms, simplex_log_volume
    from rsdistill.tasks.pretrain import MAEPretrainer

    triangle = torch.tensor([[0.0, 3.0, 0.0], [0.0, 0.0, 2.0], [0.0, 0.0, 0.0], [0.0, 0.0, 0.0]])  # 4 bands, 3 endmembers
    assert simplex_log_volume(triangle).item() == pytest.approx(np.log(3.0 * 2.0), abs=1e-5)  # ½·log(9·4)
    assert simplex_log_volume(triangle + 5.0).item() == pytest.approx(np.log(6.0), abs=1e-5)
    # the floor δ adds δ·C to the Gram diagonal (C = 4 bands): ½·log((9 + 4δ)(4 + 4δ)), and a
    # degenerate simplex (two endmembers equal) is bounded below by ½·(M−1)·log(δ·C) instead of NaN/−∞
    assert simplex_log_volume(triangle, floor=0.25).item() == pytest.approx(0.5 * np.log(10.0 * 5.0), abs=1e-5)
    degenerate = triangle.clone()
    degenerate[:, 2] = degenerate[:, 0]
    assert simplex_log_volume(degenerate, floor=0.25).item() == pytest.approx(0.5 * np.log(10.0 * 1.0), abs=1e-5)
    assert simplex_log_volume(degenerate).item() < -5
    with pytest.raises(InputError, match="volume_floor must be >= 0"):
        MAEPretrainer(tile_info(4, tile_size=8), patch_size=4, endmembers=3, loss_weights={"volume": 1.0}, volume_floor=-1.0)
    floored = MAEPretrainer(tile_info(4, tile_size=8), patch_size=4, embed_dim=16, depth=1, num_heads=2, decoder_embed_dim=8,
                            decoder_depth=1, endmembers=3, loss_weights={"volume": 1.0}, volume_floor=0.25)
    floored.model.mixing.endmembers.data.copy_(degenerate)  # the recipe's floor reaches the training step's term
    _, _, floored_terms = floored._step({"image": torch.randn(2, 4, 8, 8), "valid": torch.ones(2, 8, 8, dtype=torch.bool)}, "masked")
    assert floored_terms["volume"].item() == pytest.approx(0.5 * np.log(10.0), abs=1e-5)
    task = MAEPretrainer(tile_info(4, tile_size=8), patch_size=4, embed_dim=16, depth=1, num_heads=2, decoder_embed_dim=8, decoder_depth=1,
                         endmembers=3, loss_weights={"volume": 1.0})
    mixing = task.model.mixing
    spread = lambda e: torch.cdist(e.T, e.T).sum().item()  # noqa: E731
    before = spread(mixing.endmembers.detach())
    terms = task.model(torch.randn(2, 4, 8, 8))
    loss = reconstruction_terms(task.loss_weights, terms, torch.zeros(2, 4, 64), torch.ones(2, 4, 16), 4, (8, 8), lambda x: x)["total"]
    loss.backward()
    with torch.no_grad():
        mixing.endmembers -= 0.01 * mixing.endmembers.grad
    assert spread(mixing.endmembers.detach()) < before
    no_branch = MAEPretrainer(tile_info(4, tile_size=8), patch_size=4, embed_dim=16, depth=1, num_heads=2, decoder_embed_dim=8,
                              decoder_depth=1, loss_weights={"volume": 1.0})
    with pytest.raises(InputError, match="'volume' needs the linear-mixing branch"):
        reconstruction_terms(no_branch.loss_weights, no_branch.model(torch.randn(2, 4, 8, 8)), torch.zeros(2, 4, 64), torch.ones(2, 4, 16),
                             4, (8, 8), lambda x: x)


def test_pixel_abundances_add_a_linear_term_of_each_pixels_own_spectrum():
    """``pixel_abundances``: zero at the start (the token-only head's abundances exactly); then each
    pixel's logits differ from the token-only ones by W·x + b of its own spectrum (checked through
    log-ratios, which softmax keeps); for masked patches the spectrum is the pixel head's detached
    reconstruction, so the abundances never train the pixel head."""
    import torch

    from rsdistill.models.mae import MaskedAutoencoder

    torch.manual_seed(0)
    shape = dict(bands=5, img_size=8, patch_size=4, embed_dim=16, depth=1, num_heads=2, decoder_embed_dim=8, decoder_depth=1, endmembers=3)
    token_only, per_pixel = MaskedAutoencoder(**shape), MaskedAutoencoder(**shape, pixel_abundances=True)
    per_pixel.load_state_dict(token_only.state_dict(), strict=False)
    images = torch.randn(2, 5, 8, 8)
    assert torch.allclose(per_pixel.unmix(images), token_only.unmix(images))
    with torch.no_grad():
        per_pixel.mixing.spectral.weight.normal_(), per_pixel.mixing.spectral.bias.normal_()
    logits = per_pixel.mixing.spectral(images.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)  # (N, M, H, W)
    ratio = per_pixel.unmix(images).log() - token_only.unmix(images).log()
    assert torch.allclose(ratio - ratio[:, :1], logits - logits[:, :1], atol=1e-4)
    out = per_pixel(images, mask_ratio=0.5)
    out["abundances"].pow(2).sum().backward()
    assert per_pixel.decoder.pred.weight.grad is None and per_pixel.mixing.spectral.weight.grad.abs().sum() > 0
