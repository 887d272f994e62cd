"""An official Galileo checkpoint folder (``config.json``, ``encoder.pt``, ``normalization.json``) as a
``GalileoEncoder`` with its ``Preprocessing`` and a load report.

The keys are the official ones; a ``.backbone`` infix that some checkpoints carry is removed, as
the official ``Encoder.load_from_folder`` does. The S1 and NDVI projections and the space, time and
static modalities are never fed here (``models.galileo``): their keys are listed as unused.

Normalisation. Galileo was pretrained (``train.py``, ``"normalization": "std"``) and evaluated
(``eval.py``) with each Sentinel-2 band mapped to (x − (mean − 2·std)) / (4·std), the statistics of
``normalization.json`` (key "13": S1 VV, VH, the ten S2 bands, NDVI). That is ``pretraining``, the
default. The official inference helper ``construct_galileo_input(normalize=True)`` reads the same
file but, because its keys are strings there, silently falls back to x / 10000; its outputs, and so
the parity reference in the data folder, use ``builder``. Both are a ``Preprocessing`` on raw DN.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from rsdistill.errors import InputError
from rsdistill.models.galileo import OPTICAL_GROUPS, S2_BANDS, GalileoEncoder
from rsdistill.models.state_dicts import check_keys, read_state_dict
from rsdistill.preprocessing import Preprocessing

NORMALISATIONS = ("pretraining", "builder")
OPTIONS = ("patch_size", "month", "gsd_m", "normalisation")
_S2_IN_STATISTICS = slice(2, 12)  # key "13": VV, VH, B2..B12 (Galileo order), NDVI


def galileo_preprocessing(folder: Path, normalisation: str = "pretraining") -> Preprocessing:
    """Raw Sentinel-2 DN (reflectance × 10000) in ``S2_BANDS`` order -> Galileo's normalised input."""
    if normalisation == "builder":
        mean, std = np.zeros(len(S2_BANDS)), np.full(len(S2_BANDS), 1e4)
    elif normalisation == "pretraining":
        path = Path(folder) / "normalization.json"
        try:
            stats = json.loads(path.read_text())["13"]
            mean, std = np.asarray(stats["mean"], float)[_S2_IN_STATISTICS], np.asarray(stats["std"], float)[_S2_IN_STATISTICS]
        except (OSError, KeyError, TypeError, ValueError, json.JSONDecodeError) as error:
            raise InputError(f"{path}: expected Galileo's normalization.json with a \"13\" record of 13 means and stds ({error})") from None
        if mean.size != len(S2_BANDS) or std.size != len(S2_BANDS):
            raise InputError(f"{path}: the \"13\" record needs 13 means and stds (VV, VH, {len(S2_BANDS)} S2 bands, NDVI)")
        mean, std = mean - 2 * std, 4 * std
    else:
        raise InputError(f"Galileo normalisation {normalisation!r}: choose one of {', '.join(NORMALISATIONS)}")
    return Preprocessing.create(len(S2_BANDS), mean, std, sensor="sentinel2_galileo")


def load_galileo_folder(folder, patch_size: int = 4, month: int = 5, gsd_m: float = 10.0,
                        normalisation: str = "pretraining") -> tuple[GalileoEncoder, dict]:
    """The encoder (frozen, all optical groups live) and its card: format, preprocessing, load report."""
    folder = Path(folder)
    config_path = folder / "config.json"
    try:
        config = json.loads(config_path.read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise InputError(f"{config_path}: not a readable Galileo config.json ({error})") from None
    encoder = GalileoEncoder.from_official_config(config, patch_size=patch_size, month=month, gsd_m=gsd_m)
    state = {k.replace(".backbone", ""): v for k, v in read_state_dict(folder / "encoder.pt").items()}
    expected = encoder.state_dict()
    check_keys(folder / "encoder.pt", state, expected)
    encoder.load_state_dict({k: state[k] for k in expected})
    encoder.requires_grad_(False)
    unused = sorted(set(state) - set(expected))
    report = {
        "tensors": len(state),
        "loaded": len(expected),
        "unused_keys": unused,
        "live_groups": list(OPTICAL_GROUPS),
        "masked_groups": "S1, NDVI and the space, time and static modalities (not fed by rsdistill)",
        "normalisation": normalisation,
    }
    card = {"format": "galileo", "preprocessing": galileo_preprocessing(folder, normalisation).to_dict(), "load_report": report}
    return encoder, card
