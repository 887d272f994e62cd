"""A corpus of bad inputs, made on the fly (nothing committed as data).

Each case writes its file(s) under a folder and returns ``(argv, name)``: the ``rsdistill``
arguments that read it and the file name the one-line error must contain. ``python
tests/bad_inputs.py OUT`` writes the whole corpus and prints the commands.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import h5py
import numpy as np
import rasterio
from rasterio.transform import from_origin

from rsdistill.data.synthetic import make_synthetic_scene
from rsdistill.io import write_geotiff

ENVI_HEADER = ("ENVI\nsamples = {samples}\nlines = {lines}\nbands = {bands}\nheader offset = 0\nfile type = ENVI Standard\n"
               "data type = 4\ninterleave = {interleave}\nbyte order = {byte_order}\n")


def _envi(folder: Path, name: str, lines=4, samples=5, bands=3, interleave="bsq", byte_order="0", extra="", sparse=False) -> Path:
    data = folder / f"{name}.img"
    size = lines * samples * bands * 4
    if sparse:
        with open(data, "wb") as f:
            f.truncate(size)
    else:
        np.random.rand(bands, lines, samples).astype(np.float32).tofile(data)
    (folder / f"{name}.hdr").write_text(ENVI_HEADER.format(lines=lines, samples=samples, bands=bands, interleave=interleave, byte_order=byte_order) + extra)
    return data


def _tif(folder: Path, name: str, **tags) -> Path:
    path = write_geotiff(folder / f"{name}.tif", np.random.rand(8, 8, 3).astype(np.float32))
    with rasterio.open(path, "r+") as ds:
        for band in range(1, 4):
            ds.update_tags(band, **{k: v for k, v in tags.items()})
    return path


def mat_v73_size_bomb(folder):
    path = folder / "bomb.mat"
    with h5py.File(path, "w", userblock_size=512) as f:  # MATLAB 7.3 stores column-major: (bands, W, H) on disk
        f.create_dataset("cube", shape=(200, 100000, 100000), dtype="f8", chunks=(1, 100, 100))
    with open(path, "r+b") as f:  # the MATLAB header lives in the HDF5 user block
        f.write(b"MATLAB 7.3 MAT-file, Platform: GLNXA64, Created on: Tue Nov 24 2026 HDF5 schema 1.00 .".ljust(116))
    return ["info", str(path)], "bomb.mat"


def geotiff_size_bomb(folder):
    path = folder / "bomb.tif"
    with rasterio.Env(SPARSE_OK=True):
        with rasterio.open(path, "w", driver="GTiff", height=100000, width=100000, count=20, dtype="float32", tiled=True, sparse_ok=True):
            pass
    return ["info", str(path)], "bomb.tif"


def envi_sparse_size_bomb(folder):
    return ["info", str(_envi(folder, "bomb_envi", lines=100000, samples=100000, bands=50, sparse=True))], "bomb_envi"


def npy_size_bomb(folder):
    path = folder / "bomb.npy"
    with open(path, "wb") as f:
        np.lib.format.write_array_header_1_0(f, {"descr": "<f4", "fortran_order": False, "shape": (100000, 100000, 50)})
        f.write(b"\0" * 64)
    return ["info", str(path)], "bomb.npy"


def envi_ignore_value_text(folder):
    return ["info", str(_envi(folder, "ignore", extra="data ignore value = abc\n"))], "ignore.hdr"


def envi_map_info_text(folder):
    return ["info", str(_envi(folder, "mapinfo", extra="map info = {UTM, one, 1, 500000, 5000000, 30, 30, 33, North}\n"))], "mapinfo.hdr"


def envi_interleave_unknown(folder):
    return ["info", str(_envi(folder, "interleave", interleave="xyz"))], "interleave.hdr"


def envi_byte_order_unknown(folder):
    return ["info", str(_envi(folder, "byteorder", byte_order="7"))], "byteorder.hdr"


def geotiff_wavelength_text(folder):
    return ["info", str(_tif(folder, "wl_text", wavelength="abc"))], "wl_text.tif"


def geotiff_bbl_text(folder):
    return ["info", str(_tif(folder, "bbl_text", wavelength="500", bbl="x"))], "bbl_text.tif"


def npy_structured_info(folder):
    path = folder / "structured.npy"
    np.save(path, np.zeros((4, 4, 2), dtype=[("a", "f4"), ("b", "i4")]))
    return ["info", str(path)], "structured.npy"


def npy_string_stats(folder):
    path = folder / "strings.npy"
    np.save(path, np.full((4, 4, 2), "x"))
    return ["stats", str(path), "--out", str(folder / "s.json")], "strings.npy"


def npy_complex(folder):
    path = folder / "complex.npy"
    np.save(path, np.ones((4, 4, 2), np.complex64))
    return ["info", str(path)], "complex.npy"


def band_folder_with_junk(folder):
    bands = folder / "bandfolder"
    bands.mkdir()
    write_geotiff(bands / "patch_B02.tif", np.random.rand(8, 8, 1).astype(np.float32))
    (bands / "patch_B03.tif").write_bytes(b"not a raster" * 10)
    return ["info", str(bands)], "patch_B03.tif"


def band_folder_mixed_crs(folder):
    bands = folder / "mixedcrs"
    bands.mkdir()
    for name, epsg in (("B02", 32633), ("B03", 32632)):
        with rasterio.open(bands / f"p_{name}.tif", "w", driver="GTiff", height=8, width=8, count=1, dtype="float32",
                           crs=f"EPSG:{epsg}", transform=from_origin(500000, 5000000, 10, 10)) as ds:
            ds.write(np.random.rand(1, 8, 8).astype(np.float32))
    return ["info", str(bands)], "p_B03.tif"


def non_utf8_file_name(folder):
    raw = os.fsencode(folder) + b"/scene_\xff.mat"
    with open(raw, "wb") as f:
        f.write(b"junk" * 20)
    return ["info", os.fsdecode(raw)], "scene_"


def stats_out_is_a_folder(folder):
    scene = write_geotiff(folder / "ok.tif", np.random.rand(8, 8, 3).astype(np.float32))
    return ["stats", str(scene), "--out", str(folder)], str(folder.name)


def stats_out_unwritable(folder):
    scene = write_geotiff(folder / "ok2.tif", np.random.rand(8, 8, 3).astype(np.float32))
    blocker = folder / "a_file"
    blocker.write_text("x")
    return ["stats", str(scene), "--out", str(blocker / "stats.json")], "stats.json"


def single_class_labels(folder):
    scene = make_synthetic_scene("sentinel2", 16, 16).scene
    image = write_geotiff(folder / "one_class.tif", scene.cube, like=scene)
    labels = write_geotiff(folder / "one_class_labels.tif", np.ones((16, 16), np.uint8))
    return ["quickstart", str(image), "--labels", str(labels), "--out", str(folder / "qs")], "one_class.tif"


def encoder_card_not_json(folder):
    (folder / "enc.safetensors").write_bytes(b"\0" * 16)
    (folder / "enc.json").write_bytes(b"\x80\x04not json")
    return ["probe", "--encoder", str(folder / "enc.safetensors")], "enc.json"


def encoder_card_without_architecture(folder):
    (folder / "enc2.safetensors").write_bytes(b"\0" * 16)
    (folder / "enc2.json").write_text('{"format": "rsdistill-encoder/2"}')
    return ["probe", "--encoder", str(folder / "enc2.safetensors")], "enc2.json"


def _pickle_bytes(path: Path) -> Path:
    import pickle

    path.write_bytes(pickle.dumps({"train": [[0, 1, 1]], "note": object.__name__}))
    return path


REPO = Path(__file__).resolve().parents[1]


def split_file_with_pickle_bytes(folder):
    split = _pickle_bytes(folder / "split.json")
    return ["fit", "-c", str(REPO / "configs/blm_kd/teacher.yaml"), "--data.init_args.split_file", str(split),
            "--run_dir", str(folder / "run")], "split.json"


def stats_file_with_pickle_bytes(folder):
    stats = _pickle_bytes(folder / "stats.json")
    return ["fit", "-c", str(REPO / "configs/mae/base.yaml"), "--data.init_args.stats", str(stats), "--run_dir", str(folder / "run")], "stats.json"


def unknown_architecture_in_recipe(folder):
    recipe = folder / "recipe.yaml"
    recipe.write_text(f"base: {REPO / 'configs/blm_kd/teacher.yaml'}\nmodel: {{init_args: {{arch: transformer}}}}\n")
    return ["fit", "-c", str(recipe), "--run_dir", str(folder / "run")], "transformer"


def unmixing_scene_without_reference(folder):
    import scipy.io

    scipy.io.savemat(folder / "jasper.mat", {"Y": np.random.default_rng(0).random((13, 400)), "nRow": 20, "nCol": 20})
    return (["unmixing-eval", "--scene", str(folder / "jasper.mat"), "-c", "karma.yaml", "--out", str(folder / "u")],
            "jasper.mat: no reference endmembers found")


CASES = [mat_v73_size_bomb, geotiff_size_bomb, envi_sparse_size_bomb, npy_size_bomb, envi_ignore_value_text, envi_map_info_text,
         envi_interleave_unknown, envi_byte_order_unknown, geotiff_wavelength_text, geotiff_bbl_text, npy_structured_info,
         npy_string_stats, npy_complex, band_folder_with_junk, band_folder_mixed_crs, non_utf8_file_name, stats_out_is_a_folder,
         stats_out_unwritable, single_class_labels, encoder_card_not_json, encoder_card_without_architecture, split_file_with_pickle_bytes,
         stats_file_with_pickle_bytes, unknown_architecture_in_recipe, unmixing_scene_without_reference]


if __name__ == "__main__":
    out = Path(sys.argv[1] if len(sys.argv) > 1 else "bad_inputs")
    for case in CASES:
        (out / case.__name__).mkdir(parents=True, exist_ok=True)
        argv, _ = case(out / case.__name__)
        print(case.__name__, "rsdistill", *argv)
