"""Formats made by the tests: GeoTIFF round trip, MATLAB v7.3, ENVI with header metadata."""

import h5py
import numpy as np
import pytest
from affine import Affine
from rasterio.crs import CRS

from rsdistill.data.synthetic import make_synthetic_scene
from rsdistill.io import open_scene, read_label_map, read_scene, write_geotiff


def georeferenced_scene():
    scene = make_synthetic_scene("enmap", 12, 10, seed=1).scene
    scene.crs = CRS.from_epsg(32633)
    scene.transform = Affine(30.0, 0.0, 366015.0, 0.0, -30.0, 5809965.0)
    return scene


def test_geotiff_round_trip_keeps_crs_transform_and_wavelengths(tmp_path):
    scene = georeferenced_scene()
    path = write_geotiff(tmp_path / "scene.tif", scene.cube, like=scene)
    back = read_scene(path)
    assert back.crs == scene.crs and back.transform == scene.transform
    np.testing.assert_allclose(back.wavelengths, scene.wavelengths, rtol=1e-5)
    np.testing.assert_array_equal(back.bad_bands, scene.bad_bands)
    np.testing.assert_array_equal(back.cube, scene.cube)


def test_class_map_written_like_scene(tmp_path):
    scene = georeferenced_scene()
    path = write_geotiff(tmp_path / "map.tif", scene.labels.astype(np.uint8), like=scene)
    label_map = read_label_map(path)
    np.testing.assert_array_equal(label_map.labels, scene.labels)
    assert label_map.crs == scene.crs and label_map.transform == scene.transform


def test_interrupted_write_keeps_previous_file(tmp_path, monkeypatch):
    scene = georeferenced_scene()
    path = write_geotiff(tmp_path / "scene.tif", scene.cube, like=scene)
    before = path.read_bytes()

    def fail(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr("rsdistill.io.geotiff._write_band_metadata", fail)
    with pytest.raises(KeyboardInterrupt):
        write_geotiff(path, scene.cube * 2, like=scene)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["scene.tif"]


def write_mat73(path, **arrays):
    """A MATLAB v7.3 file: HDF5 with a 512-byte user block holding the MATLAB header, arrays column-major."""
    with h5py.File(path, "w", userblock_size=512) as f:
        for name, array in arrays.items():
            f.create_dataset(name, data=np.asarray(array).T)
            f[name].attrs["MATLAB_class"] = np.bytes_("double" if array.dtype.kind == "f" else "uint8")
    with open(path, "r+b") as f:
        f.write(b"MATLAB 7.3 MAT-file, Platform: GLNXA64, Created on: test HDF5 schema 1.00 .".ljust(116) + b"\0" * 8 + b"\x00\x02IM")


def test_mat_v73(tmp_path):
    cube = np.random.default_rng(0).random((9, 7, 5))
    labels = np.random.default_rng(1).integers(0, 4, (9, 7)).astype(np.uint8)
    path = tmp_path / "scene73.mat"
    write_mat73(path, pavia=cube, pavia_gt=labels)
    scene = read_scene(path, labels=path)
    np.testing.assert_allclose(scene.cube, cube.astype(np.float32))
    np.testing.assert_array_equal(scene.labels, labels)


def test_envi_metadata_from_header(tmp_path):
    cube = np.random.default_rng(0).random((5, 6, 4)).astype(np.float32)
    cube[0, 0, :] = -1
    np.ascontiguousarray(cube.transpose(2, 0, 1)).tofile(tmp_path / "scene.img")  # BSQ
    (tmp_path / "scene.hdr").write_text(
        "ENVI\nsamples = 6\nlines = 5\nbands = 4\nheader offset = 0\nfile type = ENVI Standard\n"
        "data type = 4\ninterleave = bsq\nbyte order = 0\ndata ignore value = -1\n"
        "wavelength units = Micrometers\nwavelength = {0.45, 0.55, 0.65, 0.85}\nfwhm = {0.01, 0.01, 0.01, 0.02}\n"
        "bbl = {1, 1, 0, 1}\nmap info = {UTM, 1, 1, 500000.0, 4000000.0, 2.0, 2.0, 33, North, WGS-84}\n"
    )
    scene = open_scene(tmp_path / "scene.hdr").read()
    np.testing.assert_allclose(scene.wavelengths, [450, 550, 650, 850])
    np.testing.assert_allclose(scene.fwhm, [10, 10, 10, 20])
    assert scene.bad_bands.tolist() == [False, False, True, False]
    assert not scene.valid[0, 0] and scene.valid.sum() == 29
    assert scene.transform == Affine(2.0, 0.0, 500000.0, 0.0, -2.0, 4000000.0)
    np.testing.assert_array_equal(scene.cube[1:, :, 0], cube[1:, :, 0])


@pytest.mark.parametrize("unit", ["Unknown", None])
def test_envi_wavelengths_without_a_known_unit_are_told_by_their_magnitude(tmp_path, unit):
    np.zeros((3, 2, 2), np.float32).tofile(tmp_path / "scene.img")
    (tmp_path / "scene.hdr").write_text(
        "ENVI\nsamples = 2\nlines = 2\nbands = 3\nheader offset = 0\nfile type = ENVI Standard\ndata type = 4\n"
        "interleave = bsq\nbyte order = 0\n" + (f"wavelength units = {unit}\n" if unit else "") +
        "wavelength = {0.45, 0.55, 2.2}\nfwhm = {0.01, 0.01, 0.02}\n")
    scene = open_scene(tmp_path / "scene.hdr", empty_bands="bad").read()
    np.testing.assert_allclose(scene.wavelengths, [450, 550, 2200])
    np.testing.assert_allclose(scene.fwhm, [10, 10, 20])


def test_geotiff_wavelengths_in_micrometres_per_band_tags_and_in_descriptions(tmp_path):
    import rasterio

    profile = {"driver": "GTiff", "height": 2, "width": 2, "count": 2, "dtype": "float32"}
    with rasterio.open(tmp_path / "tags.tif", "w", **profile) as ds:
        ds.write(np.ones((2, 2, 2), np.float32))
        ds.update_tags(1, wavelength="0.49", wavelength_units="µm", fwhm="0.02")
        ds.update_tags(2, wavelength="842", wavelength_units="Nanometers", fwhm="100")
    with rasterio.open(tmp_path / "names.tif", "w", **profile) as ds:
        ds.write(np.ones((2, 2, 2), np.float32))
        ds.descriptions = ("Blue (490 nm)", "NIR (0.842 micrometers)")
    tags = open_scene(tmp_path / "tags.tif").read()
    np.testing.assert_allclose(tags.wavelengths, [490, 842])
    np.testing.assert_allclose(tags.fwhm, [20, 100])
    np.testing.assert_allclose(open_scene(tmp_path / "names.tif").read().wavelengths, [490, 842])


def test_folder_of_single_band_rasters_is_one_cube_on_the_finest_grid(tmp_path):
    import rasterio
    from rasterio.transform import from_origin

    def write(name, values, pixel):
        profile = {"driver": "GTiff", "height": values.shape[0], "width": values.shape[1], "count": 1, "dtype": "uint16",
                   "crs": "EPSG:32633", "transform": from_origin(500000, 5000000, pixel, pixel)}
        with rasterio.open(tmp_path / f"patch_{name}.tif", "w", **profile) as ds:
            ds.write(values.astype("uint16"), 1)

    write("B04", np.full((8, 8), 300), 10)
    write("B02", np.arange(64).reshape(8, 8) + 100, 10)
    write("B11", np.full((4, 4), 2000), 20)
    (tmp_path / "patch_labels_metadata.json").write_text("{}")
    scene = open_scene(tmp_path).read()
    assert scene.shape == (8, 8, 3) and scene.wavelengths.tolist() == [492.4, 664.6, 1613.7]  # sentinel2 table order
    assert scene.cube[0, 0, 0] == 100 and np.all(scene.cube[:, :, 2] == 2000) and scene.transform.a == 10
