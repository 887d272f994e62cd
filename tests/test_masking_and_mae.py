import numpy as np
import pytest
import torch

from fixtures import tile_info
from rsdistill.errors import InputError
from rsdistill.losses.reconstruction import reconstruction_terms, spectral_angle
from rsdistill.masking import mask_from_scores, patch_scores
from rsdistill.models.mae import MaskedAutoencoder
from rsdistill.models.registry import load_encoder, save_encoder
from rsdistill.models.vit import ViTEncoder
from rsdistill.preprocessing import Preprocessing
from rsdistill.tasks.pretrain import MAEPretrainer
from rsdistill.tokens import patch_validity, patchify, unpatchify


def edge_tile():
    """(1, 5, 16, 16): flat everywhere except a checkerboard in the top-left 4×4 patch."""
    images = torch.zeros(1, 5, 16, 16)
    images[0, :, :4, :4] = torch.tensor([[1.0, -1.0] * 2, [-1.0, 1.0] * 2] * 2)
    return images


@pytest.mark.parametrize("method", ["gabor", "wavelet"])
def test_significance_scores_find_the_textured_patch(method):
    scores = patch_scores(edge_tile(), method, 4)
    assert scores.shape == (1, 16) and scores.argmax().item() == 0


def test_mask_takes_the_top_ratio_of_scores_without_noise():
    scores = torch.arange(20.0).repeat(3, 1)
    mask, keep, _, restore = mask_from_scores(scores, 0.75, noise=0.0)
    assert mask.sum(1).tolist() == [15, 15, 15]
    assert mask[0, 5:].all() and not mask[0, :5].any()
    kept_then_masked = torch.cat([keep, torch.argsort(scores, 1)[:, 5:]], 1)
    assert torch.equal(torch.gather(kept_then_masked, 1, restore), torch.arange(20).repeat(3, 1))


def test_noise_varies_the_mask_but_keeps_the_preference():
    torch.manual_seed(0)
    scores = torch.arange(64.0).repeat(200, 1)
    mask = mask_from_scores(scores, 0.5, noise=0.5).mask
    assert len({tuple(m.tolist()) for m in mask}) > 1
    assert mask[:, 32:].mean() > 0.8 > 0.2 > mask[:, :32].mean()


def test_bad_mask_ratio_and_score():
    with pytest.raises(InputError, match=r"mask ratio must be in \(0, 1\)"):
        mask_from_scores(torch.rand(1, 4), 1.0)
    with pytest.raises(InputError, match="unknown masking score"):
        patch_scores(torch.rand(1, 3, 8, 8), "sobel", 4)
    with pytest.raises(InputError, match="mask_ratio"):
        MAEPretrainer(tile_info(3), mask_ratio=0.0)


def test_vit_keys_layers_and_position_interpolation():
    encoder = ViTEncoder(7, img_size=16, patch_size=4, embed_dim=32, depth=3, num_heads=4)
    keys = set(encoder.state_dict())
    assert {"patch_embed.proj.weight", "cls_token", "pos_embed", "blocks.2.attn.qkv.weight", "blocks.0.mlp.fc1.weight", "norm.weight"} <= keys
    out, layers = encoder(torch.randn(2, 7, 16, 16), return_layers=(1, 3))
    assert out.shape == (2, 17, 32) and set(layers) == {1, 3}
    bigger, _ = encoder(torch.randn(1, 7, 32, 32))
    assert bigger.shape == (1, 65, 32)


def test_mae_round_trip_and_physics_branch():
    mae = MaskedAutoencoder(6, 16, 4, 32, 2, 4, 16, 1, 4, endmembers=3)
    images = torch.randn(2, 6, 16, 16)
    assert torch.equal(unpatchify(patchify(images, 4), 4, 16, 16), images)
    out = mae(images, 0.75, "wavelet")
    assert out["pred"].shape == (2, 16, 96) and out["mask"].sum().item() == 24
    masked_only = mae(images, 0.75, "random", predict="masked")
    assert "pred" not in masked_only and masked_only["pred_masked"].shape == (2, 12, 96)
    torch.testing.assert_close(torch.gather(out["mask"], 1, out["ids_masked"]), torch.ones(2, 12))
    torch.testing.assert_close(out["abundances"].sum(-1), torch.ones(2, 16, 16))
    manual = out["abundances"] @ mae.mixing.endmembers.T
    torch.testing.assert_close(out["mixture"], manual.flatten(2))
    fixed = MaskedAutoencoder(6, 16, 4, 32, 2, 4, 16, 1, 4, endmembers=3, endmember_init=torch.rand(6, 3), learnable_endmembers=False)
    assert "mixing.endmembers" not in dict(fixed.named_parameters())


def test_losses_ignore_visible_and_nodata_pixels():
    loss = lambda out, target, valid, _: reconstruction_terms({"mse": 1.0, "sam": 1.0}, out, target, valid, 2, (2, 4), lambda x: x)  # noqa: E731
    target = torch.ones(1, 2, 4 * 2)
    pred = target.clone()
    pred[0, 0] = 5.0  # wrong, but visible
    outputs = lambda: {"pred_masked": pred[:, 1:], "ids_masked": torch.tensor([[1]])}  # noqa: E731 - patch 1 masked
    terms = loss(outputs(), target, torch.ones(1, 2, 4), None)
    assert terms["mse"].item() == 0.0
    pred[0, 1, :2] = 9.0  # wrong masked pixel 0, declared nodata
    valid = torch.ones(1, 2, 4)
    valid[0, 1, 0] = 0
    assert loss(outputs(), target, valid, None)["mse"].item() == 0.0
    valid[0, 1, 0] = 1
    assert loss(outputs(), target, valid, None)["mse"].item() == pytest.approx(64 / 4)
    assert spectral_angle(torch.tensor([1.0, 0.0]), torch.tensor([0.0, 2.0])).item() == pytest.approx(np.pi / 2, rel=1e-4)


def test_nan_loss_stops_with_step_and_term():
    task = MAEPretrainer(tile_info(4), patch_size=4, embed_dim=16, depth=1, num_heads=2, decoder_embed_dim=8, decoder_depth=1,
                         loss_weights={"mse": 1.0})
    images = torch.randn(2, 4, 8, 8)
    images[0, 0, 0, 0] = float("nan")
    with pytest.raises(FloatingPointError, match="loss term 'mse' became nan at step 0"):
        task.training_step({"image": images, "valid": torch.ones(2, 8, 8, dtype=torch.bool)}, 0)


def test_a_diverged_run_ends_in_one_line_naming_it(monkeypatch, capsys):
    """The NaN guard's error, raised inside a fit, reaches the user as one line (exit 1), not a traceback."""
    import rsdistill.recipes
    from rsdistill.cli import main

    def diverge(argv):
        raise FloatingPointError("loss term 'volume' became nan at step 318 (epoch 24) of runs/x; stopping without overwriting")

    monkeypatch.setattr(rsdistill.recipes, "run_lightning", diverge)
    assert main(["fit", "-c", "recipe.yaml"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("rsdistill: error: training diverged: loss term 'volume' became nan") and err.count("\n") == 1


def test_patch_validity_layout_matches_patchify():
    valid = torch.rand(3, 8, 8) > 0.5
    torch.testing.assert_close(patch_validity(valid, 4), patchify(valid[:, None].float(), 4))


def test_encoder_safetensors_round_trip_and_mismatch(tmp_path):
    encoder = ViTEncoder(5, img_size=8, patch_size=4, embed_dim=16, depth=2, num_heads=2)
    preprocessing = Preprocessing.create(5, [1.0] * 5, [2.0] * 5, wavelengths=[500, 600, 700, 800, 900])
    weights, card = save_encoder(encoder, tmp_path / "enc.safetensors", preprocessing)
    loaded = load_encoder(weights)
    assert loaded.preprocessing == preprocessing and loaded.card["architecture"] == {"name": "vit", **encoder.config}
    x = torch.randn(1, 5, 8, 8)
    torch.testing.assert_close(loaded.encoder(x)[0], encoder(x)[0])
    torch.testing.assert_close(loaded(x)[0], encoder.forward_features((x - 1.0) / 2.0)[0])  # raw values in, features out
    import json

    doc = json.loads(card.read_text())
    doc["architecture"]["depth"] = 3
    card.write_text(json.dumps(doc))
    with pytest.raises(InputError, match="missing keys"):
        load_encoder(weights)


def test_embedding_only_visible_patches_equals_embedding_all_then_gathering():
    from rsdistill.models.vit import ViTEncoder

    encoder = ViTEncoder(7, 16, 4, 32, 1, 4)
    images = torch.randn(3, 7, 16, 16)
    ids = torch.stack([torch.randperm(16)[:4] for _ in range(3)])
    everything = encoder.embed(images)
    torch.testing.assert_close(encoder.embed(images, ids), torch.gather(everything, 1, ids[..., None].expand(-1, -1, 32)))
    wide = torch.randn(2, 7, 16, 24)  # another grid: position code regenerated, not the cached one
    ids = torch.stack([torch.randperm(24)[:6] for _ in range(2)])
    torch.testing.assert_close(encoder.embed(wide, ids), torch.gather(encoder.embed(wide), 1, ids[..., None].expand(-1, -1, 32)))


def test_endmembers_have_their_own_lr_and_no_weight_decay():
    from rsdistill.tasks.pretrain import MAEPretrainer

    task = MAEPretrainer(tile_info(5), embed_dim=16, depth=1, num_heads=2, decoder_embed_dim=8, decoder_depth=1,
                         decoder_num_heads=2, endmembers=3, endmember_lr=1e-5)
    decayed, undecayed, endmembers = task.configure_optimizers()["optimizer"].param_groups
    assert endmembers["weight_decay"] == 0.0 and endmembers["lr"] == 1e-5 and endmembers["params"] == [task.model.mixing.endmembers]
    assert decayed["weight_decay"] == 0.05 and decayed["lr"] == task.hparams.lr
    assert all(p is not task.model.mixing.endmembers and p.ndim > 1 for p in decayed["params"])
    names = {id(p): n for n, p in task.named_parameters()}
    assert undecayed["weight_decay"] == 0.0 and all(p.ndim == 1 or names[id(p)].endswith(".bias") for p in undecayed["params"])


def test_masked_only_prediction_gives_the_same_losses_as_predicting_everything():
    mae = MaskedAutoencoder(6, 16, 4, 32, 2, 4, 16, 1, 4, endmembers=3)
    weights = {"mse": 1.0, "huber": 1.0, "ssim": 1.0, "sam": 1.0, "physics": 1.0}
    images, valid = torch.randn(2, 6, 16, 16), (torch.rand(2, 16, 4 * 4) > 0.2).float()
    terms = {}
    for predict in ("all", "masked"):
        torch.manual_seed(0)
        terms[predict] = reconstruction_terms(weights, mae(images, 0.75, "gabor", predict=predict), patchify(images, 4), valid, 4, (16, 16), lambda x: x)
    for name, value in terms["all"].items():
        torch.testing.assert_close(terms["masked"][name], value, msg=name)


def test_eval_masks_are_the_same_for_every_recipe_batch_and_rank():
    batch = {"image": torch.randn(4, 5, 8, 8), "valid": torch.ones(4, 8, 8, dtype=torch.bool), "index": torch.tensor([5, 6, 7, 8])}
    masks = {}

    def validate(name: str, task: MAEPretrainer, batch: dict) -> None:
        forward = task.model.forward
        task.model.forward = lambda *args, **kwargs: masks.setdefault(name, forward(*args, **kwargs))
        rng_before = torch.get_rng_state()
        task.validation_step(batch, 3)
        assert torch.equal(torch.get_rng_state(), rng_before)  # training's random stream is left alone

    options = dict(embed_dim=16, depth=1, num_heads=2, decoder_embed_dim=8, decoder_depth=1, decoder_num_heads=2)
    for score in ("gabor", "wavelet"):
        validate(score, MAEPretrainer(tile_info(5), mask_score=score, eval_mask="random", **options), batch)
        validate(f"own {score}", MAEPretrainer(tile_info(5), mask_score=score, eval_mask="own", **options), batch)
    assert torch.equal(masks["gabor"]["mask"], masks["wavelet"]["mask"])
    assert not torch.equal(masks["own gabor"]["mask"], masks["own wavelet"]["mask"])  # each recipe's own score
    # tiles 7 and 8 in another batch (another batch size, or another DDP rank's share): the same masks
    half = {k: v[2:] for k, v in batch.items()}
    validate("half", MAEPretrainer(tile_info(5), mask_score="gabor", eval_mask="random", **options), half)
    validate("own half", MAEPretrainer(tile_info(5), mask_score="gabor", eval_mask="own", **options), half)
    assert torch.equal(masks["half"]["mask"], masks["gabor"]["mask"][2:])
    assert torch.equal(masks["own half"]["mask"], masks["own gabor"]["mask"][2:])
    with pytest.raises(InputError, match="unknown eval_mask"):
        MAEPretrainer(tile_info(5), eval_mask="gabor")


def test_checkpoints_with_the_decoder_keys_of_earlier_versions_load():
    from rsdistill.models.mae import _OLD_DECODER_KEYS, MaskedAutoencoder

    mae = MaskedAutoencoder(4, 8, 2, 16, 1, 2, 8, 1, 2)
    old = {}
    for key, value in mae.state_dict().items():
        for old_name, new_name in _OLD_DECODER_KEYS.items():
            if key.startswith(new_name):
                key = old_name + key[len(new_name):]
                break
        old[key] = value
    assert "decoder_pred.weight" in old and "mask_token" in old
    fresh = MaskedAutoencoder(4, 8, 2, 16, 1, 2, 8, 1, 2)
    fresh.load_state_dict(old)
    assert all(torch.equal(a, b) for a, b in zip(fresh.state_dict().values(), mae.state_dict().values()))
