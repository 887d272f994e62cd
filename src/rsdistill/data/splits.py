"""Train/validation/test splits of labelled pixels, saved to disk so a run can be reproduced exactly.

A labelled pixel is ``(scene index, row, column)``. Three ways to split, all per class where it
matters and all seeded:

- ``stratified``: a fraction (or a count) of every class's pixels goes to training, then to
  validation, the rest to test. Pixels are disjoint, but a test pixel can still sit inside the
  *context* of a training patch: optimistic, as in most papers.
- ``blocks``: the scene is cut into square blocks and whole blocks go to one side, so training and
  test pixels are spatially apart (the honest setting for spatial models). Blocks touch, so a
  test pixel next to a training block would still sit inside a training patch; ``buffered``
  removes from validation and test every pixel within the patch radius of a training pixel.
- ``scenes``: whole scenes (tiles) go to one side, e.g. the EnMAP Potsdam train/val/test tile lists.
- ``folds``: spatial k-fold cross-validation. Blocks (of every scene) are dealt into k folds by a
  seeded permutation (``fold_seed``: the same folds for every run seed); fold ``fold`` is the test
  set, the next fold the validation set (every choice is made on it, inside the training folds),
  the rest trains. The buffer removes *training* pixels within the patch radius of a test or
  validation block, so no held-out pixel is inside a training patch and still every labelled pixel
  is tested exactly once over the k folds.

In every case no pixel is in two sets, so no test pixel is ever the centre of a training patch;
with a buffer of the patch radius none is inside one either.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
from scipy.ndimage import binary_dilation

from rsdistill.errors import InputError
from rsdistill.files import write_json

SPLIT_METHODS = ("stratified", "blocks", "scenes", "folds")
SUBSETS = ("train", "val", "test")


@dataclass
class PixelSplit:
    """Each subset is an (N, 3) int array of (scene index, row, column)."""

    train: np.ndarray
    val: np.ndarray
    test: np.ndarray
    method: str
    seed: int
    scenes: list[str]
    buffer: int = 0
    dropped_classes: list[int] = field(default_factory=list)  # too rare on one side (``min_class_pixels``)
    fold: int | None = None  # with method "folds": this fold of ``folds``, dealt with ``fold_seed``
    folds: int | None = None
    fold_seed: int | None = None
    unlabelled: np.ndarray = field(default_factory=lambda: np.zeros((0, 3), np.int64))  # training-region pixels without labels (KD)

    def subset(self, name: str) -> np.ndarray:
        return getattr(self, name)

    def buffered(self, radius: int) -> tuple[PixelSplit, dict[str, int]]:
        """This split without the validation and test pixels within ``radius`` pixels (Chebyshev,
        same scene) of a training pixel, i.e. inside the context of a training patch of side
        2·radius + 1; and how many were removed per subset."""
        if radius <= 0:
            return self, {"val": 0, "test": 0}
        near = {}
        for scene in np.unique(self.train[:, 0]):
            pixels = self.train[self.train[:, 0] == scene]
            centres = np.zeros((pixels[:, 1].max() + radius + 1, pixels[:, 2].max() + radius + 1), dtype=bool)
            centres[pixels[:, 1], pixels[:, 2]] = True
            near[scene] = binary_dilation(centres, np.ones((2 * radius + 1,) * 2, dtype=bool))

        def outside(coords: np.ndarray) -> np.ndarray:
            keep = np.ones(len(coords), dtype=bool)
            for scene, mask in near.items():
                rows = np.flatnonzero(coords[:, 0] == scene)
                r, c = coords[rows, 1], coords[rows, 2]
                inside = (r < mask.shape[0]) & (c < mask.shape[1])
                keep[rows[inside]] = ~mask[r[inside], c[inside]]
            return coords[keep]

        val, test = outside(self.val), outside(self.test)
        removed = {"val": len(self.val) - len(val), "test": len(self.test) - len(test)}
        return replace(self, val=val, test=test, buffer=radius), removed

    def save(self, path) -> Path:
        doc = {"method": self.method, "seed": self.seed, "scenes": self.scenes, "buffer": self.buffer, "dropped_classes": self.dropped_classes,
               "fold": self.fold, "folds": self.folds, "fold_seed": self.fold_seed}
        doc.update({name: self.subset(name).tolist() for name in (*SUBSETS, "unlabelled")})
        return write_json(path, doc, indent=None)

    @classmethod
    def load(cls, path, scenes: list[str] | None = None) -> PixelSplit:
        try:
            doc = json.loads(Path(path).read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
            raise InputError(f"{path}: not a readable split file ({error})") from None
        if scenes is not None and [Path(s).name for s in doc["scenes"]] != [Path(s).name for s in scenes]:
            raise InputError(f"{path}: split was made for scenes {doc['scenes']}, not {scenes}")
        arrays = {name: np.asarray(doc.get(name, []), dtype=np.int64).reshape(-1, 3) for name in (*SUBSETS, "unlabelled")}
        return cls(**arrays, method=doc["method"], seed=doc["seed"], scenes=doc["scenes"], buffer=doc.get("buffer", 0),
                   dropped_classes=[int(c) for c in doc.get("dropped_classes", [])], fold=doc.get("fold"), folds=doc.get("folds"),
                   fold_seed=doc.get("fold_seed"))


def unlabelled_training_pixels(split: PixelSplit, valid_maps: list[np.ndarray], block_size: int, radius: int) -> np.ndarray:
    """(N, 3) pixels for distillation without labels, inside the training region only: the valid
    pixels (``valid_maps``, (H, W) bool per scene) of the training scenes (split "scenes") or of the
    training blocks (split "blocks") that are not training centres (unlabelled, or labelled but not
    drawn at the label budget: their labels are never used), none within ``radius`` px (Chebyshev)
    of a validation or test pixel, so no held-out pixel enters their patches."""
    if split.method not in ("scenes", "blocks", "folds"):
        raise InputError(f"KD on unlabelled pixels needs a spatial split (scenes or blocks), not {split.method!r}: "
                         "with a stratified split every unlabelled pixel lies among the test pixels")
    found = []
    for scene, valid in enumerate(valid_maps):
        train = split.train[split.train[:, 0] == scene]
        if not len(train):
            continue
        free = valid.copy()
        free[train[:, 1], train[:, 2]] = False
        region = np.ones_like(free)
        if split.method in ("blocks", "folds"):
            blocks = np.zeros((-(-free.shape[0] // block_size), -(-free.shape[1] // block_size)), bool)
            blocks[train[:, 1] // block_size, train[:, 2] // block_size] = True
            region = np.repeat(np.repeat(blocks, block_size, 0), block_size, 1)[:free.shape[0], :free.shape[1]]
        held = np.zeros_like(free)
        for subset in (split.val, split.test):
            pixels = subset[subset[:, 0] == scene]
            held[pixels[:, 1], pixels[:, 2]] = True
        near = binary_dilation(held, np.ones((2 * radius + 1,) * 2, bool)) if radius and held.any() else held
        rows, cols = np.nonzero(free & region & ~near)
        found.append(np.stack([np.full_like(rows, scene), rows, cols], axis=1))
    return np.concatenate(found).astype(np.int64) if found else np.zeros((0, 3), np.int64)


def labelled_pixels(label_maps: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """All labelled pixels: (N, 3) (scene, row, col) and (N,) class ids (never 0)."""
    coords, classes = [], []
    for index, labels in enumerate(label_maps):
        rows, cols = np.nonzero(labels > 0)
        coords.append(np.stack([np.full_like(rows, index), rows, cols], axis=1))
        classes.append(labels[rows, cols])
    coords, classes = np.concatenate(coords), np.concatenate(classes)
    if coords.shape[0] == 0:
        raise InputError("the scenes have no labelled pixel (every label is 0 = unlabelled)")
    return coords, classes


def _per_class_take(classes: np.ndarray, amount: float, rng, name: str, minimum_left: int) -> np.ndarray:
    """Indices (into ``classes``) of ``amount`` (fraction < 1 or count >= 1) pixels of every class."""
    chosen = []
    for c in np.unique(classes):
        members = np.flatnonzero(classes == c)
        n = int(round(amount * members.size)) if amount < 1 else int(amount)
        n = max(n, 1)
        if members.size < n + minimum_left:
            raise InputError(
                f"class {c} has {members.size} labelled pixels; the {name} split needs {n} "
                f"and {minimum_left} more for the later subsets"
            )
        chosen.append(rng.choice(members, n, replace=False))
    return np.concatenate(chosen)


def stratified_split(coords, classes, train: float, val: float, seed: int, scenes: list[str]) -> PixelSplit:
    """``train``/``val``: per-class fraction (< 1) or count (>= 1); the rest is test."""
    rng = np.random.default_rng(seed)
    train_idx = _per_class_take(classes, train, rng, "train", minimum_left=2 if val else 1)
    rest = np.setdiff1d(np.arange(classes.size), train_idx)
    if val:
        amount = val if val >= 1 else val / (1 - train) if train < 1 else val
        val_idx = rest[_per_class_take(classes[rest], amount, rng, "validation", minimum_left=1)]
    else:
        val_idx = np.array([], dtype=int)
    test_idx = np.setdiff1d(rest, val_idx)
    return PixelSplit(coords[train_idx], coords[val_idx], coords[test_idx], "stratified", seed, scenes)


def block_split(coords, classes, block_size: int, train: float, val: float, seed: int, scenes: list[str],
                min_class_pixels: int = 0) -> PixelSplit:
    """Whole ``block_size``×``block_size`` blocks go to train/val/test with fractions of the blocks.
    A class with fewer than ``min_class_pixels`` pixels on the train or the test side is dropped
    from every subset (``dropped_classes``); otherwise every class must reach the train side."""
    if block_size < 2:
        raise InputError(f"block size must be at least 2 pixels, got {block_size}")
    block_ids = coords[:, 0] * 1_000_003 ** 2 + (coords[:, 1] // block_size) * 1_000_003 + coords[:, 2] // block_size
    blocks = np.unique(block_ids)
    if blocks.size < 3:
        raise InputError(f"{_named(scenes)}: only {blocks.size} blocks of {block_size} px hold labels; use a smaller block size")
    order = np.random.default_rng(seed).permutation(blocks)
    n_train = max(1, int(round(train * blocks.size)))
    n_val = max(1, int(round(val * blocks.size))) if val else 0
    sides = {"train": order[:n_train], "val": order[n_train:n_train + n_val], "test": order[n_train + n_val:]}
    on = {name: np.isin(block_ids, ids) for name, ids in sides.items()}
    dropped = [int(c) for c in np.unique(classes) if min((classes[on[side]] == c).sum() for side in ("train", "test")) < min_class_pixels]
    kept = ~np.isin(classes, dropped)
    parts = {name: coords[mask & kept] for name, mask in on.items()}
    _require_all_classes(classes[on["train"] & kept], classes[kept], "train", f"blocks of {block_size} px")
    return PixelSplit(parts["train"], parts["val"], parts["test"], "blocks", seed, scenes, dropped_classes=dropped)


def fold_split(coords, classes, block_size: int, folds: int, fold: int, fold_seed: int, seed: int, scenes: list[str],
               shapes: list[tuple[int, int]], radius: int, min_class_pixels: int = 0, validation: bool = True) -> PixelSplit:
    """Fold ``fold`` of a spatial ``folds``-fold cross-validation over blocks (module docstring).
    ``shapes``: (H, W) of each scene, for the held-out regions the buffer is drawn around. A class
    with fewer than ``min_class_pixels`` labelled pixels in all is dropped from every subset of
    every fold (``dropped_classes``; the blocks are dealt from every labelled pixel first, so the
    folds do not depend on it), instead of failing the fold whose training side misses it.
    ``validation=False``: no validation fold (for a fixed probe that chooses nothing); every fold
    but the test one trains."""
    if folds < (3 if validation else 2):
        raise InputError(f"spatial cross-validation needs at least {3 if validation else 2} folds "
                         f"(test, {'validation, ' if validation else ''}training), got {folds}")
    if not 0 <= fold < folds:
        raise InputError(f"fold {fold}: must lie in 0..{folds - 1}")
    if block_size < 2:
        raise InputError(f"block size must be at least 2 pixels, got {block_size}")
    block_ids = coords[:, 0] * 1_000_003 ** 2 + (coords[:, 1] // block_size) * 1_000_003 + coords[:, 2] // block_size
    blocks = np.unique(block_ids)
    if blocks.size < folds:
        raise InputError(f"{_named(scenes)}: only {blocks.size} blocks of {block_size} px hold labels, fewer than {folds} folds; "
                         "use a smaller block size")
    order = np.random.default_rng(fold_seed).permutation(blocks)
    fold_of = dict(zip(order.tolist(), (np.arange(blocks.size) % folds).tolist()))
    pixel_fold = np.array([fold_of[b] for b in block_ids.tolist()])
    held_folds = [fold, (fold + 1) % folds] if validation else [fold]
    test = pixel_fold == fold
    val = pixel_fold == held_folds[1] if validation else np.zeros_like(test)
    train = ~test & ~val
    if radius > 0:  # training pixels within the patch radius of a held-out block are dropped
        held_blocks = set(order[np.isin(np.arange(blocks.size) % folds, held_folds)].tolist())
        near = np.zeros(len(coords), bool)
        for scene, (height, width) in enumerate(shapes):
            grid = np.zeros((-(-height // block_size), -(-width // block_size)), bool)
            for block in held_blocks:
                if block // 1_000_003 ** 2 == scene:
                    grid[(block // 1_000_003) % 1_000_003, block % 1_000_003] = True
            region = np.repeat(np.repeat(grid, block_size, 0), block_size, 1)[:height, :width]
            region = binary_dilation(region, np.ones((2 * radius + 1,) * 2, bool))
            rows = coords[:, 0] == scene
            near[rows] = region[coords[rows, 1], coords[rows, 2]]
        train &= ~near
    kinds, counts = np.unique(classes, return_counts=True)
    dropped = sorted(int(c) for c, n in zip(kinds, counts) if n < min_class_pixels)
    kept = ~np.isin(classes, dropped)
    train, val, test = train & kept, val & kept, test & kept
    _require_all_classes(classes[train], classes[kept], "train", f"fold {fold} of {folds}, blocks of {block_size} px")
    return PixelSplit(coords[train], coords[val], coords[test], "folds", seed, scenes, radius, dropped_classes=dropped,
                      fold=fold, folds=folds, fold_seed=fold_seed)


def scene_split(coords, classes, assignment: dict[str, list[int]], seed: int, scenes: list[str]) -> PixelSplit:
    """Scenes listed under train/val/test go whole to that subset."""
    parts = {name: coords[np.isin(coords[:, 0], assignment.get(name, []))] for name in SUBSETS}
    if parts["train"].shape[0] == 0:
        raise InputError("the training scenes hold no labelled pixel")
    return PixelSplit(parts["train"], parts["val"], parts["test"], "scenes", seed, scenes)


def subsample_per_class(coords: np.ndarray, classes: np.ndarray, limit: int, seed: int) -> np.ndarray:
    """At most ``limit`` rows of ``coords`` per class, drawn with ``seed``."""
    rng = np.random.default_rng(seed + 7919)
    keep = [
        rng.choice(members, min(limit, members.size), replace=False)
        for members in (np.flatnonzero(classes == c) for c in np.unique(classes))
    ]
    return coords[np.sort(np.concatenate(keep))]


def _require_all_classes(train_classes, classes, subset: str, how: str) -> None:
    missing = np.setdiff1d(np.unique(classes), np.unique(train_classes))
    if missing.size:
        raise InputError(f"the {subset} side of the split ({how}) has no pixel of classes {missing.tolist()}; change the seed or block size, "
                         "or set min_class_pixels to drop classes too rare to split")


def _named(scenes: list[str]) -> str:
    """The scenes of an error message: the first, and how many more."""
    return f"{scenes[0]} and {len(scenes) - 1} more scenes" if len(scenes) > 1 else str(scenes[0])
