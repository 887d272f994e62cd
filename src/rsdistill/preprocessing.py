"""``Preprocessing``: how raw scene values become a model's input, as one object.

Every model rsdistill trains or loads carries one, and it is saved in its card and checkpoint,
so that the same steps are applied in training, evaluation, mapping, probing, distillation and
export. The steps, in order, on a cube of ``bands`` raw bands:

1. ``scale``: a factor to the model's units (e.g. reflectance 0–1 → × 10000);
2. ``alignment``: an optional (T, bands) band-aggregation matrix (``spectral.band_alignment``),
   mapping another sensor's bands onto the T bands the model was trained on;
3. ``kept``: the indices of the bands the model takes (bad bands dropped), after alignment;
4. per-band standardisation (x − mean) / std;
5. nodata: where a validity mask is given, invalid pixels become 0 (the band mean).

Shapes: torch inputs are (N, bands, ...) with channels on axis 1; numpy cubes are (H, W, bands).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace

import numpy as np
import torch

from rsdistill.errors import InputError
from rsdistill.spectral.alignment import band_alignment
from rsdistill.spectral.sensors import Sensor, get_sensor


@dataclass(frozen=True)
class Preprocessing:
    """Raw values of ``bands`` bands -> normalised model input of ``channels`` channels.

    mean, std: per model-input channel. wavelengths: of the model-input channels (nm), or None.
    sensor: registered sensor of the model-input channels, if any. kept: indices (after
    alignment) of the channels the model takes; None = all.
    """

    bands: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    kept: tuple[int, ...] | None = None
    alignment: tuple[tuple[float, ...], ...] | None = None
    scale: float = 1.0
    wavelengths: tuple[float, ...] | None = None
    sensor: str | None = None

    def __post_init__(self):
        aligned = len(self.alignment) if self.alignment is not None else self.bands
        if self.alignment is not None and any(len(row) != self.bands for row in self.alignment):
            raise InputError(f"preprocessing: the alignment matrix must have {self.bands} columns (one per raw band)")
        channels = len(self.kept) if self.kept is not None else aligned
        if self.kept is not None and (min(self.kept, default=0) < 0 or max(self.kept, default=0) >= aligned):
            raise InputError(f"preprocessing: kept band indices must lie in 0..{aligned - 1}")
        if len(self.mean) != channels or len(self.std) != channels:
            raise InputError(f"preprocessing: mean and std need {channels} values (one per model input), got {len(self.mean)} and {len(self.std)}")
        if self.wavelengths is not None and len(self.wavelengths) != channels:
            raise InputError(f"preprocessing: {len(self.wavelengths)} wavelengths for {channels} model inputs")

    @property
    def channels(self) -> int:
        """Number of model-input channels."""
        return len(self.mean)

    @classmethod
    def identity(cls, bands: int) -> Preprocessing:
        return cls(bands, (0.0,) * bands, (1.0,) * bands)

    @classmethod
    def create(cls, bands: int, mean, std, kept=None, alignment=None, scale: float = 1.0, wavelengths=None, sensor=None) -> Preprocessing:
        """From lists or arrays; a zero std becomes 1 (a constant band stays 0 after standardising)."""
        std = np.asarray(std, np.float64)
        tup = lambda v: None if v is None else tuple(float(x) for x in np.asarray(v).ravel())  # noqa: E731
        return cls(
            int(bands), tup(mean), tup(np.where(std > 0, std, 1.0)),
            None if kept is None else tuple(int(i) for i in np.asarray(kept).ravel()),
            None if alignment is None else tuple(tup(row) for row in np.asarray(alignment)),
            float(scale), tup(wavelengths), sensor,
        )

    # -- serialisation (cards, checkpoints: plain containers only) --------------------------------
    def to_dict(self) -> dict:
        doc = asdict(self)
        return {k: list(map(list, v)) if k == "alignment" and v is not None else (list(v) if isinstance(v, tuple) else v) for k, v in doc.items()}

    @classmethod
    def from_dict(cls, doc: dict, where: str = "preprocessing") -> Preprocessing:
        known = set(cls.__dataclass_fields__)
        if not isinstance(doc, dict) or not {"bands", "mean", "std"} <= set(doc) or set(doc) - known:
            optional = ", ".join(sorted(known - {"bands", "mean", "std"}))
            raise InputError(f"{where}: expected a preprocessing record with bands, mean, std (and optionally {optional})")
        return cls.create(**doc)

    # -- the steps -------------------------------------------------------------------------------
    def _tensors(self, like: torch.Tensor) -> dict[str, torch.Tensor]:
        """The parameters as tensors of ``like``'s dtype and device (made once per dtype/device; not
        kept while tracing, where ``like`` is a fake tensor: an export must not leave fakes behind)."""
        cache = self.__dict__.setdefault("_cache", {}) if type(like) in (torch.Tensor, torch.nn.Parameter) else {}
        key = (like.dtype, like.device)
        if key not in cache:
            as_t = lambda v: torch.as_tensor(v, dtype=like.dtype, device=like.device)  # noqa: E731
            out = {"mean": as_t(self.mean), "std": as_t(self.std)}
            if self.alignment is not None:
                out["alignment"] = as_t(self.alignment)
            if self.kept is not None:
                out["kept"] = torch.as_tensor(self.kept, dtype=torch.long, device=like.device)
            cache[key] = out
        return cache[key]

    def _check(self, raw: torch.Tensor) -> None:
        if raw.shape[1] != self.bands:
            raise InputError(f"the model takes {self.bands} raw bands, the input has {raw.shape[1]}")

    def __call__(self, raw: torch.Tensor, valid: torch.Tensor | None = None, alignment: torch.Tensor | None = None) -> torch.Tensor:
        """raw (N, bands, ...) -> (N, channels, ...) normalised; ``valid`` (N, ...) zeroes invalid
        pixels; ``alignment`` (T, bands): a trained matrix used in place of the stored one."""
        self._check(raw)
        t = self._tensors(raw)
        x = raw * self.scale if self.scale != 1.0 else raw
        alignment = t.get("alignment") if alignment is None else alignment
        if alignment is not None:
            x = torch.einsum("ts,ns...->nt...", alignment, x)
        if "kept" in t:
            x = x.index_select(1, t["kept"])
        x = self.standardise(x)
        return x if valid is None else torch.where(valid[:, None], x, torch.zeros((), dtype=x.dtype, device=x.device))

    def fold(self, weight: torch.Tensor, bias: torch.Tensor, raw: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """A linear layer on the model input, ``weight`` (out, channels) and ``bias`` (out,), as one
        linear layer on the raw bands (steps 1-4 folded in): (out, bands) and (out,), so that a model
        whose first layer is linear in the spectrum reads its raw input once instead of a
        standardised copy. W·((s·K·A·x − μ) / σ) + b = ((W / σ)·K·A·s)·x + (b − (W / σ)·μ), with K the
        kept-band selection and A the alignment. No validity mask: ``raw`` (N, bands, ...), the input
        it will be applied to (its band count is checked), has no invalid pixels."""
        self._check(raw)
        t = self._tensors(weight)
        weight = weight / t["std"]
        bias = bias - weight @ t["mean"]
        if "kept" in t:  # columns of the dropped bands are 0
            aligned = len(self.alignment) if self.alignment is not None else self.bands
            weight = weight.new_zeros(weight.shape[0], aligned).index_copy(1, t["kept"], weight)
        if "alignment" in t:
            weight = weight @ t["alignment"]
        return weight * self.scale, bias

    def standardise(self, x: torch.Tensor, channel_axis: int = 1) -> torch.Tensor:
        """Values in the model's units -> model input ((x − mean) / std only), channels on ``channel_axis``."""
        t = self._tensors(x)
        shape = [1] * x.ndim
        shape[channel_axis] = -1
        return (x - t["mean"].view(shape)) / t["std"].view(shape)

    def denormalise(self, x: torch.Tensor, channel_axis: int = 1) -> torch.Tensor:
        """Model-input values back to the model's units (before standardising); channels on
        ``channel_axis`` ((N, channels, ...) by default, -1 for spectra (..., channels))."""
        t = self._tensors(x)
        shape = [1] * x.ndim
        shape[channel_axis] = -1
        return x * t["std"].view(shape) + t["mean"].view(shape)

    def cube(self, cube: np.ndarray, valid: np.ndarray | None = None) -> np.ndarray:
        """A scene cube (H, W, bands) -> (channels, H, W) float32 model input."""
        tensor = torch.from_numpy(np.ascontiguousarray(cube.transpose(2, 0, 1)[None], dtype=np.float32))
        mask = None if valid is None else torch.from_numpy(np.asarray(valid, bool))[None]
        return self(tensor, mask)[0].numpy()

    # -- adapting to other inputs ----------------------------------------------------------------
    def input_sensor(self, name: str = "model") -> Sensor:
        """The model-input channels as a ``Sensor`` (for aligning other data to them)."""
        if self.sensor is not None and self.alignment is None:
            sensor = get_sensor(self.sensor)
            return sensor if self.kept is None else Sensor(sensor.name, tuple(sensor.bands[i] for i in self.kept), sensor.description)
        if self.wavelengths is None:
            raise InputError(f"{name}: its preprocessing names neither a sensor nor wavelengths; cannot align other bands to it")
        return Sensor.from_wavelengths(name, np.asarray(self.wavelengths))

    def aligned_from(self, source: Sensor, method: str = "mean", scale: float = 1.0, name: str = "model",
                     uncovered: str = "error") -> Preprocessing:
        """The same model input computed from another sensor's raw bands: (T, S) band alignment of
        ``source`` onto the model-input channels, then this standardisation (HyperKD's teacher input).
        ``uncovered="zero"``: a channel the source does not cover gets a zero row (``absent_channels``)
        instead of an error, for a model that masks it."""
        if self.alignment is not None:
            raise InputError(f"{name}: its preprocessing already aligns bands; align from its own raw bands instead")
        weights = band_alignment(source, self.input_sensor(name), method, uncovered)
        return replace(self, bands=len(source), kept=None, scale=float(scale), alignment=tuple(tuple(map(float, r)) for r in weights))

    def aligned_from_preprocessing(self, data: Preprocessing, method: str = "mean", scale: float = 1.0, name: str = "model",
                                   uncovered: str = "error") -> Preprocessing:
        """The same model input computed from the raw bands of ``data`` (a task's preprocessing): the
        alignment from ``data``'s model-input channels (by their wavelengths) composed with ``data``'s
        own raw -> channel map (its alignment and kept bands); ``scale`` from ``data``'s units on."""
        onto = self.aligned_from(data.input_sensor("the data"), method, scale * data.scale, name, uncovered)
        raw_map = np.asarray(data.alignment) if data.alignment is not None else np.eye(data.bands)
        if data.kept is not None:
            raw_map = raw_map[list(data.kept)]
        combined = np.asarray(onto.alignment) @ raw_map  # (T, channels) @ (channels, bands)
        return replace(onto, bands=data.bands, alignment=tuple(tuple(map(float, r)) for r in combined))

    @property
    def absent_channels(self) -> tuple[int, ...]:
        """Model-input channels that the raw bands do not provide (zero rows of the alignment)."""
        if self.alignment is None:
            return ()
        return tuple(t for t, row in enumerate(self.alignment) if not any(row))
