"""``FeatureMemo``: a frozen encoder's output for each distinct input, computed once per process.

A frozen pretrained teacher (Galileo at patch size 1 on 9 × 9 pixel patches: about 90 patches a
second on two CPU cores) is asked for the same pixels again and again: the labelled training pixels
every epoch, a KD student's unlabelled pixels whenever they are drawn again, and, in an experiment,
the same pixels again for every seed and fold, by the teacher's own head and by every student that
distils from it. Its output is a pure function of the patch and of the encoder, so the memo keys
each sample by a digest of its bytes (and dtype, shape, device and autocast state) and computes
only the samples it has not seen; ``shared_memo`` hands every encoder of the same weights and
settings (``fingerprint``, ``encoder_key``) the same memo, so a process computes each patch once,
whichever instance asks.

Exactness: misses are computed in chunks of exactly ``chunk`` samples (the last zero-padded). The
CPU kernels then run at one batch size whatever the other samples of a batch are, so a sample's
output does not depend on which samples missed with it, when, or through which instance: a run that
resumes with an empty memo gets the very same outputs as the run it continues (measured on
Galileo-Nano: batches of 37 and 128 agree bit for bit, a batch of 1 takes another kernel path and
does not).

Memory: each memo keeps at most ``max_bytes`` of outputs (default 1 GiB, about 2 million 128-d
features; beyond it computes without storing), and the process keeps the memos of the last
``SHARED_MEMOS`` encoders.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Callable

import torch
from torch import nn

SHARED_MEMOS = 2
_PLAIN = (int, float, str, tuple, list, dict, type(None))  # bool too (a subclass of int): the mode is part of encoder_key


class FeatureMemo:
    """The outputs of ``compute``: (n, ...) inputs -> (n, ...) outputs, one output per sample, no gradients."""

    def __init__(self, chunk: int = 32, max_bytes: int = 1 << 30):
        self.chunk, self.max_bytes = chunk, max_bytes
        self.outputs: dict[bytes, torch.Tensor] = {}
        self.stored_bytes = 0

    def _keys(self, x: torch.Tensor) -> list[bytes]:
        context = f"{x.dtype}{tuple(x.shape[1:])}{x.device}{torch.is_autocast_enabled(x.device.type)}".encode()
        rows = x.detach().cpu().contiguous().reshape(len(x), -1).view(torch.uint8).numpy()
        return [hashlib.blake2b(context + row.tobytes(), digest_size=16).digest() for row in rows]

    @torch.no_grad()
    def _computed(self, x: torch.Tensor, compute: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
        """(m, ...) -> (m, ...), in chunks of exactly ``chunk`` samples."""
        parts = []
        for start in range(0, len(x), self.chunk):
            part = x[start : start + self.chunk]
            padded = torch.cat([part, part.new_zeros((self.chunk - len(part), *part.shape[1:]))])
            parts.append(compute(padded)[: len(part)])
        return torch.cat(parts)

    def __call__(self, x: torch.Tensor, compute: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
        keys = self._keys(x)
        missing = [i for i, key in enumerate(keys) if key not in self.outputs]
        fresh = dict(zip(missing, self._computed(x[missing], compute))) if missing else {}
        for i, output in fresh.items():
            if self.stored_bytes + output.nbytes <= self.max_bytes:
                self.outputs[keys[i]] = output.clone()
                self.stored_bytes += output.nbytes
        return torch.stack([fresh[i] if i in fresh else self.outputs[key] for i, key in enumerate(keys)])

    def __len__(self) -> int:
        return len(self.outputs)


def fingerprint(module: nn.Module) -> bytes:
    """A digest of what an encoder's output depends on besides its input and its mode: every
    tensor of its state (names, dtypes, shapes and bytes) and every submodule's plain settings
    (patch size, live band groups, ...). Taken when the weights are loaded."""
    digest = hashlib.blake2b(digest_size=16)
    for name, tensor in module.state_dict().items():
        digest.update(f"{name}{tensor.dtype}{tuple(tensor.shape)}".encode())
        digest.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    settings = [(name, type(m).__name__, sorted((k, v) for k, v in vars(m).items() if not k.startswith("_") and isinstance(v, _PLAIN)))
                for name, m in module.named_modules()]
    digest.update(repr(settings).encode())
    return digest.digest()


def encoder_key(module: nn.Module, taken: bytes) -> bytes:
    """``taken`` (its ``fingerprint``) and what may have changed since: the modules' train/eval
    mode and the weights' dtype and device."""
    parameter = next(module.parameters(), None)
    placed = "" if parameter is None else f"{parameter.dtype}{parameter.device}"
    return taken + f"{[m.training for m in module.modules()]}{placed}".encode()


_SHARED: OrderedDict[bytes, FeatureMemo] = OrderedDict()


def shared_memo(key: bytes) -> FeatureMemo:
    """The process's memo for the encoder of ``key`` (``encoder_key``); the last ``SHARED_MEMOS`` are kept."""
    if key not in _SHARED:
        _SHARED[key] = FeatureMemo()
        while len(_SHARED) > SHARED_MEMOS:
            _SHARED.popitem(last=False)
    _SHARED.move_to_end(key)
    return _SHARED[key]


def forget_shared_memos() -> None:
    """Drop every memo of the process (tests start from none)."""
    _SHARED.clear()
