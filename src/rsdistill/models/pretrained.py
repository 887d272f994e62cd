"""Pretrained weights by name: one table of what each model is, where its files come from, and where
they are found on this machine.

``locate(name)`` looks for an entry's folder (``WeightsEntry.folder``) in, in order:

1. ``$RSDISTILL_WEIGHTS``;
2. the user cache, ``$XDG_CACHE_HOME/rsdistill/weights`` (default ``~/.cache/rsdistill/weights``);
3. ``weights/`` under the data root (``$RSDISTILL_DATA``, default ``../shared/data``).

Every file found is checked against its sha256 (once per process per file, size and mtime) and a
mismatch is an error naming the file and both hashes. ``download(name)`` fetches the entry's files
from their source into the user cache, each written atomically and checked against its sha256
before it takes its final name; an entry whose publisher gives no hash says so when it downloads.
Nothing downloads unless asked (``rsdistill weights --download NAME``), and tests never download.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import sys
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from rsdistill.data.paths import data_root
from rsdistill.errors import InputError
from rsdistill.files import atomic_write

_GALILEO_COMMIT = "0f0b5b95ac81acef4b74cf4686dc877202f4541b"
_GALILEO_GITHUB = f"https://github.com/nasaharvest/galileo/raw/{_GALILEO_COMMIT}"
_GALILEO_HF = "https://huggingface.co/nasaharvest/galileo/resolve/main/models"
_GALILEO_NORMALISATION = ("normalization.json", f"{_GALILEO_GITHUB}/config/normalization.json",
                          "baea3828a8750e0b570cb2fad5cd30bb249f1f001988d842cc4246860e799ff3")
_GALILEO_LICENCE = ("LICENSE", f"{_GALILEO_GITHUB}/LICENSE", "be77d9965ce4fce0f874c34967c44a2a4d919035ec2299a35af15f996d5e46a6")
_GALILEO_BANDS = ("B2", "B3", "B4", "B5", "B6", "B7", "B8", "B8A", "B11", "B12")
_GALILEO_NOTE = ("Sentinel-2 L1C DN (reflectance × 10000); groups RGB, red edge, NIR 10 m, NIR 20 m, SWIR; "
                 "a group the input does not cover is masked; normalised as in pretraining (mean ± 2 std)")


@dataclass(frozen=True)
class WeightsFile:
    """One file of an entry: its name in the folder, where it is published, its sha256 (None: the
    publisher gives none)."""

    name: str
    url: str
    sha256: str | None


@dataclass(frozen=True)
class WeightsEntry:
    name: str
    format: str  # the loader: galileo | prithvi | mae | sam
    folder: str  # the folder name under each place weights are looked up
    files: tuple[WeightsFile, ...]
    main: str  # the file load_encoder reads
    source: str
    licence: str
    sensor: str  # registered band table of the input
    bands: tuple[str, ...]
    input: str  # units, groups, normalisation
    patch_size: int  # recommended
    params: str


def _files(*rows) -> tuple[WeightsFile, ...]:
    return tuple(WeightsFile(*row) for row in rows)


def _galileo(size: str, params: str, base_url: str, config_sha: str | None, encoder_sha: str | None, hashes: str) -> WeightsEntry:
    return WeightsEntry(
        f"galileo-{size}", "galileo", f"galileo_{size}",
        _files(("config.json", f"{base_url}/config.json", config_sha), ("encoder.pt", f"{base_url}/encoder.pt", encoder_sha),
               _GALILEO_NORMALISATION, _GALILEO_LICENCE),
        "encoder.pt", f"nasaharvest/galileo (Tseng et al. 2025, arXiv 2502.09356); {hashes}", "MIT", "sentinel2_galileo",
        _GALILEO_BANDS, _GALILEO_NOTE, 4, params)


WEIGHTS: dict[str, WeightsEntry] = {e.name: e for e in (
    _galileo("nano", "1.0 M", f"{_GALILEO_GITHUB}/data/models/nano", "8ec17cb83cb78d987b4b920b9c1c35aa245ec0f80e1abf0c22d6f77d828f431c",
             "eab6acacf527886a508a555bc24efe4b4a2cf91b162e84cd1c4a1807e942180c", f"hashes of the files at commit {_GALILEO_COMMIT[:7]}"),
    _galileo("tiny", "5.3 M", f"{_GALILEO_HF}/tiny", None, None, "config and encoder hashes not published"),
    _galileo("base", "85 M", f"{_GALILEO_HF}/base", None, None, "config and encoder hashes not published"),
    WeightsEntry("prithvi-eo-1.0-100m", "prithvi", "prithvi_eo_1_100m",
                 _files(("Prithvi_100M.pt", "https://huggingface.co/ibm-nasa-geospatial/Prithvi-EO-1.0-100M/resolve/main/Prithvi_100M.pt", None)),
                 "Prithvi_100M.pt", "ibm-nasa-geospatial/Prithvi-EO-1.0-100M (Jakubik et al. 2023); no hash published", "Apache-2.0", "hls",
                 ("Blue", "Green", "Red", "NIR_Narrow", "SWIR1", "SWIR2"), "HLS reflectance × 10000, the model's mean/std", 16, "100 M"),
    WeightsEntry("sam-vit-b", "sam", "sam_vit_b",
                 _files(("sam_vit_b_01ec64.pth", "https://dl.fbaipublicfiles.com/segment_anything/sam_vit_b_01ec64.pth", None)),
                 "sam_vit_b_01ec64.pth", "facebookresearch/segment-anything (Kirillov et al. 2023); no sha256 published", "Apache-2.0", "rgb",
                 ("Red", "Green", "Blue"), "RGB 0-255, SAM's pixel mean/std", 16, "91 M"),
    WeightsEntry("mae-vit-base", "mae", "mae_vit_base",
                 _files(("mae_pretrain_vit_base.pth", "https://dl.fbaipublicfiles.com/mae/pretrain/mae_pretrain_vit_base.pth", None)),
                 "mae_pretrain_vit_base.pth", "facebookresearch/mae (He et al. 2022); no sha256 published", "CC-BY-NC-4.0", "rgb",
                 ("Red", "Green", "Blue"), "RGB 0-255, ImageNet mean/std", 16, "86 M"),
)}


def entry(name: str) -> WeightsEntry:
    found = WEIGHTS.get(name.lower())
    if found is None:
        raise InputError(f"unknown pretrained weights {name!r}; known: {', '.join(WEIGHTS)} (rsdistill weights lists them)")
    return found


def cache_dir() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "rsdistill" / "weights"


def search_roots() -> list[Path]:
    """Where weights folders are looked up, in order."""
    roots = [Path(os.environ["RSDISTILL_WEIGHTS"])] if os.environ.get("RSDISTILL_WEIGHTS") else []
    return [*roots, cache_dir(), data_root() / "weights"]


_VERIFIED: set[tuple[str, int, int]] = set()


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def verify(path: Path, expected: str | None) -> None:
    """Refuse ``path`` when its sha256 is not ``expected`` (a truncated or altered file)."""
    if expected is None:
        return
    stat = path.stat()
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    if key in _VERIFIED:
        return
    found = sha256_of(path)
    if found != expected:
        raise InputError(f"{path}: sha256 {found}, expected {expected} (a truncated or altered file; delete it and download again)")
    _VERIFIED.add(key)


def present(name: str) -> Path | None:
    """The first folder holding all of the entry's files (not yet verified), or None."""
    wanted = entry(name)
    for root in search_roots():
        folder = root / wanted.folder
        if all((folder / f.name).is_file() for f in wanted.files):
            return folder
    return None


def locate(name: str) -> Path:
    """The folder of ``name``'s files, every file checked against its sha256."""
    wanted = entry(name)
    folder = present(name)
    if folder is None:
        places = ", ".join(str(root / wanted.folder) for root in search_roots())
        raise InputError(f"{wanted.name}: its files ({', '.join(f.name for f in wanted.files)}) are in none of {places}; "
                         f"rsdistill weights --download {wanted.name} fetches them from {wanted.source.split(' ')[0]}")
    for file in wanted.files:
        verify(folder / file.name, file.sha256)
    return folder


def download(name: str, into: Path | None = None) -> Path:
    """Fetch ``name``'s files into ``into`` (default the user cache), each checked against its
    sha256 before it takes its final name. Returns the folder."""
    wanted = entry(name)
    folder = (into or cache_dir()) / wanted.folder
    for file in wanted.files:
        target = folder / file.name
        if target.is_file():
            verify(target, file.sha256)
            continue
        if file.sha256 is None:
            print(f"rsdistill: {wanted.name}: {file.name} has no published sha256; it is downloaded unchecked", file=sys.stderr)

        def fetch(partial: str, url: str = file.url, expected: str | None = file.sha256) -> None:
            try:
                with urllib.request.urlopen(url, timeout=60) as response, open(partial, "wb") as out:
                    shutil.copyfileobj(response, out)
            except OSError as error:
                raise InputError(f"{url}: download failed ({error})") from None
            verify(Path(partial), expected)

        atomic_write(target, fetch)
    return folder
