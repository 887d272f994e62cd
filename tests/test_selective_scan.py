"""The BLM classifier's fast paths compute the same function: the fused selective scan mambapy's
(outputs and gradients to 1e-5, fp32), mamba-ssm's CUDA kernel called in its documented layout, and
the preprocessing folded into the spectral 1×1 convolution the standardised copy it replaces."""

import subprocess
import sys
import types

import pytest
import torch
from mambapy.mamba import Mamba, MambaConfig

from rsdistill.models.blm import BLMClassifier
from rsdistill.models.selective_scan import SelectiveScan, install_scan, mamba_ssm_kernel, resolve_backend, set_scan_backend
from rsdistill.preprocessing import Preprocessing


def _inputs(n=5, steps=9, channels=6, states=7, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, steps, channels, generator=g)
    delta = torch.nn.functional.softplus(torch.randn(n, steps, channels, generator=g))
    A = -torch.rand(channels, states, generator=g) * 4
    B, C = torch.randn(n, steps, states, generator=g), torch.randn(n, steps, states, generator=g)
    D = torch.randn(channels, generator=g)
    return [t.requires_grad_() for t in (x, delta, A, B, C, D)]


def _mambapy_scan(x, delta, A, B, C, D):
    block = Mamba(MambaConfig(d_model=2, n_layers=1, d_state=A.shape[1], expand_factor=1)).layers[0].mixer
    return block.selective_scan(x, delta, A, B, C, D)  # mambapy's parallel scan (pads L to 16)


@pytest.mark.parametrize("backend", ["numba", "torch"])
def test_scan_matches_mambapy_forward_and_gradients(backend):
    inputs = _inputs()
    reference = _mambapy_scan(*inputs)
    weights = torch.randn_like(reference)
    ref_grads = torch.autograd.grad((reference * weights).sum(), inputs)
    output = SelectiveScan(backend)(*inputs)
    grads = torch.autograd.grad((output * weights).sum(), inputs)
    torch.testing.assert_close(output, reference, atol=1e-5, rtol=1e-5)
    for name, grad, ref in zip(("x", "delta", "A", "B", "C", "D"), grads, ref_grads):
        torch.testing.assert_close(grad, ref, atol=1e-5, rtol=1e-5, msg=f"gradient of {name}")


def _kernel_as_documented(u, delta, A, B, C, D):
    """A stand-in for ``mamba_ssm.ops.selective_scan_interface.selective_scan_fn`` with the layout and
    dtypes of its docstring and CUDA checks (u, Δ: (N, E, L); A: (E, S); B, C: (N, S, L); D: (E,);
    u, Δ, B, C of one dtype, A and D float32 -> (N, E, L)), computed by mambapy."""
    n, e, steps = u.shape
    assert delta.shape == u.shape and A.shape[0] == e and B.shape == C.shape == (n, A.shape[1], steps)
    assert u.dtype == delta.dtype == B.dtype == C.dtype and A.dtype == D.dtype == torch.float32
    return _mambapy_scan(*(t.transpose(1, 2) for t in (u, delta)), A, *(t.transpose(1, 2) for t in (B, C)), D).transpose(1, 2)


@pytest.fixture
def mamba_ssm_installed(monkeypatch):
    module = types.ModuleType("mamba_ssm.ops.selective_scan_interface")
    module.selective_scan_fn = _kernel_as_documented
    for name in ("mamba_ssm", "mamba_ssm.ops"):
        monkeypatch.setitem(sys.modules, name, types.ModuleType(name))
    monkeypatch.setitem(sys.modules, module.__name__, module)
    mamba_ssm_kernel.cache_clear()
    yield
    mamba_ssm_kernel.cache_clear()


def test_mamba_ssm_kernel_is_called_in_its_layout(mamba_ssm_installed):
    inputs = _inputs()
    reference = _mambapy_scan(*inputs)
    torch.testing.assert_close(SelectiveScan("mamba_ssm")(*inputs), reference, atol=1e-5, rtol=1e-5)
    x, delta, A, B, C, D = inputs  # as under bf16 autocast: x, B, C bf16, Δ float32
    mixed = SelectiveScan("mamba_ssm")(x.bfloat16(), delta, A, B.bfloat16(), C.bfloat16(), D)
    assert mixed.dtype == torch.bfloat16
    torch.testing.assert_close(mixed.float(), reference, atol=0.1, rtol=0.05)


def test_auto_takes_the_mamba_ssm_kernel_for_cuda_tensors_only_where_installed(monkeypatch):
    on_cuda = types.SimpleNamespace(device=torch.device("cuda", 0))  # no CUDA needed to resolve
    monkeypatch.setitem(sys.modules, "mamba_ssm", None)  # not installed
    mamba_ssm_kernel.cache_clear()
    try:
        assert resolve_backend("auto", on_cuda) == "torch"
        with pytest.raises(ValueError, match="pip install mamba-ssm"):
            SelectiveScan("mamba_ssm")
    finally:
        mamba_ssm_kernel.cache_clear()


def test_auto_resolution_with_mamba_ssm_installed(mamba_ssm_installed):
    on_cuda = types.SimpleNamespace(device=torch.device("cuda", 0))
    assert resolve_backend("auto", on_cuda) == "mamba_ssm"
    assert resolve_backend("auto", on_cuda, cuda_kernels=False) == "torch"
    assert resolve_backend("auto", torch.empty(0)) == "numba"


def test_blm_keeps_mambapy_parameters_and_outputs():
    torch.manual_seed(0)
    model = BLMClassifier(bands=12, classes=4, d_model=8, n_layers=2, d_state=16).eval()
    plain = Mamba(model.mamba.config)
    assert {k for k in model.state_dict() if k.startswith("mamba.")} == {f"mamba.{k}" for k in plain.state_dict()}
    patches = torch.randn(7, 12, 9, 9)
    with torch.no_grad():
        fused = model(patches)
        set_scan_backend(model, "torch")
        looped = model(patches)
        plain.load_state_dict(model.mamba.state_dict())
        model.mamba = plain  # mambapy's own blocks, same weights
        reference = model(patches)
    torch.testing.assert_close(fused, reference, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(looped, reference, atol=1e-5, rtol=1e-5)


def test_install_scan_is_idempotent_and_rejects_unknown_backends():
    mamba = Mamba(MambaConfig(d_model=4, n_layers=1, d_state=4))
    install_scan(mamba, "torch")
    install_scan(mamba, "numba")
    assert [m.backend for m in mamba.modules() if isinstance(m, SelectiveScan)] == ["numba"]
    with pytest.raises(ValueError, match="unknown selective-scan backend"):
        set_scan_backend(mamba, "fast")


def test_preprocessing_folded_into_the_spectral_convolution_is_the_same_function():
    g = torch.Generator().manual_seed(0)
    raw = torch.rand(6, 5, 9, 9, generator=g) * 9000  # raw values far from 0, as 16-bit reflectance
    alignment = torch.rand(4, 5, generator=g)  # 5 raw bands -> 4 aligned, of which 3 kept
    preprocessing = Preprocessing.create(5, [2500.0, 3000.0, 1000.0], [800.0, 500.0, 300.0], kept=[0, 2, 3], alignment=alignment, scale=0.5)
    model = BLMClassifier(bands=3, classes=4, d_model=8, n_layers=1, d_state=8).eval()
    standardised = model(preprocessing(raw))
    standardised.sum().backward()
    expected_grad, model.encoder.spectral[0].weight.grad = model.encoder.spectral[0].weight.grad, None
    folded = model(raw, preprocessing=preprocessing)
    folded.sum().backward()
    torch.testing.assert_close(folded, standardised, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(model.encoder.spectral[0].weight.grad, expected_grad, atol=1e-3, rtol=1e-4)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):  # the folded stage stays fp32 under autocast
        assert model.pixelwise(raw, preprocessing).dtype == torch.float32
        half = model(raw, preprocessing=preprocessing).float()
    assert (half - standardised).abs().max() < 0.1


def test_the_numba_scan_leaves_torch_threads_as_set():
    """numba's OpenMP pool, when the first scan starts it, set torch's threads to all cores: a run
    asked for 1 thread used 2 from its first BLM forward on. In a fresh process (the pool starts once)."""
    code = ("import torch; torch.set_num_threads(1); from rsdistill.models.blm import BLMClassifier; "
            "model = BLMClassifier(bands=4, classes=2, d_model=4, n_layers=1, d_state=4, scan='numba'); "
            "model(torch.randn(2, 4, 9, 9)); print(torch.get_num_threads())")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split()[-1] == "1"
