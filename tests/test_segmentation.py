"""Semantic segmentation: masks through a legend, whole-image splits, metrics pinned against a
confusion matrix computed by hand, and UPerNet trained and tested through the recipe dialect."""

import json

import numpy as np
import pytest
import rasterio
import torch
import yaml

from rsdistill.cli import main
from rsdistill.data.segmentation import SegmentationData
from rsdistill.errors import InputError
from rsdistill.io import read_scene, write_geotiff
from rsdistill.io.masks import IGNORE_INDEX, Legend, read_mask
from rsdistill.io.scene import tile_windows
from rsdistill.tasks.segmentation import segmentation_metrics

COLOURS = {"building": (60, 16, 152), "land": (132, 41, 246), "water": (226, 169, 41)}
LEGEND = {"classes": [{"name": n, "colour": list(c)} for n, c in COLOURS.items()], "ignore": [[155, 155, 155]]}


def test_metrics_are_those_of_a_confusion_matrix_counted_by_hand():
    target = torch.tensor([[0, 0, 1, 1, IGNORE_INDEX, 2], [0, 1, 1, IGNORE_INDEX, 2, 2]])
    preds = torch.tensor([[0, 1, 1, 1, 3, 2], [0, 0, 1, 0, 2, 3]])  # class 3 predicted but absent; class 4 nowhere
    metrics = segmentation_metrics(5)
    metrics.update(preds, target)
    values = metrics.compute()
    confusion = np.zeros((5, 5), int)
    keep = target != IGNORE_INDEX
    np.add.at(confusion, (target[keep].numpy(), preds[keep].numpy()), 1)
    assert values["confusion"].tolist() == confusion.tolist()
    tp, fp, fn = np.diag(confusion), confusion.sum(0) - np.diag(confusion), confusion.sum(1) - np.diag(confusion)
    seen = (tp + fp + fn) > 0  # the macro means leave out a class absent from prediction and reference alike
    iou, f1 = tp / np.maximum(tp + fp + fn, 1), 2 * tp / np.maximum(2 * tp + fp + fn, 1)
    assert float(values["miou"]) == pytest.approx(iou[seen].mean()) and float(values["mf1"]) == pytest.approx(f1[seen].mean())
    assert float(values["oa"]) == pytest.approx(np.trace(confusion) / confusion.sum())  # ignored pixels are not counted
    assert values["iou"].tolist() == pytest.approx(iou.tolist())


def write_pair(folder, name, size=(20, 24), palette=False, mask_size=None, seed=0):
    rng = np.random.default_rng(seed)
    image = write_geotiff(folder / f"{name}.tif", rng.random((*size, 3)).astype(np.float32))
    classes = rng.integers(0, 3, mask_size or size)
    classes[0, 0] = 3  # one grey (ignored) pixel
    colours = np.array([*COLOURS.values(), (155, 155, 155)], np.uint8)
    h, w = classes.shape
    mask = folder / f"{name}_mask.tif"
    if palette:
        with rasterio.open(mask, "w", driver="GTiff", height=h, width=w, count=1, dtype="uint8") as ds:
            ds.write(classes[None].astype(np.uint8))
            ds.write_colormap(1, {i: (*colours[i], 255) for i in range(4)})
    else:
        with rasterio.open(mask, "w", driver="GTiff", height=h, width=w, count=3, dtype="uint8") as ds:
            ds.write(np.moveaxis(colours[classes], -1, 0))
    return image, mask, np.where(classes == 3, IGNORE_INDEX, classes)


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_rgb_and_palette_masks_read_through_the_legend(tmp_path):
    legend = Legend.parse(LEGEND["classes"], LEGEND["ignore"])
    for palette in (False, True):
        _, mask, expected = write_pair(tmp_path, f"p{palette}", palette=palette)
        classes, unknown = read_mask(mask, legend)
        assert unknown == 0 and np.array_equal(classes, expected)
    rgb = np.zeros((2, 2, 3), np.uint8)  # black: not in the legend
    classes, unknown = legend.classes_of(rgb)
    assert unknown == 4 and (classes == IGNORE_INDEX).all()
    with pytest.raises(InputError, match="each class is"):
        Legend.parse([{"name": "x"}])


def test_whole_images_per_subset_every_pixel_covered_and_size_checked(tmp_path):
    for k in range(3):
        write_pair(tmp_path, f"img{k}", seed=k)
    assert {(w.row, w.col) for w in tile_windows(20, 24, 16, 8, edges="shift")} == {(0, 0), (0, 8), (4, 0), (4, 8)}
    data = SegmentationData({"train": [str(tmp_path / "img0.tif"), str(tmp_path / "img1.tif")], "test": [str(tmp_path / "img2.tif")]},
                            LEGEND, masks=[[".tif", "_mask.tif"]], tile_size=16, stride=8, augment=False)
    assert len(data.train_set) == 8 and len(data.test_set) == 4 and data.info["class_names"] == list(COLOURS)
    item = data.test_set[0]
    assert item["image"].shape == (3, 16, 16) and item["mask"].dtype == torch.int64
    write_pair(tmp_path, "odd", mask_size=(20, 23))
    with pytest.raises(InputError, match=r"odd_mask.tif: mask is 20×23 but its image .*odd.tif is 20×24"):
        SegmentationData({"train": [str(tmp_path / "odd.tif")]}, LEGEND, masks=[[".tif", "_mask.tif"]], tile_size=16)
    # the checks and statistics are remembered per file state: a file rewritten since is read anew
    write_pair(tmp_path, "img1", mask_size=(20, 22), seed=1)
    with pytest.raises(InputError, match=r"img1_mask.tif: mask is 20×22"):
        SegmentationData({"train": [str(tmp_path / "img0.tif"), str(tmp_path / "img1.tif")]}, LEGEND, masks=[[".tif", "_mask.tif"]], tile_size=16)
    write_pair(tmp_path, "img1", size=(20, 24), seed=7)
    again = SegmentationData({"train": [str(tmp_path / "img0.tif"), str(tmp_path / "img1.tif")]}, LEGEND, masks=[[".tif", "_mask.tif"]], tile_size=16)
    assert again.preprocessing.to_dict() != data.preprocessing.to_dict()


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_upernet_fits_tests_and_predicts_through_a_recipe(tmp_path, monkeypatch):
    for k in range(4):
        write_pair(tmp_path, f"img{k}", size=(32, 32), seed=k)
    recipe = tmp_path / "seg.yaml"
    recipe.write_text(yaml.safe_dump({
        "base": str(__import__("pathlib").Path(__file__).resolve().parents[1] / "configs/segmentation/dubai.yaml"),
        "run_dir": str(tmp_path / "run"),
        "data": {"init_args": {"images": {"train": [str(tmp_path / "img[01].tif")], "val": [str(tmp_path / "img2.tif")], "test": [str(tmp_path / "img3.tif")]},
                               "masks": [[".tif", "_mask.tif"]], "legend": LEGEND, "tile_size": 16, "stride": 16, "batch_size": 4}},
        "model": {"init_args": {"backbone": {"patch_size": 4, "embed_dim": 16, "depth": 4, "num_heads": 2}, "channels": 8}},
    }))
    quick = ["--trainer.max_epochs", "1", "--trainer.enable_progress_bar", "false"]
    assert main(["fit", "-c", str(recipe), *quick]) == 0
    assert main(["test", "-c", str(recipe), "--ckpt_path", "last", *quick]) == 0
    record = json.loads((tmp_path / "run/test/scores.json").read_text())  # per-class IoU and confusion, as documented
    assert list(record["iou"]) == [c["name"] for c in LEGEND["classes"]] and len(record["confusion"]) == len(LEGEND["classes"])
    reference, _ = read_mask(tmp_path / "img3_mask.tif", Legend.parse(LEGEND["classes"], LEGEND["ignore"]))
    assert sum(map(sum, record["confusion"])) == int((reference != IGNORE_INDEX).sum())  # every scored pixel, once
    assert main(["predict", "-c", str(recipe), "--ckpt_path", "last", *quick]) == 0
    predictions = torch.load(tmp_path / "run/predict/predictions.pt", weights_only=True)
    assert tuple(predictions.shape) == (4, 16, 16) and int(predictions.max()) < 3
    with open(tmp_path / "run/test/metrics.csv") as f:
        header = f.readline()
        logged = dict(zip(header.strip().split(","), f.readline().strip().split(",")))
    assert all(k in header for k in ("test/miou", "test/oa", "test/mf1"))
    # the test image mapped in the test's own windows and scored as a tile: the test's scores
    (tmp_path / "tiles.csv").write_text("image,mask\nimg3.tif,img3_mask.tif\n")
    assert main(["score-tiles", "--ckpt", str(tmp_path / "run/last.ckpt"), "--tiles", str(tmp_path / "tiles.csv"),
                 "--tile", "16", "--overlap", "0", "--batch_size", "1", "--out", str(tmp_path / "scores.json")]) == 0
    scores = __import__("json").loads((tmp_path / "scores.json").read_text())["runs"][str(tmp_path / "run/last.ckpt")]
    assert scores["miou"] == pytest.approx(float(logged["test/miou"]), abs=1e-6) and scores["oa"] == pytest.approx(float(logged["test/oa"]), abs=1e-6)
    assert scores["specdeepmap_iou"] == pytest.approx(scores["miou"], abs=1e-6)
    # a whole georeferenced scene, larger than a window, segmented in overlapping blended windows
    from affine import Affine
    from rasterio.crs import CRS

    from rsdistill.inference.mapping import segment_scene
    from rsdistill.tasks.loading import load_task

    cube = np.random.default_rng(9).random((40, 36, 3)).astype(np.float32)
    cube[0, 0] = -1
    scene_path = write_geotiff(tmp_path / "scene.tif", cube, nodata=-1)
    with rasterio.open(scene_path, "r+") as ds:
        ds.crs, ds.transform = CRS.from_epsg(32640), Affine(0.5, 0, 300000, 0, -0.5, 2800000)
    assert main(["map", "--ckpt", str(tmp_path / "run/last.ckpt"), "--scene", str(scene_path), "--out", str(tmp_path / "map.tif"),
                 "--tile", "16", "--overlap", "8"]) == 0
    # beside its reference: the scene's image/mask pair from the recipe's test subset
    assert main(["map", "--ckpt", str(tmp_path / "run/last.ckpt"), "--scene", str(tmp_path / "img3.tif"), "--out", str(tmp_path / "ref.tif"),
                 "--tile", "16", "--overlap", "8", "--reference", str(tmp_path / "img3_mask.tif")]) == 0
    assert (tmp_path / "ref.png").stat().st_size > 0
    with pytest.raises(InputError, match="img2_mask.tif: reference is 32×32 but the scene is 40×36"):
        from rsdistill.cli.verbs import reference_codes
        reference_codes(Legend.parse(**LEGEND), tmp_path / "img2_mask.tif", [1, 2, 3], (40, 36))
    with rasterio.open(tmp_path / "map.tif") as ds:
        values = ds.read(1)
        assert ds.crs == CRS.from_epsg(32640) and ds.transform == Affine(0.5, 0, 300000, 0, -0.5, 2800000)
    assert values.shape == (40, 36) and values[0, 0] == 0 and set(np.unique(values[1:])) <= {1, 2, 3}
    assert (tmp_path / "map.png").stat().st_size > 0
    model = load_task(tmp_path / "run/last.ckpt")
    small = read_scene(scene_path, window={"row": 8, "col": 8, "height": 16, "width": 16})
    direct = model(torch.from_numpy(model.preprocessing.cube(small.cube, small.valid))[None]).argmax(1)[0].numpy() + 1
    assert np.array_equal(segment_scene(model, small, tile=16, overlap=8), direct)  # one window: blending changes nothing
    # strip by strip from the file = every window's probabilities summed over the whole scene at once
    whole = read_scene(scene_path)
    image = torch.from_numpy(model.preprocessing.cube(whole.cube, whole.valid))[None]

    def blended(segmenter, weight: torch.Tensor) -> np.ndarray:  # every window's probabilities × weight, summed over the scene
        scores = torch.zeros(3, 40, 36)
        with torch.no_grad():
            for window in tile_windows(40, 36, 16, 8, edges="shift"):
                rows, cols = window.slices
                scores[:, rows, cols] += segmenter(image[:, :, rows, cols])[0].softmax(0) * weight
        return np.where(whole.valid, scores.argmax(0).numpy() + 1, 0)

    expected = blended(model, torch.ones(16, 16))
    assert main(["map", "--ckpt", str(tmp_path / "run/last.ckpt"), "--scene", str(scene_path), "--out", str(tmp_path / "uniform.tif"),
                 "--tile", "16", "--overlap", "8", "--blend", "uniform"]) == 0
    with rasterio.open(tmp_path / "uniform.tif") as ds:
        assert np.array_equal(ds.read(1), expected)
    assert np.array_equal(segment_scene(model, whole, tile=16, overlap=8, blend="uniform"), expected)
    # the default cosine blend: numpy's symmetric Hann window, floored at 1 %, as an outer product
    hann = np.maximum(np.hanning(16), 0.01)
    cosine = torch.from_numpy(np.outer(hann, hann)).float()
    assert np.array_equal(segment_scene(model, whole, tile=16, overlap=8), blended(model, cosine))
    with rasterio.open(tmp_path / "map.tif") as ds:  # the first `map` above: default blend, strip by strip from the file
        assert np.array_equal(ds.read(1), blended(model, cosine))

    class EdgeOrCentre(torch.nn.Module):  # class 1 near a window's edges, class 2 at its centre: the blends disagree in overlaps
        def __init__(self, inner):
            super().__init__()
            self.net, self.preprocessing, self.class_names = inner.net, inner.preprocessing, inner.class_names

        def forward(self, x):
            centre = cosine / cosine.max()
            return 4 * torch.stack([1 - centre, centre, torch.zeros_like(centre)])[None].expand(len(x), -1, -1, -1)

    biased = EdgeOrCentre(model)
    by_blend = {blend: blended(biased, weight) for blend, weight in (("uniform", torch.ones(16, 16)), ("cosine", cosine))}
    assert (by_blend["uniform"] != by_blend["cosine"]).sum() > 50
    for blend, expected_map in by_blend.items():
        assert np.array_equal(segment_scene(biased, whole, tile=16, overlap=8, blend=blend), expected_map), blend


@pytest.mark.filterwarnings("ignore::UserWarning")
@pytest.mark.parametrize("arch, cnn", [("unet", {"width": 4, "depth": 2}), ("specdeepmap_cnn", None)])
def test_cnn_baselines_train_and_report_the_specdeepmap_iou(tmp_path, arch, cnn):
    import lightning as L

    from rsdistill.tasks.segmentation import SemanticSegmenter

    for k in range(3):
        write_pair(tmp_path, f"img{k}", size=(16, 16), seed=k)
    data = SegmentationData({"train": [str(tmp_path / "img[01].tif")], "test": [str(tmp_path / "img2.tif")]}, LEGEND,
                            masks=[[".tif", "_mask.tif"]], tile_size=16, batch_size=1)
    model = SemanticSegmenter(data.info, arch=arch, cnn=cnn, specdeepmap_iou=True)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    trainer = L.Trainer(max_epochs=2, logger=False, default_root_dir=tmp_path, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False)
    trainer.fit(model, data)
    assert any(not torch.equal(before[k], v) for k, v in model.state_dict().items() if v.is_floating_point())
    trainer.test(model, data, verbose=False)
    from rsdistill.inference.mapping import segment_scene

    class_map = segment_scene(model.eval(), read_scene(tmp_path / "img2.tif"), tile=16, overlap=8)  # a CNN maps whole images too
    assert class_map.shape == (16, 16) and set(np.unique(class_map)) <= {1, 2, 3}
    scores = model.scores["test"]
    assert set(scores) >= {"miou", "oa", "mf1", "specdeepmap_iou", "iou", "confusion"}
    # one test tile per batch: SpecDeepMap's mean of batch IoUs is that tile's macro IoU, the mIoU
    assert scores["specdeepmap_iou"] == pytest.approx(scores["miou"], abs=1e-6)
    with pytest.raises(InputError, match=f"arch {arch}: the tile size 6 must be a multiple of"):
        SemanticSegmenter({**data.info, "tile_size": 6}, arch=arch, cnn=cnn)
    with pytest.raises(InputError, match="arch must be upernet or one of"):
        SemanticSegmenter(data.info, arch="segformer")


def test_an_epoch_can_draw_a_fresh_subset_of_the_training_tiles():
    from rsdistill.data.sampling import EpochShuffle

    sampler = EpochShuffle(100, seed=3, count=10)
    first = list(sampler)
    sampler.set_epoch(1)
    second = list(sampler)
    assert len(sampler) == 10 and len(set(first)) == 10 and first != second
    sampler.set_epoch(0)
    assert list(sampler) == first  # depends only on (seed, epoch): a resumed run draws the same tiles
    repeated = list(EpochShuffle(5, seed=0, count=12))  # more than the items: further permutations
    assert sorted(repeated[:5]) == sorted(repeated[5:10]) == list(range(5)) and len(repeated) == 12
    assert repeated[:5] == list(EpochShuffle(5, seed=0)) and list(EpochShuffle(5, seed=0, count=3)) == repeated[:3]


def test_unmapped_labelled_pixels_count_against_their_class():
    from rsdistill.inference.tile_scores import scores_of_confusion

    # 2 classes + the unmapped column: class 0 has 3 px (2 right, 1 unmapped), class 1 has 1 px (right)
    scores = scores_of_confusion(np.array([[2, 0, 1], [0, 1, 0], [0, 0, 0]]), 2)
    assert scores["iou"] == pytest.approx([2 / 3, 1.0]) and scores["oa"] == pytest.approx(3 / 4)
    assert scores["mf1"] == pytest.approx((0.8 + 1.0) / 2) and scores["confusion"] == [[2, 0, 1], [0, 1, 0]]
