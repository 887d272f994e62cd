"""The networks a recipe names (``rsdistill.registry.Registry`` tables), and encoders on disk and in memory.

- ``ENCODERS``, ``PIXEL_CLASSIFIERS`` and ``SEGMENTATION_NETS``: architecture name -> the class
  (imported on first use) that a card's ``architecture`` record, a ``PixelClassifier``'s ``arch``
  or a ``SemanticSegmenter``'s ``arch`` chooses. A new network is one line here.
- ``build_encoder(architecture)`` makes an encoder from the ``architecture`` record of a card
  (``{"name": "vit" | "sam" | "sam_mmoa" | "galileo" | "galileo_mmoa", ...constructor arguments}``);
  every encoder carries that record as ``config`` (``*_mmoa``: Mask-CDKD's teacher, a SAM or Galileo
  encoder with its adapters).
- ``save_encoder`` writes safetensors weights + a JSON card (architecture, preprocessing, recipe,
  metrics, scenes), both atomically.
- ``load_encoder(path or name)`` dispatches on the format: an rsdistill card next to the weights,
  a Galileo checkpoint folder (``models.galileo_checkpoints``), a SAM checkpoint
  (``models.sam_checkpoints``), or a Prithvi-EO-1.0 or MAE/timm checkpoint in its official layout
  (``models.vit_checkpoints``); a name of the pretrained-weights table (``models.pretrained``,
  e.g. ``galileo-nano``) is looked up where weights are kept and checked against its sha256. It
  returns a ``PretrainedEncoder``: the encoder with its ``Preprocessing``, which takes raw scene
  values and returns features.
- Every encoder has ``forward_features(x, layers) -> [(N, D, h, w)]``, ``bands``, ``patch_size``,
  ``embed_dim`` and ``depth``; the roles (probe, UPerNet, pixel classifier, HyperKD teacher) use
  only these. An encoder whose input comes in band groups (Galileo) also has ``for_channels``:
  fed from a sensor that lacks some of its channels, it masks the groups they belong to.

Pickled checkpoints are never unpickled beyond plain tensors (``models.state_dicts``).
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import save_file
from torch import nn

from rsdistill.errors import InputError
from rsdistill.files import atomic_write, write_json
from rsdistill.models.state_dicts import load_strict, read_state_dict
from rsdistill.preprocessing import Preprocessing
from rsdistill.registry import Registry
from rsdistill.spectral.sensors import get_sensor

CARD_SUFFIX = ".json"
CARD_FORMAT = "rsdistill-encoder/2"
ENCODERS = Registry("encoder architecture", {
    "vit": "rsdistill.models.vit:ViTEncoder",
    "sam": "rsdistill.models.sam:SAMImageEncoder",
    "sam_mmoa": "rsdistill.models.mmoa:sam_mmoa",  # Mask-CDKD's teacher: SAM with its adapters
    "galileo": "rsdistill.models.galileo:GalileoEncoder",
    "galileo_mmoa": "rsdistill.models.mmoa:galileo_mmoa",  # Mask-CDKD's teacher on Galileo
})
# (N, B, p, p) patches -> (N, K) logits; built as (bands, classes, **the task's options they take)
PIXEL_CLASSIFIERS = Registry("pixel classifier architecture", {
    "blm": "rsdistill.models.blm:BLMClassifier",
    "hybrid_cnn": "rsdistill.models.hybrid_cnn:HybridCNN",
    "spectral_mlp": "rsdistill.models.spectral:SpectralMLP",  # the centre pixel's spectrum only
    "spectral_cnn1d": "rsdistill.models.spectral:SpectralCNN1d",
})
# (N, C, H, W) -> (N, K, H, W) logits, trained end to end; built as (channels, classes, **cnn options)
SEGMENTATION_NETS = Registry("segmentation architecture", {
    "specdeepmap_cnn": "rsdistill.models.segmentation_cnn:SpecDeepMapCNN",
    "unet": "rsdistill.models.segmentation_cnn:UNet",
})
ALIGNMENTS = ("mean", "srf", "nearest")


def build_encoder(architecture: dict) -> nn.Module:
    """An encoder (random weights) from a card's ``architecture`` record."""
    options = dict(architecture)
    return ENCODERS.build(options.pop("name", "vit"), **options)


class PretrainedEncoder(nn.Module):
    """An encoder and the preprocessing it was trained with: raw values in, features out.

    ``encoder`` takes (N, C, H, W) model inputs; ``preprocessing`` maps (N, bands, H, W) raw values
    to them. ``card`` holds the rest of what is known (recipe, metrics, scenes, load report).
    """

    def __init__(self, encoder: nn.Module, preprocessing: Preprocessing, card: dict | None = None):
        super().__init__()
        if preprocessing.channels != encoder.bands:
            raise InputError(f"preprocessing gives {preprocessing.channels} channels but the encoder takes {encoder.bands}")
        self.encoder, self.preprocessing, self.card = encoder, preprocessing, card or {}

    @classmethod
    def from_card(cls, path, trust_pickle: bool = False) -> PretrainedEncoder:
        return load_encoder(path, trust_pickle=trust_pickle)

    def forward(self, raw: torch.Tensor, valid: torch.Tensor | None = None, layers: tuple[int, ...] | None = None) -> list[torch.Tensor]:
        """raw (N, bands, H, W) -> [(N, D, ⌈H/p⌉, ⌈W/p⌉) per layer] (default: the final output).

        Inputs whose size is not a multiple of the patch size are padded with 0 after
        normalisation (the band mean), so every pixel falls in a patch.
        """
        x = self.preprocessing(raw, valid)
        p = self.encoder.patch_size
        x = F.pad(x, (0, (-x.shape[3]) % p, 0, (-x.shape[2]) % p))
        return self.encoder.forward_features(x, layers)

    def for_sensor(self, source, align: str = "srf", scale: float = 1.0) -> PretrainedEncoder:
        """This encoder fed from another sensor's raw bands: ``source`` (a ``Sensor`` or the
        ``Preprocessing`` of a task's data) aggregated into the encoder's bands by ``align``
        (``mean``, ``srf``, ``nearest``), ``scale`` from the source's units to the encoder's. An
        encoder with band groups (Galileo) masks every group the source does not fully cover; any
        other encoder needs all of its bands covered."""
        name = self.card.get("path", "encoder")
        grouped = hasattr(self.encoder, "for_channels")
        uncovered = "zero" if grouped else "error"
        if isinstance(source, Preprocessing):
            aligned = self.preprocessing.aligned_from_preprocessing(source, align, scale, name, uncovered)
        else:
            aligned = self.preprocessing.aligned_from(source, align, scale, name, uncovered)
        absent = aligned.absent_channels  # () unless grouped: an uncovered band is an error otherwise
        report = {"alignment": align, "scale": scale, "absent_channels": list(absent)}
        encoder = self.encoder
        if grouped:
            encoder = self.encoder.for_channels([c not in absent for c in range(aligned.channels)], getattr(source, "name", "the data"))
            report["live_groups"] = list(encoder.groups)
        card = {**self.card, "input": report}
        return PretrainedEncoder(encoder, aligned, card)

    def for_scene(self, scene, align: str | None = None, scale: float = 1.0) -> PretrainedEncoder:
        """This encoder for the bands of ``scene`` (a ``Scene``): as it is when the band count
        matches, or with ``align`` (``mean``, ``srf``, ``nearest``) the scene's bands aggregated
        into the encoder's (e.g. EnMAP tiles shown to a multispectral encoder)."""
        if align is None:
            if scene.shape[2] != self.preprocessing.bands:
                raise InputError(f"{scene.path}: {scene.shape[2]} bands, but the encoder takes {self.preprocessing.bands} raw bands "
                                 f"(pass an alignment to aggregate them)")
            return self
        return self.for_sensor(scene.sensor(), align, scale)

    def scene_features(self, scene, align: str | None = None, scale: float = 1.0, layers=None) -> list[torch.Tensor]:
        """Features of a whole ``Scene``: [(D, ⌈H/p⌉, ⌈W/p⌉) per layer]."""
        model = self.for_scene(scene, align, scale)
        raw = torch.from_numpy(scene.cube.transpose(2, 0, 1).copy())[None]
        valid = torch.from_numpy(scene.valid)[None]
        with torch.no_grad():
            return [f[0] for f in model(raw, valid, layers)]


def _architecture(encoder: nn.Module) -> dict:
    return {"name": encoder.name, **encoder.config}


def save_encoder(encoder: nn.Module, path, preprocessing: Preprocessing, card: dict | None = None) -> tuple[Path, Path]:
    """Write ``path`` (.safetensors) and ``path`` with .json (the card). Returns both paths."""
    path = Path(path)
    tensors = {k: v.detach().contiguous().cpu() for k, v in encoder.state_dict().items()}
    full_card = {"format": CARD_FORMAT, "architecture": _architecture(encoder), "preprocessing": preprocessing.to_dict(), **(card or {})}
    atomic_write(path, lambda tmp: save_file(tensors, tmp))
    return path, write_json(path.with_suffix(CARD_SUFFIX), full_card)


def read_card(path) -> dict:
    """The JSON card next to ``path``, checked for the records every card has."""
    card_path = Path(path).with_suffix(CARD_SUFFIX)
    try:
        card = json.loads(card_path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise InputError(f"{card_path}: not a readable encoder card ({error})") from None
    if not isinstance(card, dict) or "architecture" not in card:
        raise InputError(f"{card_path}: an encoder card needs an 'architecture' record")
    if "preprocessing" not in card:
        card["preprocessing"] = _preprocessing_of_v1_card(card, card_path)
    return card


def _preprocessing_of_v1_card(card: dict, where) -> dict:
    """Cards of format rsdistill-encoder/1 kept normalisation, kept bands and sensor apart."""
    norm = card.get("normalisation") or {}
    bands = card["architecture"].get("bands")
    kept = card.get("kept_band_indices")
    raw_bands = (max(kept) + 1) if kept else bands
    mean, std = norm.get("mean") or [0.0] * bands, norm.get("std") or [1.0] * bands
    return Preprocessing.create(raw_bands, mean, std, kept=kept if kept and kept != list(range(raw_bands)) else None,
                                wavelengths=card.get("wavelengths"), sensor=card.get("sensor")).to_dict()


def load_encoder(path, trust_pickle: bool = False, num_heads: int | None = None, **options) -> PretrainedEncoder:
    """Any encoder rsdistill can read, with its preprocessing and card.

    ``path``: a file or folder, or a name of the pretrained-weights table (``rsdistill weights``).
    An rsdistill encoder is recognised by its JSON card next to the weights, a Galileo checkpoint
    by its folder (config.json + encoder.pt); anything else is read as a SAM checkpoint (recognised
    by its keys) or a Prithvi-EO-1.0 or MAE/timm checkpoint (``num_heads`` is not stored in those;
    default dim // 64). ``options`` are Galileo's (patch_size, month, gsd_m, normalisation).
    """
    from rsdistill.models import pretrained

    path = Path(path)
    if not path.exists() and str(path).lower() in pretrained.WEIGHTS:
        named = pretrained.entry(str(path))
        folder = pretrained.locate(named.name)
        path = folder if named.format == "galileo" else folder / named.main
    galileo = path.is_dir() or path.name == "encoder.pt"  # an official Galileo checkpoint folder
    if options and not galileo:
        raise InputError(f"{path}: options {sorted(options)} apply to Galileo encoders only")
    if galileo:
        from rsdistill.models.galileo_checkpoints import OPTIONS, load_galileo_folder

        if set(options) - set(OPTIONS):
            raise InputError(f"{path}: unknown Galileo options {sorted(set(options) - set(OPTIONS))}; known: {', '.join(OPTIONS)}")
        encoder, card = load_galileo_folder(path if path.is_dir() else path.parent, **options)
    elif path.with_suffix(CARD_SUFFIX).is_file():
        card = read_card(path)
        encoder = build_encoder(card["architecture"])
        load_strict(path, encoder, read_state_dict(path, trust_pickle), f"a {card['architecture'].get('name', 'vit')} encoder")
    else:
        from rsdistill.models.sam_checkpoints import is_sam_state, load_sam_checkpoint
        from rsdistill.models.vit_checkpoints import load_vit_checkpoint

        state = read_state_dict(path, trust_pickle)
        if is_sam_state(state):
            encoder, card = load_sam_checkpoint(path, state)
        else:
            encoder, card = load_vit_checkpoint(path, num_heads=num_heads, trust_pickle=trust_pickle, state=state)
    card["path"] = str(path)
    preprocessing = Preprocessing.from_dict(card["preprocessing"], f"{path}: card")
    return PretrainedEncoder(encoder, preprocessing, card)


def pretrained_backbone(path, card: dict | None, options: dict | None = None, source=None) -> tuple[nn.Module, Preprocessing, dict]:
    """A pretrained encoder as a task's backbone, and the card the task keeps in its checkpoint.

    On first build the encoder is read from ``path`` (a file, folder or weights name) with
    ``options``: ``load_encoder``'s (Galileo: patch_size, month, gsd_m, normalisation) plus
    ``align`` (``mean``, ``srf``, ``nearest``) and ``scale``, which feed it from ``source`` (the
    ``Preprocessing`` of the task's data) by band alignment, and ``sensor``: the registered sensor
    of the data's bands where the data carries no wavelengths (``rgb`` for photos). Afterwards
    ``card`` (its architecture and preprocessing, saved with the task) rebuilds it, and the weights
    come with the task's checkpoint, so the file is needed no more.
    """
    if card is not None:
        return build_encoder(card["architecture"]), Preprocessing.from_dict(card["preprocessing"], "encoder_card"), card
    if path is None:
        raise InputError("a pretrained backbone needs encoder: the path of a pretrained encoder (e.g. encoder.safetensors) "
                         "or a weights name (rsdistill weights)")
    options = dict(options or {})
    align, scale, sensor = options.pop("align", None), float(options.pop("scale", 1.0)), options.pop("sensor", None)
    if align is not None and align not in ALIGNMENTS:
        raise InputError(f"encoder_options.align: one of {', '.join(ALIGNMENTS)}, got {align!r}")
    pretrained = load_encoder(path, **options)
    if align is not None:
        if sensor is not None:
            bands = source.bands if isinstance(source, Preprocessing) else None
            source = get_sensor(sensor)
            if bands is not None and bands != len(source):
                raise InputError(f"encoder_options.sensor {sensor!r} has {len(source)} bands, the data {bands}")
        if source is None:
            raise InputError(f"{path}: encoder_options.align needs the data's bands to align from")
        pretrained = pretrained.for_sensor(source, align, scale)
    card = {"architecture": _architecture(pretrained.encoder), "preprocessing": pretrained.preprocessing.to_dict(),
            **{k: pretrained.card[k] for k in ("load_report", "input", "path") if k in pretrained.card}}
    return pretrained.encoder, pretrained.preprocessing, card
