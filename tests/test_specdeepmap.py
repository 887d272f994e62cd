"""SpecDeepMap, the EnMAP-Box peer on the EnMAP Potsdam tiles: its checkpoint read without running
its pickle, its network ported, and its ``val_iou`` definition reproduced to the value it logged."""

import pickle

import pytest
import torch

from rsdistill.errors import InputError
from rsdistill.evaluation.specdeepmap import load_specdeepmap, score_specdeepmap
from rsdistill.io.masks import IGNORE_INDEX
from rsdistill.metrics import specdeepmap_batch_iou, specdeepmap_numbering
from rsdistill.models.state_dicts import Opaque, read_pickle_inertly

CHECKPOINT = "weights/specdeepmap_enmap/00049-val_iou_0.3325.ckpt"
# The checkpoint's own validation list, in its order (hyper_parameters["val_data"], a pandas frame of
# paths to copies of these tiles, e.g. "enmap_potsdam_tile_64_0 (7th copy).tif"): SpecDeepMap's test
# data set was the 18 tiles copied several times and split at random.
VALIDATION = ["64_0", "96_0", "192_64", "96_96", "64_0", "160_128", "128_128", "96_0", "192_128", "128_32",
              "160_160", "64_32", "96_128", "160_96", "128_96"]


def test_the_checkpoint_logged_val_iou_is_reproduced(real_file):
    checkpoint = real_file(CHECKPOINT)
    model, hparams = load_specdeepmap(checkpoint)
    assert hparams["batch_size"] == 2 and hparams["remove_background_class"] == "Yes"
    pairs = [(real_file(f"enmap_potsdam_specdeepmap/images/enmap_potsdam_tile_{t}.tif"),
              real_file(f"enmap_potsdam_specdeepmap/labels/enmap_potsdam_tile_{t}.tif")) for t in VALIDATION]
    scores = score_specdeepmap(checkpoint, pairs)
    # 7 batches of 2 (the 15th tile dropped), each a macro Jaccard over the classes it shows
    assert scores["specdeepmap_iou"] == pytest.approx(0.3325, abs=5e-5)
    # the same maps under rsdistill's whole-tile metrics (segmentation_metrics over all 15 tiles):
    # pinned as measured on 2026-12-02, so that a change in how tile maps are scored shows here
    assert scores["tiles"] == 15
    assert (scores["miou"], scores["oa"], scores["mf1"]) == pytest.approx((0.43052, 0.69692, 0.54154), abs=5e-5)


def test_the_batch_iou_is_torchmetrics_jaccard_with_background_ignored_and_absent_classes_left_out():
    masks = torch.tensor([[[0, 0, 1, IGNORE_INDEX]]])
    predictions = torch.tensor([[[0, 1, 1, 2]]])
    # SpecDeepMap numbering: labels 1 1 2 (0 dropped); class 1 IoU 1/2, class 2 IoU 1/2, class 3 predicted
    # only at the dropped pixel (not counted), classes 3.. absent: the mean of 1/2 and 1/2
    value = specdeepmap_batch_iou(specdeepmap_numbering(predictions), specdeepmap_numbering(masks), 5)
    assert float(value) == pytest.approx(0.5)


class Payload:
    def __reduce__(self):
        return (exec, ("import pathlib; pathlib.Path(__import__('os').environ['PAYLOAD_MARK']).write_text('ran')",))


def test_reading_a_pickle_inertly_never_runs_it(tmp_path, monkeypatch):
    mark = tmp_path / "mark"
    monkeypatch.setenv("PAYLOAD_MARK", str(mark))
    path = tmp_path / "evil.ckpt"
    torch.save({"state_dict": {"w": torch.ones(2)}, "hyper_parameters": {"callback": Payload(), "lr": 0.1}}, path)
    checkpoint = read_pickle_inertly(path)
    assert not mark.exists()
    assert torch.equal(checkpoint["state_dict"]["w"], torch.ones(2)) and checkpoint["hyper_parameters"]["lr"] == 0.1
    assert isinstance(checkpoint["hyper_parameters"]["callback"], Opaque)
    with pytest.raises(InputError, match="expected a SpecDeepMap JustoUNetSimple checkpoint"):
        load_specdeepmap(path)
    (tmp_path / "junk.ckpt").write_bytes(pickle.dumps([1, 2])[:5])
    with pytest.raises(InputError, match="junk.ckpt: cannot read checkpoint"):
        read_pickle_inertly(tmp_path / "junk.ckpt")
