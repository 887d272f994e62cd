"""Reading other people's checkpoints safely: tensors only, pickles with ``weights_only=True``.

Unpickling can run arbitrary code, so a pickled checkpoint (.pt, .pth, .ckpt, .bin) is read with
``torch.load(weights_only=True)``, which accepts only tensors and plain containers. A file that
holds other objects is refused unless the caller passes ``trust_pickle`` for a source they trust.

``read_pickle_inertly`` reads such a file anyway for its tensors and plain values (e.g. another
tool's Lightning checkpoint with data frames and transforms among its hyper-parameters): the
unpickler resolves only tensor rebuilding and plain containers, and every other class or function
the pickle names becomes an inert ``Opaque`` placeholder that is never imported or called.
"""

from __future__ import annotations

import _codecs
import collections
import pickle
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file

from rsdistill.errors import InputError


def untrusted_pickle(path, how: str) -> str:
    """The one message for a checkpoint that ``weights_only=True`` refused."""
    return (f"{path}: the checkpoint holds pickled objects that are not plain tensors, so it was not loaded "
            f"(unpickling can run arbitrary code); if you trust its source, {how}")


def read_state_dict(path, trust_pickle: bool = False) -> dict[str, torch.Tensor]:
    """Tensors of a .safetensors or pickled checkpoint (unwrapping a ``model``/``state_dict`` entry)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: checkpoint not found")
    if path.suffix == ".safetensors":
        try:
            return load_file(path)
        except (SafetensorError, OSError) as error:
            raise InputError(f"{path}: not a readable safetensors file ({error})") from None
    try:
        state = torch.load(path, map_location="cpu", weights_only=not trust_pickle)
    except (pickle.UnpicklingError, RuntimeError, EOFError, AttributeError, ModuleNotFoundError) as error:
        if trust_pickle:
            raise InputError(f"{path}: cannot read checkpoint ({error})") from None
        raise InputError(untrusted_pickle(path, "pass trust_pickle=True")) from None
    for wrapper in ("model", "state_dict"):
        if isinstance(state, dict) and isinstance(state.get(wrapper), dict):
            state = state[wrapper]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise InputError(f"{path}: expected a state dict of tensors")
    return state


def load_strict(path, module: torch.nn.Module, state: dict[str, torch.Tensor], what: str) -> None:
    """Load ``state`` into ``module``: missing keys, shape mismatches and unexpected keys are errors naming them."""
    expected = module.state_dict()
    check_keys(path, state, expected)
    unexpected = sorted(set(state) - set(expected))
    if unexpected:
        raise InputError(f"{path}: unexpected keys {unexpected[:5]} for {what}")
    module.load_state_dict(state)


def check_keys(path, state: dict[str, torch.Tensor], expected: dict[str, torch.Tensor]) -> None:
    """Refuse missing keys and shape mismatches, naming them (unexpected keys are the caller's to report)."""
    missing = sorted(set(expected) - set(state))
    wrong = [f"{k}: checkpoint {tuple(state[k].shape)}, expected {tuple(v.shape)}" for k, v in expected.items() if k in state and state[k].shape != v.shape]
    if wrong:
        raise InputError(f"{path}: shape mismatch: " + "; ".join(wrong[:5]))
    if missing:
        raise InputError(f"{path}: missing keys {missing[:8]}{' ...' if len(missing) > 8 else ''}")


class Opaque:
    """Stands in for an object of a class the pickle names but ``read_pickle_inertly`` does not load."""

    def __new__(cls, *args, **kwargs):
        return object.__new__(cls)

    def __init__(self, *args, **kwargs):
        pass

    def __setstate__(self, state):
        pass

    def __repr__(self) -> str:
        return f"<{type(self).__name__} not loaded>"


_PLAIN = {
    ("torch._utils", "_rebuild_tensor_v2"): torch._utils._rebuild_tensor_v2,
    ("torch._utils", "_rebuild_parameter"): torch._utils._rebuild_parameter,
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("__builtin__", "set"): set, ("builtins", "set"): set,
    ("__builtin__", "slice"): slice, ("builtins", "slice"): slice,
    ("_codecs", "encode"): _codecs.encode,  # how protocol-2 pickles spell bytes
}


class _InertUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        found = _PLAIN.get((module, name))
        return found if found is not None else type(f"{module}.{name}", (Opaque,), {})


class _InertPickle:
    """The ``pickle_module`` torch.load uses (torch itself resolves the tensor storages)."""
    Unpickler = _InertUnpickler
    load = staticmethod(pickle.load)


def read_pickle_inertly(path):
    """The object tree of a pickled checkpoint: tensors and plain values, everything else ``Opaque``."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: checkpoint not found")
    try:
        # weights_only=False is the one exception in the project, and is safe here only because the
        # pickle module is ours: _InertUnpickler resolves no global outside _PLAIN, so nothing the
        # file names is imported or called (tests/test_specdeepmap.py runs a payload that must not fire).
        # weights_only=True cannot read such files: its allow-list needs the foreign classes imported.
        return torch.load(path, map_location="cpu", weights_only=False, pickle_module=_InertPickle)
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError, TypeError) as error:
        raise InputError(f"{path}: cannot read checkpoint ({error})") from None
