"""A frozen encoder's features, memoised per distinct patch (``models.feature_memo``)."""

import numpy as np
import pytest
import torch
from torch import nn

from rsdistill.models.encoder_classifier import EncoderPixelClassifier
from rsdistill.models.feature_memo import FeatureMemo, forget_shared_memos


@pytest.fixture(autouse=True)
def empty_shared_memos():
    """Each test starts with no memoised features (the memos are the process's)."""
    forget_shared_memos()
    yield
    forget_shared_memos()


class CountingEncoder(nn.Module):
    """A tiny patch-1 encoder (a 1×1 convolution and a nonlinearity) that counts the samples it sees."""

    patch_size, embed_dim = 1, 8

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.proj = nn.Conv2d(3, self.embed_dim, 1)
        self.samples = 0

    def forward_features(self, x):
        self.samples += len(x)
        return [torch.tanh(self.proj(x))]


def test_each_distinct_sample_is_computed_once_and_returned_as_computed():
    calls = []

    def compute(x):
        calls.append(len(x))
        return x.sum(dim=(1, 2)) * 2

    memo = FeatureMemo(chunk=4)
    x = torch.randn(6, 3, 5)
    first = memo(x, compute)
    assert calls == [4, 4], "six misses: two chunks of exactly four (the second zero-padded)"
    torch.testing.assert_close(first, x.sum(dim=(1, 2)) * 2, rtol=0, atol=0)
    again = memo(torch.cat([x[[4, 1]], torch.randn(1, 3, 5)]), compute)
    assert calls == [4, 4, 4], "two hits and one miss: one more chunk"
    assert torch.equal(again[:2], first[[4, 1]]) and len(memo) == 7


def test_an_output_does_not_depend_on_the_samples_it_was_computed_with():
    """Misses run in chunks of one fixed size, so a sample gets the same bits alone, in a batch of
    strangers, or from the memo (what exact resume with an empty memo needs)."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(40, 64), nn.GELU(), nn.Linear(64, 16))
    x = torch.randn(50, 40)
    alone = FeatureMemo(chunk=8)(x[7:8], net)
    crowded = FeatureMemo(chunk=8)(x, net)[7:8]
    assert torch.equal(alone, crowded)


def test_the_memo_stops_storing_at_its_byte_budget():
    memo = FeatureMemo(chunk=2, max_bytes=3 * 16)  # room for three 4-float outputs
    out = memo(torch.randn(5, 4), lambda x: x.clone())
    assert out.shape == (5, 4) and len(memo) == 3 and memo.stored_bytes == 48


def test_a_frozen_encoder_sees_each_patch_once_across_epochs_and_a_trained_one_every_time():
    patches = torch.randn(10, 3, 3, 3)
    frozen = EncoderPixelClassifier(CountingEncoder(), num_classes=4, freeze=True)
    for _ in range(3):  # three epochs over the same patches, in a different order each time
        logits = frozen(patches[torch.randperm(10)])
        logits.sum().backward()  # the head still learns
    assert frozen.encoder.samples == 32, "10 patches once, in chunks of 32"
    assert frozen.head.weight.grad is not None and frozen.encoder.proj.weight.grad is None
    reference = EncoderPixelClassifier(CountingEncoder(), num_classes=4, freeze=False)  # computes every time
    reference.head.load_state_dict(frozen.head.state_dict())
    torch.testing.assert_close(frozen(patches), reference(patches), rtol=1e-6, atol=1e-6)

    trained = EncoderPixelClassifier(CountingEncoder(), num_classes=4, freeze=False)
    for _ in range(3):
        trained(patches).sum().backward()
    assert trained.encoder.samples == 30 and trained.memo is None and trained.encoder.proj.weight.grad is not None


def test_new_encoder_weights_forget_the_memoised_features():
    model = EncoderPixelClassifier(CountingEncoder(), num_classes=4, freeze=True)
    patches = torch.randn(4, 3, 3, 3)
    before = model(patches)
    state = {k: v + 1.0 if k.startswith("encoder.") else v for k, v in model.state_dict().items()}
    assert "memo" not in " ".join(state), "the memo is never saved"
    model.load_state_dict(state)
    assert len(model.memo) == 0
    assert not torch.allclose(model(patches), before)


def test_frozen_encoders_of_the_same_weights_and_settings_share_one_memo():
    """A teacher's head, a reloaded copy of it (a KD student's teacher) and the next seed's teacher
    compute each patch once between them; other weights or other settings get their own features."""
    patches = torch.randn(6, 3, 3, 3)
    first = EncoderPixelClassifier(CountingEncoder(), num_classes=4, freeze=True)
    first(patches)
    copy = EncoderPixelClassifier(CountingEncoder(), num_classes=5, freeze=True)  # same pretrained weights, its own head
    copy.encoder.proj.weight.data.zero_()
    copy.load_state_dict({**copy.state_dict(), **{k: v for k, v in first.state_dict().items() if k.startswith("encoder.")}})
    copy(patches[[5, 0]])
    assert copy.encoder.samples == 0 and copy.memo is first.memo, "the copy found the first one's features"

    other = EncoderPixelClassifier(CountingEncoder(), num_classes=4, freeze=True)
    other.load_state_dict({k: v + 1.0 if k.startswith("encoder.proj") else v for k, v in other.state_dict().items()})
    other.head.load_state_dict(first.head.state_dict())
    assert other.memo is not first.memo and not torch.allclose(other(patches), first(patches))
    assert other.encoder.samples == 32

    first.encoder.eval()  # a setting the output may depend on (dropout): another memo
    assert first.memo is not copy.memo


def test_a_frozen_encoder_classifier_exports_the_encoder_not_the_memo(tmp_path):
    """The ONNX graph must compute the features: a lookup traced into it would return the features
    of the example batch for every input (or fail to trace)."""
    from fixtures import pixel_info
    from rsdistill.deploy.onnx_export import deployable, export_onnx
    from rsdistill.deploy.runtime import OnnxModel
    from rsdistill.models.registry import save_encoder
    from rsdistill.models.vit import ViTEncoder
    from rsdistill.preprocessing import Preprocessing
    from rsdistill.tasks.classification import PixelClassifier

    save_encoder(ViTEncoder(4, 16, 1, 32, 1, 4), tmp_path / "enc.safetensors", Preprocessing.create(4, [0.0] * 4, [1.0] * 4))
    task = PixelClassifier(pixel_info(4, 3, 5), arch="encoder", encoder=str(tmp_path / "enc.safetensors"), freeze_encoder=True).eval()
    raw = torch.randn(7, 4, 5, 5)
    expected = task(raw).detach().numpy()
    assert len(task.net.memo) == 7
    onnx = OnnxModel(export_onnx(deployable(task), tmp_path / "frozen.onnx"))
    np.testing.assert_allclose(onnx(raw.numpy()), expected, atol=1e-4)
