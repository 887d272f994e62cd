"""A trained model -> an ONNX file usable without rsdistill.

The graph takes **raw values** of the scene's bands (the ``Preprocessing`` — scale, band alignment,
kept bands, standardisation — is part of it) and returns the task's output:

| source | input | output |
|---|---|---|
| ``PixelClassifier`` checkpoint (BLM, HybridSN CNN, encoder classifier) | (N, bands, p, p) patches | (N, K) logits |
| ``SemanticSegmenter`` checkpoint (UPerNet, U-Net, SpecDeepMap's CNN) | (N, bands, t, t) tiles | (N, K, t, t) logits |
| MAE / Mask-CDKD checkpoint, or an ``encoder.safetensors`` | (N, bands, t, t) tiles | (N, D, t/p, t/p) features |

The batch axis is dynamic; the spatial size is the training patch or tile. The model's card —
task, bands, wavelengths, preprocessing, class ids and names, input size, precision, source — is
JSON in the ONNX metadata under ``rsdistill`` (``runtime.read_card``).

Precisions (onnxruntime.quantization, onnxconverter-common): ``fp32`` (torch's exporter, dynamo);
``fp16`` (weights and activations, inputs and outputs kept float32); ``int8``: dynamic
quantisation of weights (activations quantised on the fly) for linear-heavy models (BLM, ViT), and
static QDQ quantisation with a calibration set of real inputs for convolution-heavy ones (CNNs),
chosen by which of the two holds more parameters (``int8_scheme``).
"""

from __future__ import annotations

import json
import tempfile
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from rsdistill import __version__
from rsdistill.errors import InputError
from rsdistill.files import atomic_write
from rsdistill.models.selective_scan import set_scan_backend

PRECISIONS = ("fp32", "fp16", "int8")
INT8_SCHEMES = ("auto", "dynamic", "static")
METADATA_KEY = "rsdistill"
CARD_FORMAT = "rsdistill-onnx/1"
OPSET = 18


class _SegmenterOnRaw(nn.Module):
    """A ``SemanticSegmenter`` (which takes the data's normalised tiles) on raw values."""

    def __init__(self, task):
        super().__init__()
        self.task = task

    def forward(self, raw: torch.Tensor) -> torch.Tensor:
        return self.task(self.task.preprocessing(raw))


@dataclass
class Deployable:
    """What is exported: ``module`` (raw input -> outputs), its ``kind`` (pixel_classification,
    segmentation, encoder), the input shape after the batch axis, output names and the card."""

    module: nn.Module
    kind: str
    input_shape: tuple[int, int, int]
    output_names: list[str]
    card: dict = field(default_factory=dict)


def deployable(source) -> Deployable:
    """The model in ``source`` — a task checkpoint or encoder .safetensors path, or a loaded task —
    ready for export."""
    from rsdistill.models.registry import load_encoder
    from rsdistill.tasks.loading import load_task

    if isinstance(source, (str, Path)) and Path(source).suffix == ".safetensors":
        encoder = load_encoder(source).eval()
        tile = getattr(encoder.encoder, "config", {}).get("img_size", 224)
        return _encoder_deployable(encoder, tile, {"source": str(source), "encoder_card": encoder.card.get("recipe")})
    task = load_task(source) if isinstance(source, (str, Path)) else source.eval()
    base = {"source": str(source) if isinstance(source, (str, Path)) else type(task).__name__, "recipe": task.recipe}
    return DEPLOYABLES[task.kind](task, base)


def _pixel_classifier(task, base: dict) -> Deployable:
    p, bands = task.data_info.patch_size, task.preprocessing.bands
    card = {**base, "class_ids": list(task.class_ids)}
    return Deployable(task, task.kind, (bands, p, p), ["logits"], _card(task.preprocessing, task.kind, card))


def _segmenter(task, base: dict) -> Deployable:
    t, bands = task.data_info.tile_size, task.preprocessing.bands
    card = {**base, "class_names": list(task.class_names), "ignore_index": 255}
    return Deployable(_SegmenterOnRaw(task), task.kind, (bands, t, t), ["logits"], _card(task.preprocessing, task.kind, card))


def _task_encoder(task, base: dict) -> Deployable:
    """The encoder a pretraining or distillation task leaves, with the task's preprocessing."""
    from rsdistill.models.registry import PretrainedEncoder

    encoder = task.exported_encoder()
    if encoder is None:
        raise InputError(f"{base['source']}: a {type(task).__name__} checkpoint leaves no model to export")
    return _encoder_deployable(PretrainedEncoder(encoder, task.preprocessing).eval(), getattr(task.data_info, "tile_size", 224), base)


# what each kind of task (tasks.base ``kind``) exports as: its input shape, outputs and card
DEPLOYABLES = {"pixel_classification": _pixel_classifier, "segmentation": _segmenter, "encoder": _task_encoder}


def _encoder_deployable(encoder, tile: int, card: dict) -> Deployable:
    patch = encoder.encoder.patch_size
    tile = tile - tile % patch
    return Deployable(encoder, "encoder", (encoder.preprocessing.bands, tile, tile), ["features"],
                      _card(encoder.preprocessing, "encoder", {**card, "patch_size": patch}))


def _card(preprocessing, kind: str, extra: dict) -> dict:
    return {"format": CARD_FORMAT, "task": kind, "input": "raw values of the scene's bands (normalisation is in the graph)",
            "bands": preprocessing.bands, "wavelengths": list(preprocessing.wavelengths) if preprocessing.wavelengths else None,
            "sensor": preprocessing.sensor, "preprocessing": preprocessing.to_dict(), "rsdistill": __version__,
            **{k: v for k, v in extra.items() if v is not None}}


def int8_scheme(module: nn.Module) -> str:
    """``static`` (QDQ, calibrated) when convolutions hold more parameters than linear layers, else
    ``dynamic``: ORT's dynamic quantisation pays off on MatMul/Gemm, static QDQ on Conv."""
    conv = sum(p.numel() for m in module.modules() if isinstance(m, nn.modules.conv._ConvNd) for p in m.parameters(recurse=False))
    linear = sum(p.numel() for m in module.modules() if isinstance(m, nn.Linear) for p in m.parameters(recurse=False))
    return "static" if conv > linear else "dynamic"


def export_fp32(model: Deployable, path) -> Path:
    """torch's ONNX exporter (``dynamo=True``, opset 18), batch axis dynamic; a BLM's selective scan
    is exported as its PyTorch loop (``selective_scan.scan_torch``)."""
    module = model.module.eval()
    set_scan_backend(module, "torch")
    example = torch.randn(2, *model.input_shape)
    batch = torch.export.Dim("batch", min=1)
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            program = torch.onnx.export(module, (example,), None, input_names=["input"], output_names=model.output_names,
                                        dynamic_shapes=({0: batch},), dynamo=True, opset_version=OPSET, verbose=False)
        atomic_write(path, lambda tmp: program.save(tmp))
    finally:
        set_scan_backend(module, "auto")
    return Path(path)


def float_kept_nodes(path: Path) -> list[str]:
    """The nodes of the ONNX model at ``path`` that int8 quantisation leaves in float32: the first
    and the last layer, as is usual in int8 inference (Jacob et al., CVPR 2018, sec. 3).

    - The nodes that read the input see raw values: where a model's preprocessing is folded into
      its first linear layer (``Preprocessing.fold``), that layer takes e.g. reflectance × 10⁴ and
      its folded bias cancels terms as large, so one int8 scale over the raw range would erase the
      band-to-band differences the model classifies on; elsewhere these are the standardisation's
      element-wise nodes.
    - The layer that writes the logits: a dynamically quantised activation has one scale per
      tensor, and a classifier head's input (a layer norm's output) has outlier channels, so its
      int8 product moved the logits by up to 0.5. onnxruntime's dynamic quantiser first splits a
      ``Gemm`` into ``<name>_MatMul`` + ``<name>_Add`` and matches the exclusions on those names,
      so both names are listed.
    (fp16 keeps the argmax here: 100 % on the EnMAP test pixels, docs/results-deployment.md.)"""
    import onnx

    graph = onnx.load(path).graph
    inputs = {tensor.name for tensor in graph.input}
    first = [node.name for node in graph.node if inputs & set(node.input)]
    producer = {output: node for node in graph.node for output in node.output}
    last = []
    for tensor in graph.output:  # back through shape and bias nodes to the layer with weights
        node = producer.get(tensor.name)
        while node is not None and node.op_type not in ("MatMul", "Gemm", "Conv"):
            node = next((producer[name] for name in node.input if name in producer), None)
        if node is not None:
            last += [node.name, f"{node.name}_MatMul"] if node.op_type == "Gemm" else [node.name]
    return first + last


class _Calibration:
    """onnxruntime's ``CalibrationDataReader`` protocol over batches of raw inputs."""

    def __init__(self, batches: list[np.ndarray]):
        self.batches = iter(batches)

    def get_next(self):
        batch = next(self.batches, None)
        return None if batch is None else {"input": batch.astype(np.float32)}


def export_onnx(model: Deployable, path, precision: str = "fp32", calibration: list[np.ndarray] | None = None,
                scheme: str = "auto") -> Path:
    """Write ``model`` to ``path`` at ``precision`` with its card in the metadata. ``calibration``:
    batches of raw inputs (N, *input_shape) for static int8 quantisation; ``scheme``: the int8
    scheme, ``auto`` = ``int8_scheme``."""
    from onnxruntime.quantization import QuantFormat, QuantType, quant_pre_process, quantize_dynamic, quantize_static

    if precision not in PRECISIONS:
        raise InputError(f"unknown precision {precision!r}; choose one of {', '.join(PRECISIONS)}")
    if scheme not in INT8_SCHEMES:
        raise InputError(f"unknown int8 scheme {scheme!r}; choose one of {', '.join(INT8_SCHEMES)}")
    if precision == "int8" and scheme == "auto":
        scheme = int8_scheme(model.module)
    scheme = scheme if precision == "int8" else None
    if scheme == "static" and not calibration:
        raise InputError(f"{path}: static int8 quantisation of a convolutional model needs calibration inputs (--calibration N > 0 real inputs)")
    with tempfile.TemporaryDirectory() as folder:
        fp32 = export_fp32(model, Path(folder) / "fp32.onnx")
        converted = Path(folder) / "converted.onnx"
        if precision == "fp16":
            import onnx
            from onnxconverter_common import float16

            # ConstantOfShape (the scan's zero state) stays float32: converted, its value attribute
            # and output type disagree and onnxruntime refuses the model
            blocked = [*float16.DEFAULT_OP_BLOCK_LIST, "ConstantOfShape"]
            onnx.save(float16.convert_float_to_float16(onnx.load(fp32), keep_io_types=True, op_block_list=blocked), converted)
        elif scheme is not None:  # shape inference and graph folding first, as onnxruntime advises
            prepared = Path(folder) / "prepared.onnx"
            quant_pre_process(str(fp32), str(prepared))
        if scheme == "dynamic":
            quantize_dynamic(prepared, converted, weight_type=QuantType.QInt8, nodes_to_exclude=float_kept_nodes(prepared))
        elif scheme == "static":
            quantize_static(prepared, converted, _Calibration(calibration), quant_format=QuantFormat.QDQ, per_channel=True,
                            activation_type=QuantType.QInt8, weight_type=QuantType.QInt8,
                            nodes_to_exclude=float_kept_nodes(prepared))
        elif precision == "fp32":
            converted = fp32
        card = {**model.card, "precision": precision, **({"int8_scheme": scheme} if scheme else {}),
                "input_shape": ["batch", *model.input_shape]}
        return _write_with_card(converted, path, card)


def _write_with_card(source: Path, path, card: dict) -> Path:
    import onnx

    proto = onnx.load(source)
    del proto.metadata_props[:]
    entry = proto.metadata_props.add()
    entry.key, entry.value = METADATA_KEY, json.dumps(card)
    proto.producer_name, proto.producer_version = "rsdistill", __version__
    return atomic_write(path, lambda tmp: onnx.save(proto, tmp))
