"""Does the exported model compute what the PyTorch one does, on real inputs?

Inputs are the validation set of the recipe the model was trained with (the run folder's
``config.yaml``, or another recipe): raw patches of a pixel classifier, tiles of a segmenter or an
encoder (the data modules' normalised tiles mapped back to raw values). Reported: max |Δ| of the
outputs, argmax agreement (classifiers, segmenters), cosine similarity (encoders), and the task
metric of both — OA over the labelled pixels, or mIoU (torchmetrics) — on the same inputs.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torchmetrics.classification import MulticlassAccuracy, MulticlassJaccardIndex

from rsdistill.deploy.onnx_export import Deployable
from rsdistill.deploy.runtime import OnnxModel
from rsdistill.errors import InputError
from rsdistill.preprocessing import Preprocessing


def recipe_datamodule(path):
    """The data module of a recipe file (``data: {class_path, init_args}``), built without its model or trainer."""
    import lightning as L
    from jsonargparse import ArgumentParser

    from rsdistill.recipes import load_recipe

    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such recipe (give --data RECIPE.yaml: the recipe the model was trained with)")
    data = load_recipe(path).get("data")
    if not isinstance(data, dict) or "class_path" not in data:
        raise InputError(f"{path}: the recipe has no data section with a class_path")
    parser = ArgumentParser(exit_on_error=False)
    parser.add_subclass_arguments(L.LightningDataModule, "data")
    return parser.instantiate_classes(parser.parse_object({"data": data})).data


def validation_batches(model: Deployable, datamodule, samples: int, subset: str = "val") -> list[tuple[np.ndarray, np.ndarray | None]]:
    """Up to ``samples`` inputs of the ``subset`` (val: the validation set, or the test set when the
    data has none; test; train: training inputs, for calibration) as (raw inputs (n, *input_shape),
    labels or None) batches."""
    loaders = {"train": datamodule.train_dataloader, "test": datamodule.test_dataloader,
               "val": lambda: datamodule.val_dataloader() or datamodule.test_dataloader()}
    loader = loaders[subset]()
    preprocessing = Preprocessing.from_dict(model.card["preprocessing"])
    out, taken = [], 0
    for batch in loader:
        image = batch["image"][: samples - taken]
        if model.kind != "pixel_classification":  # tiles come normalised: back to raw values
            image = preprocessing.denormalise(image)
        if tuple(image.shape[1:]) != model.input_shape:
            raise InputError(f"the recipe's validation inputs have shape {tuple(image.shape[1:])}, the model takes {model.input_shape}")
        labels = batch.get("label", batch.get("mask"))
        out.append((image.numpy().astype(np.float32), None if labels is None else labels[: len(image)].numpy()))
        taken += len(image)
        if taken >= samples:
            break
    if not out:
        raise InputError("the recipe's data has no validation or test inputs to check the export on")
    return out


def parity_report(model: Deployable, onnx_path, batches, threads: int | None = None) -> dict:
    """Outputs of PyTorch and onnxruntime on the same ``batches``, compared."""
    session = OnnxModel(onnx_path, threads)
    classes = len(model.card.get("class_ids") or model.card.get("class_names") or [])
    metric = {"pixel_classification": lambda: MulticlassAccuracy(classes, average="micro"),
              "segmentation": lambda: MulticlassJaccardIndex(classes, average="macro", ignore_index=255)}.get(model.kind)
    scores = {"torch": metric(), "onnx": metric()} if metric and classes else None
    max_diff, max_reference, agree, total, cosine = 0.0, 0.0, 0, 0, []
    with torch.no_grad():
        for raw, labels in batches:
            reference = model.module(torch.from_numpy(raw))
            reference = (reference[0] if isinstance(reference, list) else reference).float()
            exported = torch.from_numpy(session(raw)).float()
            max_diff = max(max_diff, float((exported - reference).abs().max()))
            max_reference = max(max_reference, float(reference.abs().max()))
            if model.kind == "encoder":
                cosine.append(torch.nn.functional.cosine_similarity(exported.flatten(1), reference.flatten(1)))
                continue
            agree += int((exported.argmax(1) == reference.argmax(1)).sum())
            total += reference.argmax(1).numel()
            if scores is not None and labels is not None:
                target = torch.from_numpy(labels).long()
                scores["torch"].update(reference.argmax(1), target)
                scores["onnx"].update(exported.argmax(1), target)
    report = {"onnx": str(onnx_path), "precision": session.card["precision"], "task": model.kind,
              "inputs": int(sum(len(raw) for raw, _ in batches)), "max_abs_diff": max_diff,
              "max_abs_torch": max_reference}
    if model.kind == "encoder":
        report["min_cosine"] = float(torch.cat(cosine).min())
    else:
        report["argmax_agreement"] = agree / max(total, 1)
    if scores is not None:
        name = "oa" if model.kind == "pixel_classification" else "miou"
        report["metric"] = name
        report["torch_" + name] = float(scores["torch"].compute())
        report["onnx_" + name] = float(scores["onnx"].compute())
    return report


def report_files(onnx_path) -> tuple[Path, Path]:
    """Where an export's parity check lies: ``<file>.parity.json`` (read by ``rsdistill benchmark``) and ``.md``."""
    onnx_path = Path(onnx_path)
    return onnx_path.with_suffix(".parity.json"), onnx_path.with_suffix(".parity.md")


def parity_failure(report: dict, min_agreement: float) -> str | None:
    """Why the export does not compute the model's function, or None: argmax agreement with
    PyTorch (for encoders, the lowest cosine similarity of features) below ``min_agreement``."""
    key = "min_cosine" if "min_cosine" in report else "argmax_agreement"
    if report[key] >= min_agreement:
        return None
    return f"{key} {report[key]:.3f} with PyTorch on {report['inputs']} inputs, below --min-agreement {min_agreement}"


def markdown(report: dict) -> str:
    rows = [(k, f"{v:.6g}" if isinstance(v, float) else str(v)) for k, v in report.items()]
    return "| | |\n|---|---|\n" + "\n".join(f"| {k} | {v} |" for k, v in rows) + "\n"
