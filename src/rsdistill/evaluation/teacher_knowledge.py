"""What a pretrained teacher knows, measured before anyone distils from it.

Frozen features of each declared encoder, and of three references — the raw bands themselves
(``band_means``: a chip's per-band means, or a pixel's spectrum), the bands the first encoder is
fed after band alignment (``aligned_bands``: the input it sees, so that a loss to ``band_means``
can be told apart into fewer bands and what the encoder makes of them), and the same architecture
with random weights (``random``: what the pretraining adds over the architecture) — are scored by a
linear probe (standardised features, multinomial logistic regression, C = 1) and by k-NN (k = 5,
standardised features), both scikit-learn, on three kinds of data:

- ``chips`` (EuroSAT-MS): one label per chip, the mean of the encoder's features over the chip (the
  official ``average_tokens``); stratified k-fold, every chip tested once.
- ``scene`` (Slovenia Sentinel-2): one labelled scene; square blocks dealt into k folds, every
  labelled pixel tested once, training pixels within ``buffer`` pixels of a test block dropped.
- ``tiles`` (EnMAP Potsdam, SpecDeepMap lists): train / validation / test tiles; choices on
  validation, test reported for every encoder (read once, all published).

A pixel's feature is that of the encoder patch containing it, the scene encoded in windows of
``window`` pixels (default 32, the EnMAP tiles' size; edge pixels repeated to fill the last ones), so
that patch size 1 stays affordable (32² pixels × 5 groups = 5,120 tokens a window). Encoders see each source through the band alignment of
``PretrainedEncoder.for_sensor`` (Galileo: the groups the source does not cover are masked), by
the dataset's ``align`` unless an encoder declares its own (``align: none``: an encoder trained on
the dataset's own sensor, such as the project's EnMAP MAE, sees the bands as they are).
Folds are seeded and saved in the results; per fold, the difference of each encoder to
``band_means`` is tested with ``evaluation.paired`` (folds in place of seeds).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from rsdistill.data.paths import expand, read_tile_list, resolve
from rsdistill.data.splits import fold_split
from rsdistill.errors import InputError
from rsdistill.io.readers import open_scene, read_scene
from rsdistill.io.scene import Scene
from rsdistill.models.registry import PretrainedEncoder, build_encoder, load_encoder

REFERENCES = ("band_means", "aligned_bands")
PROBES = {"linear": lambda: LogisticRegression(C=1.0, max_iter=3000), "knn": lambda: KNeighborsClassifier(5)}


def build_declared_encoder(options: dict, seed: int) -> PretrainedEncoder:
    """``{weights: NAME, random: bool, align: ..., ...load options}``; ``random``: the same
    architecture and preprocessing with freshly initialised weights (torch seed ``seed``); ``align``
    is the feeding's (``fed``), not the loading's."""
    options = dict(options)
    weights, random = options.pop("weights"), bool(options.pop("random", False))
    options.pop("align", None)
    encoder = load_encoder(weights, **options)
    if random:
        torch.manual_seed(seed)
        fresh = build_encoder({"name": encoder.encoder.name, **encoder.encoder.config})
        fresh.requires_grad_(False)
        encoder = PretrainedEncoder(fresh, encoder.preprocessing, {**encoder.card, "random_init_seed": seed})
    return encoder.eval()


def encoder_features(encoder: PretrainedEncoder, raw: torch.Tensor, window: int = 32) -> torch.Tensor:
    """raw (1, bands, H, W) -> features (1, D, H, W): each pixel gets its patch's final feature,
    the scene encoded window by window (``window`` a multiple of the patch size)."""
    p = encoder.encoder.patch_size
    if window % p:
        raise InputError(f"window {window} is not a multiple of the patch size {p}")
    height, width = raw.shape[2:]
    padded = F.pad(raw, (0, (-width) % window, 0, (-height) % window), mode="replicate")
    out = None
    with torch.no_grad():
        for row in range(0, padded.shape[2], window):
            for col in range(0, padded.shape[3], window):
                maps = encoder(padded[:, :, row:row + window, col:col + window])[0]
                if out is None:
                    out = maps.new_zeros(1, maps.shape[1], *padded.shape[2:])
                out[:, :, row:row + window, col:col + window] = maps.repeat_interleave(p, 2).repeat_interleave(p, 3)
    return out[:, :, :height, :width]


def fed(encoder: PretrainedEncoder, scene: Scene, align: str, scale: float) -> PretrainedEncoder:
    """``encoder`` fed the bands of ``scene`` by ``align`` (``none``: as they are)."""
    return encoder.for_scene(scene, None if align == "none" else align, scale)


def _probe_scores(train_x, train_y, tests: dict[str, tuple]) -> dict[str, float]:
    """Each probe fitted once on (train_x, train_y) and scored on every ``{prefix: (x, y)}`` of
    ``tests``: ``{prefix}{probe}_oa`` and ``_aa``."""
    scores = {}
    for name, make in PROBES.items():
        model = make_pipeline(StandardScaler(), make()).fit(train_x, train_y)
        for prefix, (test_x, test_y) in tests.items():
            predicted = model.predict(test_x)
            per_class = [np.mean(predicted[test_y == c] == c) for c in np.unique(test_y)]
            scores[f"{prefix}{name}_oa"], scores[f"{prefix}{name}_aa"] = float(np.mean(predicted == test_y)), float(np.mean(per_class))
    return scores


# -- data ---------------------------------------------------------------------------------------------
def _chip_features(dataset: dict, encoders: dict) -> tuple[dict[str, np.ndarray], np.ndarray]:
    files = expand(dataset["files"])
    labels = np.array([f.parent.name for f in files])
    scenes = [open_scene(f, sensor=dataset["sensor"]).read() for f in files]
    raw = torch.from_numpy(np.stack([s.cube.transpose(2, 0, 1) for s in scenes]).astype(np.float32))
    features = {"band_means": raw.mean((2, 3)).numpy()}
    for name, (encoder, align) in encoders.items():
        model = fed(encoder, scenes[0], align, dataset.get("scale", 1.0))
        _add_aligned_bands(features, model, features["band_means"])
        with torch.no_grad():
            features[name] = torch.cat([model(raw[i:i + 25])[0].mean((2, 3)) for i in range(0, len(raw), 25)]).numpy()
    return features, labels


def _pixel_features(scene: Scene, encoders: dict, dataset: dict, rows, cols) -> dict[str, np.ndarray]:
    raw = torch.from_numpy(np.ascontiguousarray(scene.cube.transpose(2, 0, 1), dtype=np.float32))[None]
    valid = scene.sensor().valid
    features = {"band_means": scene.cube[rows, cols][:, valid]}
    for name, (encoder, align) in encoders.items():
        model = fed(encoder, scene, align, dataset.get("scale", 1.0))
        _add_aligned_bands(features, model, scene.cube[rows, cols])
        features[name] = encoder_features(model, raw, dataset.get("window", 32))[0, :, rows, cols].T.numpy()
    return features


def _add_aligned_bands(features: dict, model: PretrainedEncoder, spectra: np.ndarray) -> None:
    """``aligned_bands``, once, from the first encoder fed by an alignment: (P, bands) raw spectra
    -> (P, T') its aligned input bands that the source covers."""
    if "aligned_bands" in features or model.preprocessing.alignment is None:
        return
    alignment = np.asarray(model.preprocessing.alignment)
    present = [t for t in range(len(alignment)) if t not in model.preprocessing.absent_channels]
    features["aligned_bands"] = model.preprocessing.scale * spectra @ alignment[present].T


# -- the three protocols -----------------------------------------------------------------------------
def run_chips(dataset: dict, encoders: dict, seed: int) -> list[dict]:
    features, labels = _chip_features(dataset, encoders)
    folds = StratifiedKFold(dataset.get("folds", 5), shuffle=True, random_state=seed)
    records = []
    for fold, (train, test) in enumerate(folds.split(labels, labels)):
        for name, x in features.items():
            records.append({"model": name, "seed": fold, "test_items": [int(i) for i in test],
                            **_probe_scores(x[train], labels[train], {"": (x[test], labels[test])})})
    return records


def run_scene(dataset: dict, encoders: dict, seed: int) -> list[dict]:
    scene = open_scene(resolve(dataset["scene"]), sensor=dataset.get("sensor"), time_index=dataset.get("time_index")).read()
    labels = np.squeeze(np.load(resolve(dataset["labels"]))).astype(int)
    if labels.shape != scene.cube.shape[:2]:
        raise InputError(f"{dataset['labels']}: labels {labels.shape}, the scene {scene.cube.shape[:2]}")
    rows, cols = np.nonzero(labels > 0)
    features = _pixel_features(scene, encoders, dataset, rows, cols)
    y = labels[rows, cols]
    coords = np.stack([np.zeros_like(rows), rows, cols], axis=1)
    width = labels.shape[1]
    records = []
    for fold in range(dataset["folds"]):
        # the project's spatial folds (data.splits.fold_split), without a validation fold: the probe chooses nothing
        split = fold_split(coords, y, dataset["block"], dataset["folds"], fold, seed, seed, [dataset["scene"]], [labels.shape],
                           dataset["buffer"], dataset.get("min_class_pixels", 0), validation=False)
        train, test = (np.isin(rows * width + cols, part[:, 1] * width + part[:, 2]) for part in (split.train, split.test))
        for name, x in features.items():
            records.append({"model": name, "seed": fold, "train_pixels": int(train.sum()), "test_pixels": int(test.sum()),
                            **_probe_scores(x[train], y[train], {"": (x[test], y[test])})})
    return records


def run_tiles(dataset: dict, encoders: dict, seed: int) -> list[dict]:
    subsets = {}
    for subset, csv in dataset["tile_lists"].items():
        parts = []
        for image, mask in read_tile_list(resolve(csv)):
            scene = read_scene(image, labels=mask)
            labels = np.where(scene.valid, scene.labels, 0).astype(int)
            rows, cols = np.nonzero(labels > 0)
            parts.append((_pixel_features(scene, encoders, dataset, rows, cols), labels[rows, cols]))
        subsets[subset] = ({name: np.concatenate([p[0][name] for p in parts]) for name in parts[0][0]}, np.concatenate([p[1] for p in parts]))
    train_x, train_y = subsets["train"]
    records = []
    for name in train_x:
        tests = {f"{subset}_": (subsets[subset][0][name], subsets[subset][1]) for subset in ("val", "test")}
        records.append({"model": name, "seed": 0, **_probe_scores(train_x[name], train_y, tests)})
    return records


PROTOCOLS = {"chips": run_chips, "scene": run_scene, "tiles": run_tiles}


def run_teacher_knowledge(config: dict, log=print) -> dict[str, list[dict]]:
    """{dataset: records} for every declared dataset (``kind``: chips | scene | tiles) and encoder."""
    seed = int(config.get("seed", 0))
    results = {}
    for dataset_name, dataset in config["datasets"].items():
        if dataset.get("kind") not in PROTOCOLS:
            raise InputError(f"datasets.{dataset_name}.kind: one of {', '.join(PROTOCOLS)}, got {dataset.get('kind')!r}")
        declared = {name: config["encoders"][name] for name in dataset.get("encoders", config["encoders"])}
        encoders = {name: (build_declared_encoder({**options, **dataset.get("encoder_options", {})}, seed), options.get("align", dataset["align"]))
                    for name, options in declared.items()}
        log(f"{dataset_name}: {', '.join([*REFERENCES, *encoders])}")
        results[dataset_name] = PROTOCOLS[dataset["kind"]](dataset, encoders, seed)
    return results


def markdown(results: dict[str, list[dict]]) -> str:
    """One table per dataset: each encoder's probe scores (mean ± std over folds), and per fold its
    linear-probe OA difference to ``band_means`` with paired t and Wilcoxon p."""
    from rsdistill.evaluation.paired import paired_differences

    lines = []
    for dataset, records in results.items():
        names = list(dict.fromkeys(r["model"] for r in records))
        folded = "linear_oa" in records[0]
        metrics = ["linear_oa", "linear_aa", "knn_oa"] if folded else ["val_linear_oa", "test_linear_oa", "test_linear_aa", "val_knn_oa", "test_knn_oa"]
        lines += [f"### {dataset}", "", "| encoder | " + " | ".join(metrics) + (" | linear OA − band_means | ahead | t p |" if folded else " |"),
                  "|---" * (len(metrics) + 1 + (3 if folded else 0)) + "|"]
        paired = {r["model"]: r for r in paired_differences(records, [(n, "band_means") for n in names if n != "band_means"], ["linear_oa"])} if folded else {}
        for name in names:
            values = np.array([[r[m] for m in metrics] for r in records if r["model"] == name])
            cells = [f"{100 * v.mean():.1f} ± {100 * v.std():.1f}" if len(v) > 1 else f"{100 * v[0]:.1f}" for v in values.T]
            row = f"| {name} | " + " | ".join(cells)
            if folded:
                p = paired.get(name)
                row += " | " + (f"{100 * p['mean']:+.1f} ± {100 * p['std']:.1f} | {p['ahead']}/{len(p['seeds'])} | {_p_value(p['t_p'])}" if p else "— | — | —")
            lines.append(row + " |")
        lines.append("")
    return "\n".join(lines)


def _p_value(p: float | None) -> str:
    return "—" if p is None or np.isnan(p) else f"{p:.3f}"
