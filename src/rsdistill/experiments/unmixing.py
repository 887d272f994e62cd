"""Unmixing on any scene: KARMA's linear-mixing branch against a reference and against VCA + FCLS.

A scene is a cube (any reader format) and a reference file (``io.unmixing_reference``: endmembers,
abundances, names); a scene YAML (``configs/unmixing/<scene>.yaml``) names both with their read
options. In each run (seed s):

1. every classical extraction (``unmixing.EXTRACTORS``: VCA, the best of 10 VCA draws by
   reconstruction error, N-FINDR, NMF; seed s) on every pixel gives a baseline's endmembers, FCLS
   their abundances;
2. KARMA (any KARMA recipe, e.g. ``configs/unmixing/karma.yaml``) is pretrained on the scene with
   its endmembers initialised from **one of those draws** (``init``, VCA by default; the draw as
   .npy in ``endmember_init``), so that baseline and KARMA differ only in what KARMA learns;
3. KARMA's abundances of every pixel (its decoder's softmax head, nothing masked), and a per-pixel
   refinement: FCLS with KARMA's learned endmembers ("KARMA endmembers + FCLS").

Each method's endmembers are matched to the reference by spectral angle (Hungarian); scores are
the mean and per-endmember SAD, whether every reference material was found (matched SAD below
``FOUND_SAD`` = 0.15 rad), the abundance RMSE over every pixel, and for the classical baselines the
reconstruction RMSE of the pixels (what ``vca_restarts`` chooses by: the data, never the reference). Per run: ``scores.json``,
``unmixing.npz`` (endmembers (bands, M) and abundance maps (H, W, M) of the reference and of each
method, matched to the reference order) and ``unmixing.png``. Finished runs are reused. Once per
scene, ``reference_check``: how well the reference's own endmembers and FCLS reproduce its
abundances, to read the abundance RMSE of a linear-mixing method against.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
import yaml
from scipy.optimize import nnls

from rsdistill.data.paths import resolve
from rsdistill.errors import InputError
from rsdistill.experiments.runner import fit_resuming, run_once
from rsdistill.files import atomic_write
from rsdistill.io.matlab import grid_of, load_mat_variables
from rsdistill.io.readers import read_scene
from rsdistill.io.unmixing_reference import PIXEL_ORDERS, UnmixingReference, read_reference
from rsdistill.recipes import load_recipe, parse_recipe
from rsdistill.unmixing import EXTRACTOR_NAMES, EXTRACTORS, abundance_rmse, extract_endmembers, fcls, match_endmembers, reconstruction_rmse

KARMA, REFINED = "KARMA", "KARMA endmembers + FCLS"
FOUND_SAD = 0.15  # rad: a reference material counts as found when its matched endmember is closer than this


def baseline_name(extractor: str) -> str:
    """The table's name of an extraction followed by FCLS, e.g. ``VCA + FCLS``."""
    return f"{EXTRACTOR_NAMES[extractor]} + FCLS"


BASELINE = baseline_name("vca")
SCENE_KEYS = ("scene", "reference", "name", "key", "scale", "endmembers_key", "abundances_key", "pixel_order", "names")


@dataclass
class UnmixingScene:
    """A cube (H, W, bands) in the reference's units (the file's values × ``scale``) and its reference."""

    name: str
    path: str
    key: str | None
    scale: float
    cube: np.ndarray
    reference: UnmixingReference

    @property
    def pixels(self) -> np.ndarray:
        """(bands, H·W) in row-major pixel order, float64."""
        return self.cube.reshape(-1, self.cube.shape[2]).T.astype(np.float64)


def load_unmixing_scene(scene, reference=None, *, name=None, key=None, scale: float = 1.0, endmembers_key=None,
                        abundances_key=None, pixel_order: str = "auto", names=None) -> UnmixingScene:
    """``scene``: a cube file, or a scene YAML holding these arguments (``SCENE_KEYS``; relative
    paths under the data root). ``reference`` defaults to the cube's own file."""
    if str(scene).endswith((".yaml", ".yml")):
        description = _read_scene_yaml(scene)
        return load_unmixing_scene(**{"name": Path(scene).stem, **description})
    path = resolve(str(scene))
    reference_path = resolve(str(reference)) if reference else path
    if reference_path.suffix.lower() != ".mat":
        raise InputError(f"{reference_path}: an unmixing reference is a .mat file (endmembers, abundances, names)")
    if pixel_order not in PIXEL_ORDERS:
        raise InputError(f"pixel_order {pixel_order!r}: choose one of {', '.join(PIXEL_ORDERS)}")
    if not scale > 0:
        raise InputError(f"scale must be positive, got {scale}")
    cube = read_scene(path, key=key).cube.astype(np.float64) * scale
    variables = load_mat_variables(reference_path)
    found = read_reference(reference_path, variables, cube, endmembers_key=endmembers_key, abundances_key=abundances_key,
                           pixel_order=pixel_order, grid=grid_of(variables))
    if names is not None:
        if len(names) != found.count:
            raise InputError(f"{reference_path}: {len(names)} names given for {found.count} reference endmembers")
        found.names = list(names)
    return UnmixingScene(name or path.stem, str(path), key, scale, cube, found)


def _read_scene_yaml(path) -> dict:
    try:
        description = yaml.safe_load(Path(path).read_text())
    except (OSError, yaml.YAMLError) as error:
        raise InputError(f"{path}: cannot read scene description ({error})") from None
    if not isinstance(description, dict) or "scene" not in description:
        raise InputError(f"{path}: a scene description is a YAML mapping with at least 'scene' (and {', '.join(SCENE_KEYS[1:])})")
    unknown = sorted(set(description) - set(SCENE_KEYS))
    if unknown:
        raise InputError(f"{path}: unknown key(s) {', '.join(unknown)}; a scene description has {', '.join(SCENE_KEYS)}")
    return description


def score(endmembers: np.ndarray, abundances: np.ndarray, reference: UnmixingReference) -> tuple[dict, np.ndarray]:
    """Scores of (bands, M) endmembers and (M, H·W) abundances (M ≥ the reference's count), and the
    columns matched to the reference's materials, in its order. Abundance RMSE only when the
    counts are equal (extra materials would take abundance from the matched ones)."""
    order, angles = match_endmembers(endmembers, reference.endmembers)
    scores = {"sad": float(angles.mean()), "sad_per_endmember": dict(zip(reference.names, map(float, angles))),
              "all_found": bool(angles.max() < FOUND_SAD)}
    if reference.abundances is not None and endmembers.shape[1] == reference.count:
        scores["abundance_rmse"] = abundance_rmse(abundances[order], reference.abundances)
    return scores, order


def reference_check(scene: UnmixingScene) -> dict | None:
    """How far the reference itself is from linear mixing of the cube (None without reference
    abundances): the RMS of pixels − E_ref·A_ref, and FCLS with the reference endmembers — as the
    file gives them, and each rescaled to the cube (the non-negative least-squares scale c_m of
    Y ≈ Σ_m c_m e_m a_mᵀ, for references stored max-normalised) — scored against the reference
    abundances. A reference whose own endmembers with FCLS miss its abundances was not made by
    linear mixing of this cube (or not in these units): abundance RMSE against it then ranks
    methods partly by agreement with that other process, not only by their endmembers."""
    reference = scene.reference
    if reference.abundances is None:
        return None
    pixels, endmembers, abundances = scene.pixels, reference.endmembers, reference.abundances
    # ‖Y − Σ c_m e_m a_mᵀ‖² = cᵀGc − 2bᵀc + const with G = (EᵀE)∘(AAᵀ), b_m = e_mᵀ Y a_m: NNLS on G's
    # Cholesky factor, so nothing of size bands × pixels × M is built.
    gram = (endmembers.T @ endmembers) * (abundances @ abundances.T)
    lower = np.linalg.cholesky(gram + 1e-12 * np.trace(gram) * np.eye(reference.count))
    scales = nnls(lower.T, np.linalg.solve(lower, np.einsum("bm,bn,mn->m", endmembers, pixels, abundances)))[0]
    scaled = endmembers * np.where(scales > 0, scales, 1.0)  # (a material scaled to 0 kept as given)
    check = {"reconstruction_rmse": reconstruction_rmse(pixels, endmembers, abundances), "scales": scales.tolist(),
             "scaled_reconstruction_rmse": reconstruction_rmse(pixels, scaled, abundances)}
    for name, used in (("fcls", endmembers), ("scaled_fcls", scaled)):
        estimated = fcls(pixels, used)
        check[name] = {"abundance_rmse": abundance_rmse(estimated, abundances),
                       "reconstruction_rmse": reconstruction_rmse(pixels, used, estimated)}
    return check


def reference_check_markdown(check: dict) -> str:
    """One table of ``reference_check``."""
    scales = ", ".join(f"{c:.3f}" for c in check["scales"])
    return ("The reference under the linear mixing every method here assumes (its own endmembers, as given "
            "and rescaled to the cube, with FCLS):\n\n"
            "| reference | abundance RMSE | pixel reconstruction RMSE |\n|---|---|---|\n"
            f"| its endmembers × its abundances | 0 | {check['reconstruction_rmse']:.4f} |\n"
            f"| its endmembers × ({scales}) × its abundances | 0 | {check['scaled_reconstruction_rmse']:.4f} |\n"
            f"| its endmembers + FCLS | {check['fcls']['abundance_rmse']:.4f} | {check['fcls']['reconstruction_rmse']:.4f} |\n"
            f"| its endmembers × ({scales}) + FCLS | {check['scaled_fcls']['abundance_rmse']:.4f} | "
            f"{check['scaled_fcls']['reconstruction_rmse']:.4f} |")


def _write_npy(path, save, *args, **kwargs) -> None:
    """``np.save``/``np.savez_compressed`` through a file handle (so no suffix is appended), atomically."""

    def write(tmp: str) -> None:
        with open(tmp, "wb") as handle:
            save(handle, *args, **kwargs)

    atomic_write(path, write)


def karma_unmixing(scene: UnmixingScene, recipe_path, count: int, initial_endmembers: np.ndarray, seed: int, run_dir,
                   epochs: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Pretrain the KARMA recipe on the scene, endmembers initialised from ``initial_endmembers``
    (bands, M); return its endmembers (bands, M) and abundances (M, H·W), in the scene's units."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    init_file = run_dir / "endmember_init.npy"
    _write_npy(init_file, np.save, initial_endmembers.astype(np.float32))
    recipe = load_recipe(recipe_path)
    model = recipe.get("model", {})
    if not str(model.get("class_path", "")).endswith("MAEPretrainer"):
        raise InputError(f"{recipe_path}: a KARMA recipe's model is rsdistill.tasks.MAEPretrainer, got {model.get('class_path')!r}")
    model["init_args"] = {**model.get("init_args", {}), "endmembers": count, "endmember_init": str(init_file)}
    data = recipe.setdefault("data", {"class_path": "rsdistill.data.TileData"})
    sources = ("images", "validation", "test", "tile_lists")
    data["init_args"] = {**{k: v for k, v in data.get("init_args", {}).items() if k not in sources},
                         "images": [{"path": scene.path, "scale": scene.scale, **({"key": scene.key} if scene.key else {})}]}
    recipe.update(seed_everything=seed, run_dir=str(run_dir))
    if epochs is not None:
        recipe.setdefault("trainer", {})["max_epochs"] = epochs
    recipe.setdefault("trainer", {}).update(enable_progress_bar=False, enable_model_summary=False)
    cli = parse_recipe(recipe, where=f"{recipe_path} on {scene.name}, seed {seed}")
    task = cli.model
    fit_resuming(cli.trainer, task, cli.datamodule, run_dir)
    height, width, _ = scene.cube.shape
    patch = task.hparams.patch_size
    image = torch.from_numpy(task.preprocessing.cube(scene.cube.astype(np.float32)))[None]  # every pixel of a reference scene is valid
    image = F.pad(image, (0, (-width) % patch, 0, (-height) % patch), mode="reflect")
    task.model.eval()
    with torch.no_grad():
        abundances = task.model.unmix(image)[0, :, :height, :width].reshape(count, -1).numpy().astype(np.float64)
    endmembers = task.preprocessing.denormalise(task.model.mixing.endmembers.detach(), channel_axis=0).numpy().astype(np.float64)
    return endmembers, abundances


def unmixing_run(scene: UnmixingScene, recipe_path, seed: int, run_dir, count: int | None = None, epochs: int | None = None,
                 init: str = "vca", overwrite: bool = False) -> dict:
    """One seed: every classical baseline, KARMA (started from the ``init`` extraction's draw) and
    its refinement, scored; writes the run's npz, JSON and figure. A finished run is reused only
    for the same settings (``runs.claim_settings``; ``overwrite`` replaces one of other settings)."""
    if init not in EXTRACTORS:
        raise InputError(f"init {init!r}: KARMA starts from one of the extractions {', '.join(EXTRACTORS)}")
    run_dir = Path(run_dir)
    count = count or scene.reference.count
    settings = {"scene": scene.path, "key": scene.key, "scale": scene.scale, "reference": scene.reference.names,
                "recipe": load_recipe(recipe_path), "endmembers": count, "epochs": epochs, "init": init, "seed": seed}
    return run_once(run_dir, settings, lambda: _unmixed(scene, recipe_path, seed, run_dir, count, epochs, init), overwrite)[0]


def _unmixed(scene: UnmixingScene, recipe_path, seed: int, run_dir: Path, count: int, epochs: int | None, init: str) -> dict:
    """One seed's record, computed (``unmixing_run``); its arrays and figure go to ``run_dir``."""
    from rsdistill.figures import unmixing_figure

    pixels = scene.pixels
    if not scene.reference.count <= count <= pixels.shape[0]:
        raise InputError(f"{scene.path}: {count} endmembers to estimate; expected from the reference's {scene.reference.count} "
                         f"(each reference material is matched to one) to the {pixels.shape[0]} bands")
    drawn = {name: extract_endmembers(name, pixels, count, seed=seed) for name in EXTRACTORS}
    karma_endmembers, karma_abundances = karma_unmixing(scene, recipe_path, count, drawn[init], seed, run_dir, epochs)
    estimates = {name: (baseline_name(name), endmembers, fcls(pixels, endmembers)) for name, endmembers in drawn.items()}
    estimates.update(karma=(KARMA, karma_endmembers, karma_abundances), karma_fcls=(REFINED, karma_endmembers, fcls(pixels, karma_endmembers)))
    height, width, _ = scene.cube.shape
    record, arrays = {"scene": scene.name, "seed": seed, "karma_init": init, "methods": {}}, {}
    for slug, (method, endmembers, abundances) in estimates.items():
        record["methods"][method], order = score(endmembers, abundances, scene.reference)
        if slug in drawn:
            record["methods"][method]["reconstruction_rmse"] = reconstruction_rmse(pixels, endmembers, abundances)
        arrays[f"{slug}_endmembers"] = endmembers[:, order]
        arrays[f"{slug}_abundances"] = abundances[order].T.reshape(height, width, -1)
    if scene.reference.abundances is not None:
        arrays["reference_abundances"] = scene.reference.abundances.T.reshape(height, width, -1)
    arrays["reference_endmembers"] = scene.reference.endmembers
    _write_npy(run_dir / "unmixing.npz", np.savez_compressed, names=np.array(scene.reference.names), **arrays)
    unmixing_figure(arrays, scene.reference.names, run_dir / "unmixing.png", f"{scene.name}, seed {seed}")
    return record


def run_unmixing_eval(scene: UnmixingScene, recipe_path, seeds, out_dir, count: int | None = None,
                      epochs: int | None = None, init: str = "vca", overwrite: bool = False, log=print) -> list[dict]:
    """Every seed of one scene; rows (scene, method, seed, sad, all_found, abundance_rmse, sad_per_endmember)."""
    rows = []
    for seed in seeds:
        record = unmixing_run(scene, recipe_path, seed, Path(out_dir) / f"seed_{seed}", count, epochs, init, overwrite)
        for method, scores in record["methods"].items():
            rows.append({"scene": scene.name, "method": method, "seed": seed, **scores})
            rmse = scores.get("abundance_rmse")
            log(f"{scene.name} seed {seed} {method}: SAD {scores['sad']:.4f} rad"
                + (f", abundance RMSE {rmse:.4f}" if rmse is not None else ""))
    return rows


def results_markdown(results: dict) -> str:
    """``results.md`` of an unmixing ``results.json`` ({runs, paired}): the methods, then the pairs."""
    parts = [markdown(results["runs"])] + ([paired_markdown(results["paired"])] if results["paired"] else [])
    if results.get("reference"):  # (results files written before the check have none)
        parts.append(reference_check_markdown(results["reference"]))
    return "\n\n".join(parts) + "\n"


def markdown(rows: list[dict]) -> str:
    """Mean ± std over seeds per scene and method: SAD, the seeds that found every material,
    abundance RMSE, then SAD per material."""
    materials = list(dict.fromkeys(name for r in rows for name in r["sad_per_endmember"]))
    lines = [f"| scene | method | SAD (rad) | all found (< {FOUND_SAD} rad) | abundance RMSE | " + " | ".join(f"SAD {m}" for m in materials)
             + " | seeds |", "|---|---|---|---|---|" + "---|" * len(materials) + "---|"]

    def cell(values) -> str:
        values = np.array([v for v in values if v is not None], dtype=float)
        return f"{values.mean():.4f} ± {values.std():.4f}" if values.size else "n/a"

    for key in dict.fromkeys((r["scene"], r["method"]) for r in rows):
        runs = [r for r in rows if (r["scene"], r["method"]) == key]
        per = [cell(r["sad_per_endmember"].get(m) for r in runs) for m in materials]
        found = f"{sum(bool(r.get('all_found')) for r in runs)}/{len(runs)}"
        lines.append(f"| {key[0]} | {key[1]} | {cell(r['sad'] for r in runs)} | {found} | {cell(r.get('abundance_rmse') for r in runs)} | "
                     + " | ".join(per) + f" | {len(runs)} |")
    return "\n".join(lines)


def paired_comparisons(rows: list[dict], init: str) -> list[dict]:
    """Per scene, over seeds (``evaluation.paired``): KARMA's SAD against the draw it started from
    (did learning move the endmembers toward the materials?), and the refined abundances' RMSE
    against the ``init`` baseline and against the classical baseline of lowest mean abundance RMSE
    (the strictest bar KARMA can be held to)."""
    from rsdistill.evaluation.paired import paired_differences

    start, found = baseline_name(init), []
    for scene in dict.fromkeys(r["scene"] for r in rows):
        records = [{**r, "model": r["method"]} for r in rows if r["scene"] == scene]
        rows_of_scene = paired_differences(records, [(KARMA, start)], ["sad"])
        if all(r.get("abundance_rmse") is not None for r in records):  # (none when more materials than the reference are estimated)
            baselines = [baseline_name(name) for name in EXTRACTORS]
            best = min(baselines, key=lambda b: np.mean([r["abundance_rmse"] for r in records if r["model"] == b]))
            pairs = [(REFINED, start)] + ([(REFINED, best)] if best != start else [])
            rows_of_scene += paired_differences(records, pairs, ["abundance_rmse"])
        found += [{**row, "scene": scene} for row in rows_of_scene]
    return found


def paired_against(rows: list[dict], other: list[dict], label: str = "this run", other_label: str = "the other") -> list[dict]:
    """KARMA's abundance RMSE and SAD, and its refined abundances' RMSE, of this run against another
    run of the same scene and seeds (e.g. a recipe variant against ``karma.yaml``), paired per seed:
    the same seed gives both the same extraction draws and data order."""
    from rsdistill.evaluation.paired import paired_differences

    records = [{**r, "model": f"{r['method']} ({label})"} for r in rows] + [{**r, "model": f"{r['method']} ({other_label})"} for r in other]
    found = []
    for scene in dict.fromkeys(r["scene"] for r in rows):
        of_scene = [r for r in records if r["scene"] == scene]
        for method, metric in ((KARMA, "abundance_rmse"), (KARMA, "sad"), (REFINED, "abundance_rmse")):
            pair = [(f"{method} ({label})", f"{method} ({other_label})")]
            found += [{**row, "scene": scene} for row in paired_differences(of_scene, pair, [metric])]
    return found


def paired_markdown(rows: list[dict]) -> str:
    """The pairs of ``paired_comparisons`` as a table, differences × 1000 (milliradians, RMSE × 1000); negative is better."""
    from rsdistill.evaluation.paired import paired_table

    table = paired_table([{**r, "model": f"{r['scene']}: {r['model']}"} for r in rows], scale=1000.0)
    return ("Paired over seeds, differences × 1000 (mrad for SAD); negative = closer to the reference, so "
            "'ahead' counts the seeds where the first method is *worse*:\n\n" + table)
