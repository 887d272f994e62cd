"""The per-pixel spectral baselines: they see the centre pixel only, follow Hu et al. (2015)'s
layer sizes, train as ``PixelClassifier`` architectures and teach a BLM student."""

import pytest
import torch

from fixtures import checkpoint_test_oa, classifier_recipe
from rsdistill.experiments.experiment import fit_and_test
from rsdistill.models.spectral import SpectralCNN1d, SpectralMLP
from rsdistill.tasks.loading import load_task


@pytest.mark.parametrize("model", [SpectralMLP(30, 4), SpectralCNN1d(30, 4)], ids=["mlp", "cnn1d"])
def test_only_the_centre_pixel_counts(model):
    torch.manual_seed(0)
    model.eval()
    patches = torch.randn(5, 30, 9, 9)
    neighbours = patches.clone()
    neighbours[:, :, :4] = torch.randn(5, 30, 4, 9)  # rows above the centre
    neighbours[:, :, 4, 5:] = 7.0
    centre = patches.clone()
    centre[:, :, 4, 4] += 1.0
    with torch.no_grad():
        torch.testing.assert_close(model(neighbours), model(patches))
        assert not torch.allclose(model(centre), model(patches))


def test_cnn1d_layer_sizes_follow_hu_et_al():
    model = SpectralCNN1d(224, 7)  # k1 = ⌈224 / 9⌉ = 25, k2 = ⌈25 / 5⌉ = 5, (224 − 25 + 1) / 5 = 40 pooled values
    conv, pool = model.features[0], model.features[2]
    assert (conv.out_channels, conv.kernel_size, pool.kernel_size) == (20, (25,), 5)
    assert model.head[1].in_features == 20 * 40 and model.head[1].out_features == 100
    assert model(torch.randn(3, 224, 1, 1)).shape == (3, 7)  # a 1×1 patch is a spectrum


@pytest.mark.parametrize("arch", ["spectral_mlp", "spectral_cnn1d"])
def test_spectral_classifiers_fit_reload_and_teach(tmp_path, arch):
    record = fit_and_test(arch, classifier_recipe(tmp_path / arch, 6, arch=arch, lr=0.01), seed=0)
    assert record["oa"] > 0.5  # 4 materials on the synthetic scene: well above chance (0.25)
    model = load_task(record["checkpoint"])
    assert type(model.net).__name__ == {"spectral_mlp": "SpectralMLP", "spectral_cnn1d": "SpectralCNN1d"}[arch]
    student = fit_and_test("student", classifier_recipe(tmp_path / "student", 1, teacher_ckpt=record["checkpoint"]), seed=0)
    assert load_task(student["checkpoint"]).hparams.teacher_ckpt == record["checkpoint"]
    # the test record is what the saved student scores when reloaded alone on its saved test pixels
    assert student["oa"] == pytest.approx(checkpoint_test_oa(student["checkpoint"], tmp_path / "student"), abs=1e-6)
