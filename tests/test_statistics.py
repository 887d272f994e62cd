import csv

import numpy as np

from rsdistill.data.statistics import BandStatistics, band_statistics
from rsdistill.data.synthetic import make_synthetic_scene
from rsdistill.io import write_geotiff


def test_streaming_equals_direct_computation(tmp_path):
    scene = make_synthetic_scene("sentinel2", 37, 29, seed=3).scene
    path = write_geotiff(tmp_path / "s2.tif", scene.cube, like=scene)
    stats = band_statistics([path, path], tile=8)
    pixels = scene.cube.reshape(-1, 13).astype(np.float64)
    np.testing.assert_allclose(stats.mean, pixels.mean(0), rtol=1e-9)
    np.testing.assert_allclose(stats.std, pixels.std(0), rtol=1e-9)
    loaded = BandStatistics.load(stats.save(tmp_path / "stats.json"), bands=13)
    assert loaded.mean == stats.mean and loaded.files == [str(path)] * 2


def test_enmap_train_statistics_match_specdeepmap_normalisation(real_file):
    """SpecDeepMap ships per-band mean/std of its training tiles; ours must reproduce them."""
    folder = real_file("enmap_potsdam_specdeepmap")
    train = [folder / row["image"] for row in csv.DictReader(open(folder / "train_files.csv"))]
    stats = band_statistics(train, tile=16)
    rows = [r for r in csv.DictReader(open(folder / "Normalize_Bands.csv")) if r["mean"]]
    bands = [int(r["Band_Number"]) - 1 for r in rows]
    np.testing.assert_allclose(np.array(stats.mean)[bands], [float(r["mean"]) for r in rows], rtol=1e-9)
    np.testing.assert_allclose(np.array(stats.std)[bands], [float(r["std"]) for r in rows], rtol=1e-6)
    assert stats.bad_bands == [129, 130, 131, 132, 133, 134]
