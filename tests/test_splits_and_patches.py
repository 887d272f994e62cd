import numpy as np
import pytest
import torch

from rsdistill.data.classification import PixelClassificationData
from rsdistill.data.patches import all_pixel_patches, padded_cube
from rsdistill.data.splits import PixelSplit, block_split, labelled_pixels, stratified_split, subsample_per_class
from rsdistill.data.synthetic import make_synthetic_scene
from rsdistill.errors import InputError

SYNTHETIC = {"sensor": "sentinel2", "height": 40, "width": 40, "seed": 2}


def as_set(coords):
    return {tuple(c) for c in coords.tolist()}


def synthetic_labels():
    return [make_synthetic_scene(**SYNTHETIC).scene.labels]


def test_stratified_fraction_and_count_are_per_class_and_disjoint():
    coords, classes = labelled_pixels(synthetic_labels())
    split = stratified_split(coords, classes, train=0.1, val=0.05, seed=0, scenes=["s"])
    subsets = [as_set(split.train), as_set(split.val), as_set(split.test)]
    assert sum(map(len, subsets)) == len(coords) and not (subsets[0] & subsets[2]) and not (subsets[1] & subsets[2])
    labels = synthetic_labels()[0]
    for c in np.unique(classes):
        n_class = (classes == c).sum()
        n_train = sum(labels[r, col] == c for _, r, col in split.train)
        assert n_train == max(1, round(0.1 * n_class))
    by_count = stratified_split(coords, classes, train=5, val=2, seed=0, scenes=["s"])
    assert len(by_count.train) == 5 * len(np.unique(classes)) and len(by_count.val) == 2 * len(np.unique(classes))


def test_class_too_small_for_the_split_is_named():
    labels = np.zeros((10, 10), int)
    labels[:5] = 1
    labels[9, 9] = 2
    coords, classes = labelled_pixels([labels])
    with pytest.raises(InputError, match="class 2 has 1 labelled pixels"):
        stratified_split(coords, classes, train=0.1, val=0.05, seed=0, scenes=["s"])


def test_no_labelled_pixel():
    with pytest.raises(InputError, match="no labelled pixel"):
        labelled_pixels([np.zeros((5, 5), int)])


def test_block_split_keeps_blocks_whole():
    coords, classes = labelled_pixels(synthetic_labels())
    split = block_split(coords, classes, block_size=8, train=0.5, val=0.2, seed=1, scenes=["s"])
    blocks = {name: {(r // 8, c // 8) for _, r, c in split.subset(name)} for name in ("train", "val", "test")}
    assert not (blocks["train"] & blocks["test"]) and not (blocks["train"] & blocks["val"]) and not (blocks["val"] & blocks["test"])


def test_buffered_blocks_leave_no_held_out_pixel_inside_a_training_patch(tmp_path):
    coords, classes = labelled_pixels(synthetic_labels())
    split = block_split(coords, classes, block_size=8, train=0.5, val=0.2, seed=1, scenes=["s"])
    radius = 4  # 9 × 9 patches

    def inside_training_patch(subset):
        return sum(np.abs(split.train[:, 1:] - pixel[1:]).max(axis=1).min() <= radius for pixel in subset)

    assert inside_training_patch(split.test) > 0  # touching blocks: the leak the buffer removes
    buffered, removed = split.buffered(radius)
    assert removed["test"] == inside_training_patch(split.test) and removed["val"] == inside_training_patch(split.val)
    split = buffered
    assert inside_training_patch(split.test) == 0 and inside_training_patch(split.val) == 0 and len(split.test) > 0
    assert PixelSplit.load(split.save(tmp_path / "split.json"), ["s"]).buffer == radius


def test_split_round_trip_and_subsample(tmp_path):
    coords, classes = labelled_pixels(synthetic_labels())
    split = stratified_split(coords, classes, train=0.3, val=0.1, seed=4, scenes=["a.tif"])
    loaded = PixelSplit.load(split.save(tmp_path / "split.json"), ["a.tif"])
    for name in ("train", "val", "test"):
        np.testing.assert_array_equal(loaded.subset(name), split.subset(name))
    with pytest.raises(InputError, match="made for scenes"):
        PixelSplit.load(tmp_path / "split.json", ["b.tif"])
    small = subsample_per_class(split.train, classes[np.searchsorted(as_index(coords), as_index(split.train))], 3, seed=0)
    assert len(small) <= 3 * len(np.unique(classes))


def as_index(coords):
    return coords[:, 1] * 1000 + coords[:, 2]


def test_patches_are_centred_with_reflect_padding():
    scene = make_synthetic_scene(**SYNTHETIC).scene
    padded = padded_cube(scene, 5)
    patches = all_pixel_patches(padded, torch.tensor([0, 20]), torch.tensor([0, 39]), 5)
    assert patches.shape == (2, 13, 5, 5)
    np.testing.assert_array_equal(patches[0, :, 2, 2].numpy(), scene.cube[0, 0])
    np.testing.assert_array_equal(patches[1, :, 2, 2].numpy(), scene.cube[20, 39])
    np.testing.assert_array_equal(patches[0, :, 0, 2].numpy(), scene.cube[2, 0])  # mirrored, edge not repeated


def test_data_module_normalises_with_training_pixels_only_and_never_centres_unlabelled():
    data = PixelClassificationData(synthetic=SYNTHETIC, train=0.1, val=0.05, patch_size=7)
    train = data.split.train
    spectra = np.stack([data.scenes[0].cube[r, c] for _, r, c in train])
    np.testing.assert_allclose(data.preprocessing.mean, spectra.mean(0), rtol=1e-5)
    assert not np.allclose(data.preprocessing.mean, data.scenes[0].cube.reshape(-1, 13).mean(0), rtol=1e-3)
    assert data.info["preprocessing"] == data.preprocessing.to_dict() and data.info["class_ids"] == data.class_ids
    item = data.dataset("train")[0]
    _, r, c = train[0]
    np.testing.assert_array_equal(item["image"][:, 3, 3].numpy(), data.scenes[0].cube[r, c])
    assert all(data.scenes[0].labels[r, c] > 0 for _, r, c in data.split.test)


@pytest.mark.parametrize("patch_size, message", [(8, "must be odd"), (41, "larger than scene")])
def test_bad_patch_size(patch_size, message):
    with pytest.raises(InputError, match=message):
        PixelClassificationData(synthetic=SYNTHETIC, patch_size=patch_size)


def test_enmap_tile_lists_give_specdeepmap_split(real_file):
    folder = real_file("enmap_potsdam_specdeepmap")
    data = PixelClassificationData(
        tile_lists={s: str(folder / f"{n}_files.csv") for s, n in (("train", "train"), ("val", "validation"), ("test", "test"))},
        split="scenes",
    )
    assert data.num_bands == 224 and data.class_ids == [1, 2, 3, 4, 5, 6]
    # Summary_train_val.csv: train 3806, validation 1206, test 660 labelled pixels.
    assert (len(data.split.train), len(data.split.val), len(data.split.test)) == (3806, 1206, 660)
    test_tiles = {data.scenes[s].path for s in data.split.test[:, 0]}
    assert all("160_96" in p or "96_32" in p for p in test_tiles)


def test_block_split_data_buffers_by_the_patch_radius_by_default():
    from rsdistill.data.classification import PixelClassificationData

    options = {"synthetic": {"sensor": "sentinel2", "height": 48, "width": 48}, "split": "blocks", "block_size": 8,
               "train": 0.5, "val": 0.2, "patch_size": 7, "seed": 1}
    default = PixelClassificationData(**options)
    unbuffered = PixelClassificationData(**options, buffer=0)
    assert default.split.buffer == 3 and unbuffered.split.buffer == 0
    assert np.array_equal(default.split.train, unbuffered.split.train) and len(default.split.test) < len(unbuffered.split.test)


def test_a_class_too_rare_to_split_by_blocks_is_dropped_on_request(tmp_path):
    labels = synthetic_labels()[0].copy()
    labels[0, 0] = 9  # a class of one pixel: it lands on one side only
    coords, classes = labelled_pixels([labels])
    with pytest.raises(InputError, match=r"no pixel of classes \[9\].*set min_class_pixels"):
        for seed in range(20):  # some seed puts its block outside the training side
            block_split(coords, classes, block_size=8, train=0.5, val=0.2, seed=seed, scenes=["s"])
    split = block_split(coords, classes, block_size=8, train=0.5, val=0.2, seed=0, scenes=["s"], min_class_pixels=5)
    assert 9 in split.dropped_classes and not any((s[:, 1:] == (0, 0)).all(axis=1).any() for s in (split.train, split.val, split.test))
    assert PixelSplit.load(split.save(tmp_path / "split.json"), ["s"]).dropped_classes == split.dropped_classes


def test_spatial_folds_test_every_labelled_pixel_once_with_a_buffer():
    """Spatial k-fold cross-validation: each fold's test blocks are disjoint, together they hold
    every labelled pixel once; no training pixel lies within the patch radius of a held-out block;
    the folds do not change with the run seed."""
    from rsdistill.data.splits import fold_split

    rng = np.random.default_rng(0)
    shapes = [(40, 50), (30, 30)]
    maps = [rng.integers(0, 4, shape) for shape in shapes]
    coords, classes = labelled_pixels(maps)
    folds, radius, block = 5, 2, 8
    splits = [fold_split(coords, classes, block, folds, k, fold_seed=3, seed=0, scenes=["a", "b"], shapes=shapes, radius=radius)
              for k in range(folds)]
    tested = np.concatenate([s.test for s in splits])
    assert len(tested) == len(coords) and len({tuple(p) for p in tested.tolist()}) == len(coords)
    for k, split in enumerate(splits):
        assert {tuple(p) for p in split.val.tolist()} == {tuple(p) for p in splits[(k + 1) % folds].test.tolist()}
        held = np.concatenate([split.test, split.val])
        for scene in range(2):
            h = held[held[:, 0] == scene]
            region = np.zeros(shapes[scene], bool)
            for r, c in h[:, 1:]:  # the whole block of each held-out pixel
                region[r // block * block:(r // block + 1) * block, c // block * block:(c // block + 1) * block] = True
            t = split.train[split.train[:, 0] == scene]
            for r, c in t[:, 1:]:
                assert not region[max(r - radius, 0):r + radius + 1, max(c - radius, 0):c + radius + 1].any()
        assert len(split.train) > 0 and split.fold == k and split.folds == folds
    again = fold_split(coords, classes, block, folds, 1, fold_seed=3, seed=7, scenes=["a", "b"], shapes=shapes, radius=radius)
    assert np.array_equal(again.test, splits[1].test)
    with pytest.raises(InputError, match="at least 3 folds"):
        fold_split(coords, classes, block, 2, 0, 0, 0, ["a", "b"], shapes, radius)
    # without a validation fold (a fixed probe): the same test blocks, nothing held for validation,
    # training only kept away from the test blocks, so it holds more than with one
    probe = fold_split(coords, classes, block, folds, 1, fold_seed=3, seed=0, scenes=["a", "b"], shapes=shapes, radius=radius, validation=False)
    assert np.array_equal(probe.test, splits[1].test) and len(probe.val) == 0 and len(probe.train) > len(splits[1].train)
    train = {tuple(p) for p in probe.train.tolist()}
    for scene, r, c in probe.test.tolist():  # no training pixel within the radius of a test pixel
        assert not any((scene, r + dr, c + dc) in train for dr in range(-radius, radius + 1) for dc in range(-radius, radius + 1))
    assert len(fold_split(coords, classes, block, 2, 0, 0, 0, ["a", "b"], shapes, radius, validation=False).test) > 0


def test_a_class_too_rare_for_every_fold_is_dropped_from_all_of_them_and_the_folds_stay():
    from rsdistill.data.splits import fold_split

    rng = np.random.default_rng(1)
    shape = (48, 48)
    labels = rng.integers(1, 4, shape)
    labels[:3, :3] = 9  # 9 pixels of class 9, all in one block: some fold's training side never sees it
    coords, classes = labelled_pixels([labels])
    split = lambda k, least=0: fold_split(coords, classes, 8, 4, k, 0, 0, ["a"], [shape], 2, least)  # noqa: E731
    with pytest.raises(InputError, match=r"no pixel of classes \[9\].*min_class_pixels"):
        [split(k) for k in range(4)]
    kept = [split(k, least=10) for k in range(4)]
    rare = {tuple(p) for p in coords[classes == 9].tolist()}
    for k, fold in enumerate(kept):
        assert fold.dropped_classes == [9]
        assert not rare & {tuple(p) for p in np.concatenate([fold.train, fold.val, fold.test]).tolist()}
    tested = {tuple(p) for f in kept for p in f.test.tolist()}
    assert tested == {tuple(p) for p in coords.tolist()} - rare  # every other labelled pixel still tested once
    for k in range(4):  # the blocks are dealt as without min_class_pixels: the other classes' folds are unchanged
        try:
            plain = split(k)
        except InputError:
            continue
        assert {tuple(p) for p in plain.test.tolist()} - rare == {tuple(p) for p in kept[k].test.tolist()}
