"""Run an exported model with onnxruntime: raw values in (numpy), the task's outputs out."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from rsdistill.console import onnxruntime_severity
from rsdistill.errors import InputError
from rsdistill.io.masks import Legend


def read_card(path) -> dict:
    """The rsdistill card in an ONNX file's metadata; a file without one is an error naming it."""
    import onnx

    from rsdistill.deploy.onnx_export import CARD_FORMAT, METADATA_KEY

    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such ONNX file")
    try:
        proto = onnx.load(path, load_external_data=False)
    except Exception as error:  # onnx raises DecodeError and others for a non-ONNX file
        raise InputError(f"{path}: not an ONNX model ({type(error).__name__})") from None
    props = {p.key: p.value for p in proto.metadata_props}
    card = json.loads(props[METADATA_KEY]) if METADATA_KEY in props else {}
    if card.get("format") != CARD_FORMAT:
        raise InputError(f"{path}: an ONNX model without an rsdistill card (metadata key {METADATA_KEY!r}); export it with `rsdistill export`")
    return card


class OnnxModel:
    """An exported model in an onnxruntime session on the CPU with ``threads`` intra-op threads.

    ``spinning``: whether the worker threads busy-wait after a run (onnxruntime's default). Off: they
    kept the cores busy into whatever ran next (PyTorch right after it 1.5× slower,
    ``benchmarks/ort_spinning.py``), for no gain alone."""

    def __init__(self, path, threads: int | None = None, spinning: bool = False):
        import onnxruntime as ort

        self.path, self.card = Path(path), read_card(path)
        options = ort.SessionOptions()
        options.log_severity_level = onnxruntime_severity()
        options.add_session_config_entry("session.intra_op.allow_spinning", "1" if spinning else "0")
        if threads is not None:
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])

    @property
    def kind(self) -> str:
        """What the exported task is for (``tasks.base``: pixel_classification, segmentation, encoder)."""
        return self.card["task"]

    def map_classes(self) -> tuple[list[int], list[str], Legend]:
        """As the exported task's ``map_classes``; ONNX maps are made block by block, by pixel classifiers."""
        if self.kind != "pixel_classification":
            raise InputError(f"an exported {self.kind} model; block maps need a pixel classifier")
        legend = Legend.numbered(self.card["class_ids"])
        return list(self.card["class_ids"]), list(legend.names), legend

    @property
    def input_shape(self) -> tuple[int, ...]:
        """The input's shape after the batch axis."""
        return tuple(self.card["input_shape"][1:])

    def __call__(self, raw: np.ndarray) -> np.ndarray:
        """raw (N, *input_shape) -> the first output (logits or features)."""
        if tuple(raw.shape[1:]) != self.input_shape:
            raise InputError(f"{self.path}: expected inputs of shape (N, {', '.join(map(str, self.input_shape))}), got {tuple(raw.shape)}")
        return self.session.run(None, {"input": np.ascontiguousarray(raw, dtype=np.float32)})[0]
