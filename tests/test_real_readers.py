"""Readers on the real files in shared/data, checked against the shapes and class counts in its README."""

import numpy as np
import pytest

from rsdistill.io import open_scene, read_label_map, read_scene

ENMAP = "enmap_potsdam_specdeepmap"
# Per-tile label counts from shared/data/README.md.
ENMAP_TILE_CLASSES = {
    "128_0": {1: 18, 2: 52, 3: 350, 4: 83, 5: 5},
    "128_128": {1: 14, 2: 7, 3: 93, 4: 76, 5: 2, 6: 207},
    "64_32": {4: 144},
    "96_96": {1: 43, 2: 63, 3: 52, 4: 24},
}


@pytest.mark.parametrize("tile", sorted(ENMAP_TILE_CLASSES))
def test_enmap_tile_with_labels(real_file, tile):
    scene = read_scene(real_file(f"{ENMAP}/images/enmap_potsdam_tile_{tile}.tif"), labels=real_file(f"{ENMAP}/labels/enmap_potsdam_tile_{tile}.tif"))
    assert scene.shape == (32, 32, 224)
    assert scene.cube.dtype == np.float32
    assert np.flatnonzero(scene.bad_bands).tolist() == [129, 130, 131, 132, 133, 134]
    assert 418 < scene.wavelengths[0] < 419 and 2445 < scene.wavelengths[-1] < 2446
    assert scene.fwhm is not None and scene.crs.to_epsg() == 32633 and scene.pixel_size == (30.0, 30.0)
    ids, counts = np.unique(scene.labels[scene.labels > 0], return_counts=True)
    assert dict(zip(ids.tolist(), counts.tolist())) == ENMAP_TILE_CLASSES[tile]
    assert not (scene.cube[:, :, scene.bad_bands] != 0).any(), "nodata bands must not leak -32768 into the cube"


def test_enmap_full_label_map(real_file):
    label_map = read_label_map(real_file(f"{ENMAP}/enmap_landcover_unstyled.tif"))
    assert label_map.labels.shape == (200, 330)
    assert label_map.class_counts() == {1: 505, 2: 953, 3: 1694, 4: 2070, 5: 91, 6: 359}


@pytest.mark.parametrize(
    "relative, shape, total, classes",
    [
        ("indian_pines/Indian_pines_gt.mat", (145, 145), 10249, 16),
        ("pavia_university/PaviaU_gt.mat", (610, 340), 42776, 9),
        ("salinas/Salinas_gt.mat", (512, 217), 54129, 16),
        ("salinas_a/SalinasA_gt.mat", (83, 86), 5348, 6),
        ("eolearn_slovenia_s2/LULC.npy", (101, 100), 9945, 5),
    ],
)
def test_ground_truth_maps(real_file, relative, shape, total, classes):
    label_map = read_label_map(real_file(relative))
    counts = label_map.class_counts()
    assert label_map.labels.shape == shape and sum(counts.values()) == total and len(counts) == classes


@pytest.mark.parametrize(
    "relative, shape",
    [
        ("hsi_anomaly_lren/HYDICE_data.mat", (100, 80, 162)),
        ("hsi_anomaly_lren/sandiego_plane.mat", (100, 100, 189)),
        ("hsi_anomaly_lren/abu-urban-2.mat", (100, 100, 198)),
        ("hsi_anomaly_lren/abu-beach-4.mat", (100, 100, 102)),
        ("unmixing_samson/samson_1.mat", (95, 95, 156)),
        ("unmixing_samson/samson_dataset.mat", (95, 95, 156)),
        ("unmixing_muufl_gulfport/muffle_dataset_130_90.mat", (90, 90, 64)),
        ("muufl_gulfport_hsi_toolkit/an_hsi_image_sub_for_demo.mat", (51, 88, 72)),
        ("hls_terratorch/segmentation_test_0_input.tif", (224, 224, 10)),
        ("eurosat_ms_samples/Forest/Forest_1.tif", (64, 64, 13)),
    ],
)
def test_cube_shapes(real_file, relative, shape):
    scene = read_scene(real_file(relative))
    assert scene.shape == shape
    assert scene.valid.any()


def test_mat_cube_and_its_labels_found_by_shape(real_file):
    contents_scene = read_scene(real_file("hsi_anomaly_lren/sandiego_plane.mat"), labels=real_file("hsi_anomaly_lren/sandiego_plane.mat"))
    assert contents_scene.labels.sum() == 134


def test_mat_wavelength_vector_found(real_file):
    scene = read_scene(real_file("muufl_gulfport_hsi_toolkit/an_hsi_img_for_tgt_det_demo.mat"))
    assert scene.shape == (36, 36, 72)
    assert scene.wavelengths[0] == pytest.approx(367.7) and scene.wavelengths[-1] == pytest.approx(1043.4)


def test_aviris_ng_envi_wavelengths_from_band_names(real_file):
    for path in ("aviris_ng_isofit/ang20160910t185702_2rdn_img", "aviris_ng_isofit/ang20160910t185702_2rdn_img.hdr"):
        scene = read_scene(real_file(path))
        assert scene.shape == (25, 30, 425)
        assert scene.wavelengths[0] == pytest.approx(376.44) and scene.wavelengths[-1] == pytest.approx(2500.12)
        assert scene.crs.to_epsg() == 32611 and scene.pixel_size == (15.0, 15.0)
        assert scene.transform.c == pytest.approx(353128.751647949)


def test_column_major_pixel_matrix_matches_reference_abundances(real_file):
    """Moffett: Y (bands, pixels) in MATLAB order must line up with S_GT (50, 50, 3) and GT (3, 184)."""
    from scipy.io import loadmat

    path = real_file("unmixing_moffett/moffett.mat")
    scene = read_scene(path)
    reference = loadmat(path)
    reconstruction = reference["S_GT"] @ reference["GT"]  # (50, 50, 184)
    rmse = np.sqrt(((scene.cube - reconstruction) ** 2).mean())
    transposed = np.sqrt(((scene.cube.transpose(1, 0, 2) - reconstruction) ** 2).mean())
    assert rmse < 0.03 < transposed


def test_samson_square_guess_matches_explicit_dimensions(real_file):
    explicit = read_scene(real_file("unmixing_samson/samson_1.mat"))  # has nRow/nCol
    guessed = read_scene(real_file("unmixing_samson/samson_dataset.mat"))
    np.testing.assert_array_equal(explicit.cube, guessed.cube)
    assert any("square" in note for note in guessed.notes)


def test_slovenia_time_series_with_sensor_and_labels(real_file):
    scene = read_scene(
        real_file("eolearn_slovenia_s2/REFERENCE_SCENES.npy"), time_index=2, sensor="sentinel2",
        labels=real_file("eolearn_slovenia_s2/LULC.npy"),
    )
    assert scene.shape == (101, 100, 13)
    assert scene.band_names[8] == "B8A"
    assert (scene.labels > 0).sum() == 9945


def test_windowed_read_equals_slice_of_full_read(real_file):
    source = open_scene(real_file("hls_terratorch/segmentation_test_0_input.tif"))
    full = source.read()
    tiles = list(source.tiles(100))
    assert len(tiles) == 9
    for window, tile in tiles:
        rows, cols = window.slices
        np.testing.assert_array_equal(tile.cube, full.cube[rows, cols])
        assert tile.transform.c == pytest.approx(full.transform.c + window.col * 30.0)
        assert tile.transform.f == pytest.approx(full.transform.f - window.row * 30.0)


def test_bigearthnet_band_folder_resamples_20_and_60_m_bands_bilinearly_to_the_10_m_grid(real_file):
    """A BigEarthNet patch folder: twelve single-band GeoTIFFs at 10, 20 and 60 m, read as one
    120 × 120 cube. Independent reference: scipy's linear zoom on the pixel-area grid
    (``grid_mode``, edges held), rounded to the files' integers as GDAL's resampling into uint16
    does. 10 m bands are the files' values; 20 m bands (×2) match exactly; 60 m bands (×6) match
    but for ties of the rounding (≤ 1 DN, measured on 48 of 14,400 pixels). Checked that it fails
    with nearest-neighbour resampling in the reader (B01 378 DN off on 13,647 pixels)."""
    import rasterio
    from scipy import ndimage

    folder = real_file("bigearthnet_tiny/s2/S2A_MSIL2A_20170617T113321_36_85")
    scene = read_scene(folder)
    assert scene.cube.shape == (120, 120, 12) and np.all(np.diff(scene.wavelengths) > 0)
    assert scene.band_names == ["B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B11", "B12"]
    for index, band in enumerate(scene.band_names):
        with rasterio.open(folder / f"{folder.name}_{band}.tif") as dataset:
            native = dataset.read(1).astype(np.float64)
        factor = 120 // native.shape[0]
        expected = np.floor(ndimage.zoom(native, factor, order=1, grid_mode=True, mode="nearest") + 0.5)
        off = np.abs(scene.cube[..., index] - expected)
        assert off.max() <= (0 if factor < 6 else 1) and (off > 0).mean() < 0.005, (band, factor, off.max(), (off > 0).sum())
