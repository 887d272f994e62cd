"""Mamba's selective scan (Gu & Dao 2023, "Mamba", Algorithm 2 and eq. 2a–2b; discretised as in
``mambapy``: Ā = exp(Δ A), B̄ x = Δ B x)::

    h_t = exp(Δ_t A) ⊙ h_{t-1} + Δ_t B_t x_t        h_0 = 0
    y_t = C_t · h_t + D x_t

for x, Δ: (N, L, E) (sequences, steps, channels); A: (E, S) (S = d_state); B, C: (N, L, S);
D: (E,) -> y: (N, L, E).

``mambapy`` builds (N, L, E, S) tensors of exp(Δ A), Δ B x and the states, and its parallel scan
pads L to a power of two (9 -> 16 for a 9×9 patch): memory traffic dominates on a CPU. Backends:

- ``numba``: one fused loop per (sequence, channel) with the S states in a small buffer, parallel
  over sequences, exp(Δ A) by a vectorisable polynomial (``_decays``); the backward recomputes the
  states of one (sequence, channel) and scans back (no (N, L, E, S) tensor is ever stored). CPU,
  float32; compiled on first use and cached beside the module.
- ``torch``: a loop over the L steps in PyTorch with an (N, E, S) state: any device and dtype,
  exports to ONNX (the exporter traces the loop), autograd as usual.

- ``mamba_ssm``: the fused CUDA kernel of ``mamba-ssm`` (``selective_scan_fn``, forward and
  backward), where that package is installed; float32 inputs, as the numba scan.

``auto`` takes ``mamba_ssm`` for CUDA tensors where it is installed, ``numba`` for CPU tensors,
``torch`` otherwise and under tracing/export (``cuda_kernels=False`` leaves out ``mamba_ssm``).
All backends compute the same function with the same weights (``tests/test_selective_scan.py``
checks outputs and gradients against ``mambapy`` to 1e-5, and the ``mamba_ssm`` call's layout
against the kernel's documented one), so a checkpoint trained with any runs with any other.
"""

from __future__ import annotations

import functools

import numpy as np
import torch
from torch import nn

BACKENDS = ("auto", "numba", "torch", "mamba_ssm")

try:
    import numba
except ImportError:  # pragma: no cover - numba is a declared dependency; the fallback keeps the model usable
    numba = None


def scan_torch(x, delta, A, B, C, D):
    """The scan as a loop over steps: (N, L, E) x, Δ; (E, S) A; (N, L, S) B, C; (E,) D -> (N, L, E)."""
    state = x.new_zeros(x.shape[0], x.shape[2], A.shape[1])  # (N, E, S)
    outputs = []
    for t in range(x.shape[1]):
        step = delta[:, t, :, None]  # (N, E, 1)
        state = torch.exp(step * A) * state + step * B[:, t, None, :] * x[:, t, :, None]
        outputs.append(state @ C[:, t, :, None])  # (N, E, 1)
    return torch.cat(outputs, dim=2).transpose(1, 2) + D * x


if numba is not None:
    _LOG2E = np.float32(1.4426950408889634)
    _LN2_HI, _LN2_LO = np.float32(0.693359375), np.float32(-2.12194440e-4)  # Cody–Waite split of ln 2

    @numba.njit(fastmath=True, inline="always", cache=True)
    def _decays(d, A_e, out, bits, scale):  # pragma: no cover - compiled; tested through scan_numba
        """out[s] = exp(d · A_e[s]) for the S states, vectorisable (``math.exp`` is a scalar call):
        exp(v) = 2^k · exp(r), k = round(v / ln 2), r = v − k ln 2 in [−ln2/2, ln2/2] (Cody–Waite),
        exp(r) by its degree-6 Taylor polynomial (truncation < 1.2e-7 relative), 2^k written as
        float32 bits into ``bits`` (``scale`` is the float32 view of ``bits``); v clamped to
        [−87, 88], the float32 normal range."""
        for s in range(A_e.shape[0]):
            v = min(max(d * A_e[s], np.float32(-87.0)), np.float32(88.0))
            k = np.floor(v * _LOG2E + np.float32(0.5))
            r = v - k * _LN2_HI - k * _LN2_LO
            out[s] = np.float32(1) + r * (np.float32(1) + r * (np.float32(1 / 2) + r * (np.float32(1 / 6) + r * (
                np.float32(1 / 24) + r * (np.float32(1 / 120) + r * np.float32(1 / 720))))))
            bits[s] = (np.int32(k) + np.int32(127)) << np.int32(23)
        for s in range(A_e.shape[0]):
            out[s] *= scale[s]

    @numba.njit(parallel=True, fastmath=True, cache=True)
    def _forward_kernel(x, delta, A, B, C, D, y):  # pragma: no cover - compiled; tested through scan_numba
        sequences, steps, channels = x.shape
        states = A.shape[1]
        for i in numba.prange(sequences):
            h = np.empty(states, np.float32)
            decay = np.empty(states, np.float32)
            bits = np.empty(states, np.int32)
            scale = bits.view(np.float32)
            for e in range(channels):
                h[:] = 0
                for t in range(steps):
                    d, xv = delta[i, t, e], x[i, t, e]
                    _decays(d, A[e], decay, bits, scale)
                    B_t, C_t = B[i, t], C[i, t]
                    acc = np.float32(0)
                    for s in range(states):
                        h[s] = decay[s] * h[s] + d * B_t[s] * xv
                        acc += h[s] * C_t[s]
                    y[i, t, e] = acc + D[e] * xv

    @numba.njit(parallel=True, fastmath=True, cache=True)
    def _backward_kernel(x, delta, A, B, C, D, gy, gx, gdelta, gA, gB, gC, gD):  # pragma: no cover
        """Gradients of the scan; gA (chunks, E, S) and gD (chunks, E) are partial sums per chunk of
        sequences (one chunk per thread, summed by the caller), everything else is written once."""
        sequences, steps, channels = x.shape
        states = A.shape[1]
        chunks = gA.shape[0]
        for c in numba.prange(chunks):
            h = np.empty((steps + 1, states), np.float32)  # h[t + 1] = state after step t; h[0] = 0
            decay = np.empty((steps, states), np.float32)  # exp(Δ_t A)
            carry = np.empty(states, np.float32)  # dL/dh_t flowing back from step t + 1
            bits = np.empty(states, np.int32)
            scale = bits.view(np.float32)
            for i in range(c * sequences // chunks, (c + 1) * sequences // chunks):
                for e in range(channels):
                    h[0, :] = 0
                    for t in range(steps):
                        d, xv = delta[i, t, e], x[i, t, e]
                        _decays(d, A[e], decay[t], bits, scale)
                        B_t = B[i, t]
                        for s in range(states):
                            h[t + 1, s] = decay[t, s] * h[t, s] + d * B_t[s] * xv
                    carry[:] = 0
                    for t in range(steps - 1, -1, -1):
                        d, xv, g = delta[i, t, e], x[i, t, e], gy[i, t, e]
                        B_t, C_t, gB_t, gC_t, gA_e = B[i, t], C[i, t], gB[i, t], gC[i, t], gA[c, e]
                        gD[c, e] += g * xv
                        g_x = g * D[e]
                        g_d = np.float32(0)
                        for s in range(states):
                            g_h = carry[s] + g * C_t[s]
                            gC_t[s] += g * h[t + 1, s]
                            g_decay = g_h * h[t, s] * decay[t, s]  # dL/d(Δ A) through exp
                            g_d += g_decay * A[e, s] + g_h * B_t[s] * xv
                            gA_e[s] += g_decay * d
                            gB_t[s] += g_h * d * xv
                            g_x += g_h * d * B_t[s]
                            carry[s] = g_h * decay[t, s]
                        gdelta[i, t, e] = g_d
                        gx[i, t, e] = g_x


class _NumbaScan(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, delta, A, B, C, D):
        inputs = [t.detach().float().contiguous() for t in (x, delta, A, B, C, D)]
        y = torch.empty_like(inputs[0])
        _forward_kernel(*(t.numpy() for t in inputs), y.numpy())
        ctx.save_for_backward(*inputs)
        ctx.dtypes = [t.dtype for t in (x, delta, A, B, C, D)]
        return y.to(x.dtype)

    @staticmethod
    def backward(ctx, gy):
        x, delta, A, B, C, D = ctx.saved_tensors
        chunks = max(1, min(numba.get_num_threads(), x.shape[0]))
        gx, gdelta = torch.empty_like(x), torch.empty_like(delta)
        gB, gC = torch.zeros_like(B), torch.zeros_like(C)
        gA = torch.zeros(chunks, *A.shape)
        gD = torch.zeros(chunks, *D.shape)
        arrays = [t.numpy() for t in (x, delta, A, B, C, D, gy.detach().float().contiguous(), gx, gdelta, gA, gB, gC, gD)]
        _backward_kernel(*arrays)
        grads = (gx, gdelta, gA.sum(0), gB, gC, gD.sum(0))
        return tuple(g.to(dtype) for g, dtype in zip(grads, ctx.dtypes))


def scan_numba(x, delta, A, B, C, D):
    """The fused CPU scan (same arguments and result as ``scan_torch``); threads follow torch's."""
    threads = torch.get_num_threads()
    numba.set_num_threads(max(1, min(threads, numba.config.NUMBA_NUM_THREADS)))
    y = _NumbaScan.apply(x, delta, A, B, C, D)
    if torch.get_num_threads() != threads:  # numba's OpenMP layer, when it starts, sets the process's
        torch.set_num_threads(threads)  # OpenMP threads to NUMBA_NUM_THREADS (all cores), torch's included
    return y


@functools.cache
def mamba_ssm_kernel():
    """``mamba-ssm``'s fused selective scan (CUDA only: ``pip install mamba-ssm`` on a CUDA
    machine), or None where it is not installed."""
    try:
        from mamba_ssm.ops.selective_scan_interface import selective_scan_fn
    except ImportError:
        return None
    return selective_scan_fn


def scan_mamba_ssm(x, delta, A, B, C, D):
    """The scan by ``mamba-ssm``'s kernel (same arguments and result as ``scan_torch``). The kernel
    takes channels before steps, u, Δ: (N, E, L), B, C: (N, S, L), with u, Δ, B, C of one dtype and
    A, D in float32; here all float32 (under bf16 autocast Δ arrives in float32 and x, B, C in
    bf16), the result in x's dtype."""
    u, delta, B, C = (t.float().transpose(1, 2) for t in (x, delta, B, C))
    y = mamba_ssm_kernel()(u, delta, A.float(), B, C, D.float())  # (N, E, L)
    return y.transpose(1, 2).to(x.dtype)


def resolve_backend(backend: str, tensor: torch.Tensor, cuda_kernels: bool = True) -> str:
    """The backend that runs for ``tensor``: ``auto`` -> ``mamba_ssm`` for CUDA tensors where it is
    installed (and ``cuda_kernels``), ``numba`` for CPU tensors, else ``torch``; ``torch`` whenever
    the model is being traced or exported."""
    if backend not in BACKENDS:
        raise ValueError(f"unknown selective-scan backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    if backend == "numba" and numba is None:
        raise ValueError("the numba selective scan needs the numba package (pip install numba)")
    if backend == "mamba_ssm" and mamba_ssm_kernel() is None:
        raise ValueError("the mamba_ssm selective scan needs the mamba-ssm package on a CUDA machine (pip install mamba-ssm)")
    if backend != "auto":
        return backend
    if torch.jit.is_tracing() or torch.onnx.is_in_onnx_export() or torch.compiler.is_compiling():
        return "torch"
    if tensor.device.type == "cuda" and cuda_kernels and mamba_ssm_kernel() is not None:
        return "mamba_ssm"
    return "numba" if numba is not None and tensor.device.type == "cpu" else "torch"


class SelectiveScan(nn.Module):
    """The scan as a parameter-free module, so that a ``mambapy`` block can hold it in place of its
    own ``selective_scan`` method (``install_scan``) and a model can switch backends (``backend``)."""

    def __init__(self, backend: str = "auto", cuda_kernels: bool = True):
        super().__init__()
        resolve_backend(backend, torch.empty(0))
        self.backend, self.cuda_kernels = backend, cuda_kernels

    def forward(self, x, delta, A, B, C, D):
        return SCANS[resolve_backend(self.backend, x, self.cuda_kernels)](x, delta, A, B, C, D)

    def extra_repr(self) -> str:
        return f"backend={self.backend!r}, cuda_kernels={self.cuda_kernels}"


SCANS = {"numba": scan_numba, "torch": scan_torch, "mamba_ssm": scan_mamba_ssm}


def install_scan(mamba: nn.Module, backend: str = "auto", cuda_kernels: bool = True) -> None:
    """Make every ``mambapy`` block of ``mamba`` scan with ``SelectiveScan(backend, cuda_kernels)``.

    ``MambaBlock.ssm`` calls ``self.selective_scan`` (its parallel mode); the scan is registered as
    the block's parameter-free submodule ``scan`` and bound over that method in the instance, so the
    block's parameters, and so its checkpoints, are unchanged."""
    for block in list(mamba.modules()):
        if type(block).__name__ == "MambaBlock":
            block.config.pscan = True  # route MambaBlock.ssm through selective_scan
            block.scan = SelectiveScan(backend, cuda_kernels)
            block.__dict__["selective_scan"] = block.scan


def set_scan_backend(model: nn.Module, backend: str) -> None:
    """Switch every ``SelectiveScan`` in ``model`` to ``backend`` (e.g. ``torch`` before ONNX export)."""
    resolve_backend(backend, torch.empty(0))
    for module in model.modules():
        if isinstance(module, SelectiveScan):
            module.backend = backend
