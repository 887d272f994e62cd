"""``rsdistill show``: a quick look at any scene (true colour by wavelength, labels with names,
spectra), previewed window by window for large scenes; the counts it prints are the label file's."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml

from rsdistill.cli import main
from rsdistill.io import open_scene, read_scene
from rsdistill.io.masks import IGNORE_INDEX, Legend, read_mask

ENMAP = "enmap_potsdam_specdeepmap"


def test_a_preview_is_every_step_th_pixel_read_window_by_window(real_file):
    path = real_file(f"{ENMAP}/images/enmap_potsdam_tile_128_128.tif")
    preview, step = open_scene(path).preview(longest=11, size=4)  # 32 px -> step 3, windows of 3 px
    whole = read_scene(path)
    assert step == 3 and preview.cube.shape == (11, 11, 224)
    np.testing.assert_array_equal(preview.cube, whole.cube[::3, ::3])
    np.testing.assert_array_equal(preview.valid, whole.valid[::3, ::3])
    np.testing.assert_array_equal(preview.bad_bands, whole.bad_bands)


def test_show_an_enmap_tile_with_its_labels(real_file, tmp_path, capsys):
    labels = real_file(f"{ENMAP}/labels/enmap_potsdam_tile_128_128.tif")
    out = tmp_path / "tile.png"
    assert main(["show", "--scene", str(real_file(f"{ENMAP}/images/enmap_potsdam_tile_128_128.tif")), "--labels", str(labels),
                 "--out", str(out), "--longest", "16"]) == 0
    printed = capsys.readouterr().out
    assert out.stat().st_size > 10_000 and "shown at 1 pixel in 2" in printed and "wavelengths: 418.2-2445.5 nm" in printed
    shown = read_scene(real_file(f"{ENMAP}/images/enmap_potsdam_tile_128_128.tif"), labels=labels).labels[::2, ::2]
    ids, counts = np.unique(shown[shown > 0], return_counts=True)
    assert "classes (pixels shown): " + ", ".join(f"class {i} {c}" for i, c in zip(ids, counts)) in printed


def test_show_a_dubai_photo_names_the_classes_of_its_colour_mask(real_file, tmp_path, capsys):
    image = real_file("dubai_aerial_hitl/tile_1/images/image_part_001.jpg")
    mask = real_file("dubai_aerial_hitl/tile_1/masks/image_part_001.png")
    recipe = Path(__file__).resolve().parents[1] / "configs/segmentation/dubai.yaml"  # its legend names the mask colours
    assert main(["show", "--scene", str(image), "--labels", str(mask), "--legend", str(recipe), "--out", str(tmp_path / "d.png")]) == 0
    printed = capsys.readouterr().out
    legend = Legend.parse(**yaml.safe_load(recipe.read_text())["data"]["init_args"]["legend"])
    indices, _ = read_mask(mask, legend)
    counts = {name: int((indices == k).sum()) for k, name in enumerate(legend.names) if (indices == k).any()}
    assert (indices != IGNORE_INDEX).any() and counts["land"] > counts["building"] > 0
    assert "classes (pixels shown): " + ", ".join(f"{n} {c}" for n, c in counts.items()) in printed


def test_show_reads_every_format_and_says_when_a_file_has_no_wavelengths(real_file, tmp_path, capsys):
    assert main(["show", "--scene", str(real_file("eolearn_slovenia_s2/REFERENCE_SCENES.npy")), "--time-index", "2",
                 "--sensor", "sentinel2", "--labels", str(real_file("eolearn_slovenia_s2/LULC.npy")), "--out", str(tmp_path / "s.png")]) == 0
    assert main(["show", "--scene", str(real_file("unmixing_samson/samson_1.mat")), "--out", str(tmp_path / "m.png")]) == 0
    assert main(["show", "--scene", str(real_file("aviris_ng_isofit/ang20160910t185702_2rdn_img.hdr")), "--out", str(tmp_path / "e.png")]) == 0
    printed = capsys.readouterr().out
    assert printed.count("wrote") == 3 and (tmp_path / "e.png").stat().st_size > 10_000


def test_show_refuses_labels_of_another_shape_in_one_line(real_file, tmp_path, capsys):
    code = main(["show", "--scene", str(real_file(f"{ENMAP}/images/enmap_potsdam_tile_128_128.tif")),
                 "--labels", str(real_file("eolearn_slovenia_s2/LULC.npy")), "--out", str(tmp_path / "x.png")])
    assert code == 2 and "LULC.npy is 101×100 but the scene is 32×32" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["show"])  # --scene is required: argparse's own one-line usage error


def test_pixel_data_plots_a_scene_and_its_split(tmp_path):
    from rsdistill.data.classification import PixelClassificationData
    from rsdistill.errors import InputError

    data = PixelClassificationData(synthetic={"sensor": "enmap", "height": 32, "width": 32, "seed": 0}, split="blocks", train=0.5, val=0.2)
    assert data.plot(tmp_path / "classes.png").stat().st_size > 10_000
    assert data.plot(tmp_path / "split.png", split=True).stat().st_size > 10_000
    with pytest.raises(InputError, match=r"scene 1: the data holds scenes 0..0"):
        data.plot(tmp_path / "x.png", scene=1)
