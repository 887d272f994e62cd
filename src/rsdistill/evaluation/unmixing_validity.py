"""Physical validity of KARMA's linear-mixing branch on unmixing references.

For each reference scene (Samson, Moffett, MUUFL Gulfport in shared/data; pixel matrices in MATLAB
column-major order) a KARMA autoencoder with M = the reference's endmember count is pretrained on
the scene itself; its endmember matrix (normalisation undone: abundances sum to one, so
E_reflectance = E_normalised·σ + μ) and its abundances of every pixel (nothing masked) are
compared with the reference: mean spectral angle distance (SAD, Hungarian-matched) and abundance
RMSE. VCA + FCLS, computed in the same run on the same pixels, is the classical baseline.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import scipy.io
import torch
import torch.nn.functional as F

from rsdistill.data.paths import resolve
from rsdistill.errors import InputError
from rsdistill.data.tiles import TileData
from rsdistill.evaluation.experiment import fit_resuming
from rsdistill.io.scene import Scene
from rsdistill.recipes import make_recipe, parse_recipe
from rsdistill.tasks.pretrain import MAEPretrainer
from rsdistill.unmixing import abundance_rmse, fcls, match_endmembers, vca


@dataclass
class Reference:
    path: str
    endmembers: np.ndarray  # (bands, M)
    abundances: np.ndarray  # (M, H·W) in row-major pixel order of the cube


def _column_major(abundances_mn: np.ndarray, height: int, width: int) -> np.ndarray:
    """(M, N) in MATLAB pixel order -> (M, H·W) in row-major order."""
    m = abundances_mn.shape[0]
    return abundances_mn.reshape(m, width, height).transpose(0, 2, 1).reshape(m, -1)


def load_reference(name: str, root=None) -> Reference:
    if name == "samson":
        path = resolve("unmixing_samson/samson_dataset.mat", root)
        ref = scipy.io.loadmat(path)
        return Reference(str(path), ref["M"], _column_major(ref["A"], 95, 95))
    if name == "moffett":
        path = resolve("unmixing_moffett/moffett.mat", root)
        ref = scipy.io.loadmat(path)
        return Reference(str(path), ref["GT"].T, ref["S_GT"].reshape(-1, ref["S_GT"].shape[2]).T)
    if name == "muufl":
        path = resolve("unmixing_muufl_gulfport/muffle_dataset_130_90.mat", root)
        ref = scipy.io.loadmat(path)
        return Reference(str(path), ref["M"], ref["label"].reshape(-1, ref["label"].shape[2]).T)
    raise InputError(f"unknown unmixing reference {name!r}; choose samson, moffett or muufl")


def evaluate(estimated_endmembers, estimated_abundances, reference: Reference) -> dict:
    order, angles = match_endmembers(estimated_endmembers, reference.endmembers)
    return {"sad": float(angles.mean()), "abundance_rmse": abundance_rmse(estimated_abundances[order], reference.abundances)}


def karma_unmixing(scene_path: str, endmembers: int, seed: int, epochs: int, run_dir, tile: int = 16) -> tuple[np.ndarray, np.ndarray]:
    """Pretrain KARMA on one scene (its encoder and card saved in ``run_dir``); return endmembers
    (bands, M) in the scene's units and abundances (M, H·W)."""
    recipe = make_recipe(
        MAEPretrainer, TileData,
        {"patch_size": 4, "embed_dim": 64, "depth": 2, "num_heads": 4, "decoder_embed_dim": 64, "decoder_depth": 1,
         "mask_score": "gabor", "endmembers": endmembers, "endmember_init": "vca", "loss_weights": {"huber": 1.0, "sam": 1.0, "physics": 1.0}},
        {"images": [scene_path], "tile_size": tile, "stride": 4, "batch_size": 32, "seed": seed},
        {"max_epochs": epochs, "enable_progress_bar": False, "enable_model_summary": False}, run_dir, seed,
    )
    cli = parse_recipe(recipe)
    task = cli.model
    fit_resuming(cli.trainer, task, cli.datamodule, run_dir)
    scene = Scene.read(scene_path)
    height, width = scene.shape[:2]
    image = torch.from_numpy(task.preprocessing.cube(scene.cube))[None]  # every pixel of these scenes is valid
    image = F.pad(image, (0, (-width) % 4, 0, (-height) % 4), mode="reflect")
    task.model.eval()
    with torch.no_grad():
        abundances = task.model.unmix(image)[0, :, :height, :width].reshape(endmembers, -1).numpy()
    endmember_matrix = task.preprocessing.denormalise(task.model.mixing.endmembers.detach(), channel_axis=0).numpy()
    return endmember_matrix, abundances


def run_unmixing_validity(names, seeds, epochs: int, out_dir, root=None, log=print) -> list[dict]:
    rows = []
    for name in names:
        reference = load_reference(name, root)
        scene = Scene.read(reference.path)
        pixels = scene.cube.reshape(-1, scene.shape[2]).T.astype(np.float64)
        m = reference.endmembers.shape[1]
        for seed in seeds:
            baseline_e = vca(pixels, m, seed=seed)
            baseline = evaluate(baseline_e, fcls(pixels, baseline_e), reference)
            karma_e, karma_a = karma_unmixing(reference.path, m, seed, epochs, Path(out_dir) / name / f"seed_{seed}")
            karma = evaluate(karma_e, karma_a, reference)
            for method, scores in (("VCA + FCLS", baseline), ("KARMA (ours)", karma)):
                rows.append({"scene": name, "method": method, "seed": seed, **scores})
                log(f"{name} seed {seed} {method}: SAD {scores['sad']:.4f} rad, abundance RMSE {scores['abundance_rmse']:.4f}")
    return rows


def markdown(rows: list[dict]) -> str:
    lines = ["| scene | method | SAD (rad) | abundance RMSE | seeds |", "|---|---|---|---|---|"]
    for key in dict.fromkeys((r["scene"], r["method"]) for r in rows):
        runs = [r for r in rows if (r["scene"], r["method"]) == key]
        sad, rmse = np.array([r["sad"] for r in runs]), np.array([r["abundance_rmse"] for r in runs])
        lines.append(f"| {key[0]} | {key[1]} | {sad.mean():.4f} ± {sad.std():.4f} | {rmse.mean():.4f} ± {rmse.std():.4f} | {len(runs)} |")
    return "\n".join(lines)
