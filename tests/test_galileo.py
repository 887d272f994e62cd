"""Galileo-Nano: parity with the official code's outputs, weights by name with sha256 checks, and
any sensor fed by wavelength with the groups it does not cover masked.

The reference (``weights/galileo_nano/galileo_nano_reference.npz``) is the official code
(nasaharvest/galileo 0f0b5b9: ``construct_galileo_input(s2=..., normalize=True, months=[5])``,
``Encoder.load_from_folder``, ``Encoder.average_tokens``) on 8 EuroSAT-MS chips; its input builder
normalises S2 as DN / 10000 (``normalisation="builder"``, see ``models.galileo_checkpoints``).
Measured error of this implementation: pooled 9e-7, tokens 6e-6 (float32); the tolerance is 1e-4.
"""

from __future__ import annotations

import io
import json
import shutil

import numpy as np
import pytest
import torch

from rsdistill.errors import InputError
from rsdistill.io.readers import open_scene
from rsdistill.models import pretrained
from rsdistill.models.galileo import OPTICAL_GROUPS
from rsdistill.models.registry import load_encoder
from rsdistill.spectral.sensors import Sensor

FOLDER = "weights/galileo_nano"


@pytest.fixture
def galileo_folder(real_file):
    return real_file(FOLDER + "/encoder.pt").parent


@pytest.fixture
def reference(galileo_folder):
    return np.load(galileo_folder / "galileo_nano_reference.npz")


@pytest.mark.parametrize("patch_size", [4, 8])
def test_pooled_outputs_match_the_official_code(galileo_folder, reference, patch_size):
    encoder = load_encoder(galileo_folder, patch_size=patch_size, normalisation="builder")
    with torch.no_grad():
        features = encoder(torch.from_numpy(reference["s2_dn"]))[0]  # (8, 128, h, w)
    expected = reference["pooled"][:, [4, 8].index(patch_size)]
    np.testing.assert_allclose(features.mean((2, 3)).numpy(), expected, atol=1e-4, rtol=0)


def test_space_time_tokens_match_the_official_code(galileo_folder, reference):
    pretrained_encoder = load_encoder(galileo_folder, patch_size=8, normalisation="builder")
    model = pretrained_encoder.encoder
    with torch.no_grad():
        tokens, _ = model.tokens(pretrained_encoder.preprocessing(torch.from_numpy(reference["s2_dn"])))  # (8, 4, 4, 5, 128)
    official = reference["space_time_tokens_p8"][:, :, :, 0]  # (8, 4, 4, 7 groups, 128)
    np.testing.assert_allclose(tokens.numpy(), official[:, :, :, 1:6], atol=1e-4, rtol=0)
    # the masked S1 and NDVI groups come out of the official encoder as LayerNorm(0) = the norm's bias
    for masked in (0, 6):
        np.testing.assert_allclose(official[:, :, :, masked], np.broadcast_to(model.norm.bias.numpy(), official[:, :, :, masked].shape), atol=1e-6)


def test_the_load_report_names_what_was_not_used(galileo_folder):
    report = load_encoder(galileo_folder).card["load_report"]
    assert report["tensors"] == 106 and report["loaded"] == 79
    assert "space_time_embed.S1.proj.weight" in report["unused_keys"] and "space_time_embed.NDVI.proj.weight" in report["unused_keys"]
    assert not any(k.startswith("blocks.") for k in report["unused_keys"])


def test_pretraining_normalisation_is_mean_minus_two_std_over_four_std(galileo_folder):
    stats = json.loads((galileo_folder / "normalization.json").read_text())["13"]
    preprocessing = load_encoder(galileo_folder).preprocessing
    b4_mean, b4_std = stats["mean"][4], stats["std"][4]  # VV, VH, B2, B3, B4: B4 is the third S2 band
    raw = torch.zeros(1, 10, 1, 1)
    raw[0, 2] = 1500.0
    assert preprocessing(raw)[0, 2, 0, 0].item() == pytest.approx((1500.0 - (b4_mean - 2 * b4_std)) / (4 * b4_std), rel=1e-6)


def _copy_weights(galileo_folder, root):
    target = root / "galileo_nano"
    target.mkdir(parents=True)
    for file in pretrained.entry("galileo-nano").files:
        shutil.copy(galileo_folder / file.name, target / file.name)
    return target


def test_weights_by_name_are_found_in_rsdistill_weights_first(galileo_folder, tmp_path, monkeypatch):
    copy = _copy_weights(galileo_folder, tmp_path / "mine")
    monkeypatch.setenv("RSDISTILL_WEIGHTS", str(tmp_path / "mine"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    encoder = load_encoder("galileo-nano")
    assert encoder.card["path"] == str(copy)
    assert encoder.encoder.embed_dim == 128 and encoder.encoder.depth == 4


def test_a_tampered_weights_file_is_one_line_naming_it_and_the_expected_hash(galileo_folder, tmp_path, monkeypatch):
    copy = _copy_weights(galileo_folder, tmp_path / "mine")
    data = bytearray((copy / "encoder.pt").read_bytes())
    data[-100] ^= 0xFF
    (copy / "encoder.pt").write_bytes(bytes(data))
    monkeypatch.setenv("RSDISTILL_WEIGHTS", str(tmp_path / "mine"))
    with pytest.raises(InputError) as error:
        load_encoder("galileo-nano")
    message = str(error.value)
    assert str(copy / "encoder.pt") in message and pretrained.entry("galileo-nano").files[1].sha256 in message and "\n" not in message


def test_missing_weights_name_every_place_looked(tmp_path, monkeypatch):
    monkeypatch.setenv("RSDISTILL_WEIGHTS", str(tmp_path / "mine"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setenv("RSDISTILL_DATA", str(tmp_path / "data"))
    with pytest.raises(InputError, match="rsdistill weights --download galileo-nano") as error:
        load_encoder("galileo-nano")
    for place in ("mine", "cache", "data"):
        assert str(tmp_path / place) in str(error.value)


def test_download_checks_every_file_against_its_sha256(galileo_folder, tmp_path, monkeypatch):
    """The download is mocked: urlopen serves the real files by name, or a truncated encoder."""
    truncate = {"on": False}

    def fake_urlopen(url, timeout):
        data = (galileo_folder / url.rsplit("/", 1)[1]).read_bytes()
        return io.BytesIO(data[:1000] if truncate["on"] and url.endswith("encoder.pt") else data)

    monkeypatch.setattr(pretrained.urllib.request, "urlopen", fake_urlopen)
    truncate["on"] = True
    with pytest.raises(InputError, match="sha256"):
        pretrained.download("galileo-nano", tmp_path)
    assert not (tmp_path / "galileo_nano" / "encoder.pt").exists()
    assert not list((tmp_path / "galileo_nano").glob("*.partial"))
    truncate["on"] = False
    folder = pretrained.download("galileo-nano", tmp_path)
    assert sorted(p.name for p in folder.iterdir()) == sorted(f.name for f in pretrained.entry("galileo-nano").files)


def test_an_rgb_photo_feeds_only_the_rgb_group(galileo_folder, real_file):
    photo = open_scene(real_file("dubai_aerial_hitl/tile_2/images/image_part_003.jpg"), sensor="rgb").read()
    encoder = load_encoder(galileo_folder).for_scene(photo, "srf", scale=10000 / 255)
    assert encoder.encoder.groups == ("S2_RGB",) and encoder.card["input"]["live_groups"] == ["S2_RGB"]
    crop = torch.from_numpy(photo.cube[:32, :32].transpose(2, 0, 1).copy())[None]
    with torch.no_grad():
        features = encoder(crop)[0]
    assert features.shape == (1, 128, 8, 8) and torch.isfinite(features).all()
    # masked groups take no part: changing what they would read changes nothing
    model, x = encoder.encoder, encoder.preprocessing(crop)
    x2 = x.clone()
    x2[:, 3:] = 123.0
    with torch.no_grad():
        assert torch.equal(model.forward_features(x)[0], model.forward_features(x2)[0])


def test_an_enmap_tile_feeds_every_group_and_a_vnir_sensor_no_swir(galileo_folder, real_file):
    tile = open_scene(real_file("enmap_potsdam_specdeepmap/images/enmap_potsdam_tile_128_0.tif")).read()
    encoder = load_encoder(galileo_folder)
    assert encoder.for_scene(tile, "srf").encoder.groups == tuple(OPTICAL_GROUPS)
    features = encoder.scene_features(tile, "srf")
    assert features[0].shape == (128, 8, 8)
    vnir = Sensor.from_wavelengths("vnir", np.arange(400, 1001, 10.0))
    assert encoder.for_sensor(vnir, "srf").encoder.groups == ("S2_RGB", "S2_Red_Edge", "S2_NIR_10m", "S2_NIR_20m")


def test_a_sensor_covering_no_group_is_one_line(galileo_folder):
    thermal = Sensor.from_wavelengths("thermal", [10_000.0, 11_000.0])
    with pytest.raises(InputError, match="covers none of Galileo's band groups"):
        load_encoder(galileo_folder).for_sensor(thermal, "srf")


def test_unknown_options_and_names_are_one_line(galileo_folder):
    with pytest.raises(InputError, match="unknown Galileo options"):
        load_encoder(galileo_folder, patchsize=4)
    with pytest.raises(InputError, match="patch size 9"):
        load_encoder(galileo_folder, patch_size=9)
    with pytest.raises(InputError, match="unknown pretrained weights"):
        pretrained.entry("galileo-huge")
