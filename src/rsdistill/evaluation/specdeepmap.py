"""A SpecDeepMap (EnMAP-Box) checkpoint scored on rsdistill's terms: the peer on the EnMAP Potsdam tiles.

``load_specdeepmap`` reads a SpecDeepMap ``JustoUNetSimple`` Lightning checkpoint without running
its pickle (``state_dicts.read_pickle_inertly``) into ``SpecDeepMapCNN``. ``score_specdeepmap``
runs it on (image, mask) pairs (e.g. a tile list's) exactly as SpecDeepMap's trainer validates: raw values (the
checkpoint's ``preprocess`` and ``scaler`` must be None), batches of its ``batch_size`` in list
order, the last partial batch dropped for its per-batch IoU (``metrics.specdeepmap_batch_iou``),
and reports that beside rsdistill's mIoU, OA and mF1 over all labelled pixels
(``tasks.segmentation.segmentation_metrics``), so its ``val_iou`` can be checked and compared.
"""

from __future__ import annotations

import numpy as np
import rasterio
import torch

from rsdistill.errors import InputError
from rsdistill.io.masks import IGNORE_INDEX
from rsdistill.metrics import specdeepmap_batch_iou
from rsdistill.models.segmentation_cnn import SpecDeepMapCNN
from rsdistill.models.state_dicts import check_keys, read_pickle_inertly


def load_specdeepmap(path) -> tuple[SpecDeepMapCNN, dict]:
    """The network (eval mode) and hyper-parameters of a SpecDeepMap ``JustoUNetSimple`` checkpoint."""
    checkpoint = read_pickle_inertly(path)
    hparams = checkpoint.get("hyper_parameters", {}) if isinstance(checkpoint, dict) else {}
    if hparams.get("architecture") != "JustoUNetSimple":
        raise InputError(f"{path}: expected a SpecDeepMap JustoUNetSimple checkpoint, got architecture {hparams.get('architecture')!r}")
    state = {k.removeprefix("model."): v for k, v in checkpoint["state_dict"].items()}
    model = SpecDeepMapCNN(hparams["in_channels"], hparams["classes"])
    check_keys(path, state, model.state_dict())
    model.load_state_dict(state)
    return model.eval(), hparams


def score_specdeepmap(path, pairs: list[tuple]) -> dict:
    """SpecDeepMap's IoU and rsdistill's mIoU/OA/mF1 of a checkpoint on (image, mask) pairs, in order."""
    from rsdistill.tasks.segmentation import segmentation_metrics

    model, hparams = load_specdeepmap(path)
    if hparams.get("preprocess") is not None or hparams.get("scaler") is not None:
        raise InputError(f"{path}: the checkpoint scales or normalises its inputs; only raw-input checkpoints are supported")
    mapping = hparams["forward_mapping"]
    images, labels = [], []
    for image, mask in pairs:
        with rasterio.open(image) as source:
            images.append(source.read().astype(np.float32))
        with rasterio.open(mask) as source:
            raw = source.read(1)
        labels.append(np.vectorize(lambda v: mapping.get(int(v), 0))(raw).astype(np.int64))
    images, labels = torch.from_numpy(np.stack(images)), torch.from_numpy(np.stack(labels))
    with torch.no_grad():
        logits = torch.cat([model(chunk) for chunk in images.split(hparams["batch_size"])])
    predictions = logits.argmax(1)
    size = hparams["batch_size"]
    batch_ious = [specdeepmap_batch_iou(predictions[i:i + size], labels[i:i + size], hparams["classes"])
                  for i in range(0, len(labels) - size + 1, size)]
    # rsdistill's scores: classes 0..K-1, the arg-max over the real classes (its models have no
    # background output); SpecDeepMap's IoU above keeps its own arg-max, background included
    metrics = segmentation_metrics(hparams["classes"] - 1)
    metrics.update(logits[:, 1:].argmax(1), torch.where(labels == 0, IGNORE_INDEX, labels - 1))
    values = metrics.compute()
    return {"specdeepmap_iou": float(torch.stack(batch_ious).mean()) if batch_ious else float("nan"),
            **{k: float(values[k]) for k in ("miou", "oa", "mf1")}, "tiles": len(pairs),
            "background_predicted": int(((predictions == 0) & (labels > 0)).sum())}
