"""The fused selective scan computes mambapy's function: outputs and gradients to 1e-5 (fp32)."""

import pytest
import torch
from mambapy.mamba import Mamba, MambaConfig

from rsdistill.models.blm import BLMClassifier
from rsdistill.models.selective_scan import SelectiveScan, install_scan, set_scan_backend


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
