"""Reading other people's checkpoints safely: tensors only, pickles with ``weights_only=True``.

Unpickling can run arbitrary code, so a pickled checkpoint (.pt, .pth, .ckpt, .bin) is read with
``torch.load(weights_only=True)``, which accepts only tensors and plain containers. A file that
holds other objects is refused unless the caller passes ``trust_pickle`` for a source they trust.
"""

from __future__ import annotations

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


def check_keys(path, state: dict[str, torch.Tensor], expected: dict[str, torch.Tensor]) -> None:
    """Refuse missing keys and shape mismatches, naming them (unexpected keys are the caller's to report)."""
    missing = sorted(set(expected) - set(state))
    wrong = [f"{k}: checkpoint {tuple(state[k].shape)}, expected {tuple(v.shape)}" for k, v in expected.items() if k in state and state[k].shape != v.shape]
    if wrong:
        raise InputError(f"{path}: shape mismatch: " + "; ".join(wrong[:5]))
    if missing:
        raise InputError(f"{path}: missing keys {missing[:8]}{' ...' if len(missing) > 8 else ''}")
