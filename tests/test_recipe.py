"""Recipe options (docs/quality.md): each off by default, recorded in checkpoint.json, and each
doing what it says: stochastic encoder, CBN 1 + gamma, label dropout, EMA, learning rates,
encoder width, E also predicting y."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch

from bigbigan.cli.main import main
from bigbigan.config import ModelConfig, TrainConfig, from_dict, to_dict
from bigbigan.errors import BigBiGANError
from bigbigan.model.blocks import ConditionalBatchNorm
from bigbigan.model.networks import BigBiGAN, count_parameters, offline_module
from bigbigan.training import checkpoint
from bigbigan.training import loop as train

OPTIONS = {
    "stochastic_encoder": True,
    "cbn_gain": "one_plus_gamma",
    "label_dropout": 0.5,
    "ema": True,
    "encoder_ch": 16,
    "encoder_label_loss": 0.5,
}
TRAIN_OPTIONS = {"lr_d": 4e-4, "encoder_lr_mult": 5.0, "encoder_warmup": 3, "ema_decay": 0.99}
TINY = {"dataset": "digits", "batch_size": 16, "seed": 3}


@pytest.fixture(autouse=True)
def _one_thread():
    torch.set_num_threads(1)


def run(out, steps, resume=False, **options):
    cfg = TrainConfig(**TINY, **TRAIN_OPTIONS, steps=steps)
    model_cfg = train.model_config_for("digits", ch=8, **options)
    return train.train(cfg, model_cfg, out, resume=resume, progress=False)


def run_of(model, cfg=None):
    """A fresh training state for `model`: `cfg`'s optimizers (default recipe), noise seed 0."""
    optimizers = train.make_optimizers(model, cfg or TrainConfig())
    return train.Run(model, *optimizers, np.random.default_rng(0))


@pytest.fixture(scope="module")
def full_run(tmp_path_factory):
    return run(tmp_path_factory.mktemp("all") / "r", steps=4, **OPTIONS)


def test_defaults_are_the_reference_recipe():
    model, recipe = ModelConfig(), TrainConfig()
    assert (model.stochastic_encoder, model.cbn_gain, model.label_dropout, model.ema) == (
        False,
        "gamma",
        0.0,
        False,
    )
    assert model.encoder_ch is None and model.encoder_label_loss == 0.0
    assert BigBiGAN(model).E.classifier is None
    assert (recipe.lr_d, recipe.encoder_lr_mult, recipe.encoder_warmup) == (None, 1.0, 0)


def test_configs_round_trip_and_old_json_keeps_old_behaviour():
    model = ModelConfig(ch=8, **OPTIONS)
    recipe = TrainConfig(**TRAIN_OPTIONS)
    assert from_dict(ModelConfig, json.loads(json.dumps(to_dict(model)))) == model
    assert from_dict(TrainConfig, json.loads(json.dumps(to_dict(recipe)))) == recipe
    new = {"lr_d", "encoder_lr_mult", "encoder_warmup", "ema_decay"}
    old_train = {k: v for k, v in to_dict(TrainConfig()).items() if k not in new}
    assert from_dict(TrainConfig, old_train) == TrainConfig()
    old_model = {
        k: v for k, v in to_dict(ModelConfig()).items() if k not in {*OPTIONS, "output_sn"}
    }
    assert from_dict(ModelConfig, old_model) == ModelConfig(output_sn="conv")


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"label_dropout": 1.0}, "--label-dropout"),
        ({"label_dropout": 0.5, "conditional": False}, "needs a conditional"),
        ({"cbn_gain": "two"}, "--cbn-gain"),
        ({"encoder_label_loss": -1.0}, "--encoder-label-loss must be >= 0, found -1.0"),
        ({"encoder_label_loss": 1.0, "conditional": False}, "--encoder-label-loss needs"),
        ({"encoder_ch": 12}, "--encoder-ch must be a positive multiple of 8, found 12"),
        ({"ch": 4}, "--ch must be a positive multiple of 8, found 4"),
    ],
)
def test_bad_model_options(overrides, message):
    with pytest.raises(BigBiGANError, match=message):
        ModelConfig(**overrides)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"encoder_lr_mult": 0.0}, "--encoder-lr-mult"),
        ({"lr_d": -1.0}, "--lr-d"),
        ({"ema_decay": 1.0}, "--ema-decay"),
        ({"encoder_warmup": -1}, "--encoder-warmup must be >= 0, found -1"),
    ],
)
def test_bad_train_options(overrides, message):
    with pytest.raises(BigBiGANError, match=message):
        TrainConfig(**overrides)


def test_stochastic_encoder_samples_in_training_and_gives_mu_in_eval_and_export():
    cfg = ModelConfig(ch=8, stochastic_encoder=True)
    model = BigBiGAN(cfg)
    assert count_parameters(model.E) == count_parameters(BigBiGAN(ModelConfig(ch=8)).E) + (
        cfg.z_dim * (4 * cfg.ch + 1)  # the head's last layer also gives sigma's pre-activation
    )
    x = torch.rand(4, 1, 32, 32)
    model.train()
    a, b = model.E(x), model.E(x)
    assert a.shape == (4, 100) and not torch.equal(a, b)
    model.eval()
    with torch.no_grad():
        mu = model.E.head(model.E.features(x))[:, :100]
        torch.testing.assert_close(model.E(x), mu)
        exported = offline_module(model, encoder=True)(x.permute(0, 2, 3, 1))
    torch.testing.assert_close(exported, mu)


def test_stochastic_sample_spread_is_softplus_sigma():
    model = BigBiGAN(ModelConfig(ch=8, stochastic_encoder=True)).train()
    with torch.no_grad():
        model.E.head[-1].weight.zero_()
        model.E.head[-1].bias.copy_(torch.cat([torch.full((100,), 3.0), torch.zeros(100)]))
        z = model.E(torch.rand(512, 1, 32, 32))
    assert z.mean().item() == pytest.approx(3.0, abs=0.02)
    assert z.std().item() == pytest.approx(np.log(2.0), rel=0.03)  # softplus(0) = ln 2


def test_encoder_width_scales_only_the_encoder():
    narrow, wide = BigBiGAN(ModelConfig(ch=8)), BigBiGAN(ModelConfig(ch=8, encoder_ch=32))
    assert (
        BigBiGAN(ModelConfig(ch=8, encoder_ch=8)).state_dict().keys() == narrow.state_dict().keys()
    )
    for name in ("G", "F", "H", "J"):
        assert count_parameters(getattr(wide, name)) == count_parameters(getattr(narrow, name))
    assert count_parameters(wide.E) == count_parameters(BigBiGAN(ModelConfig(ch=32)).E)
    x = torch.rand(3, 1, 32, 32)
    with torch.no_grad():
        assert wide.E.features(x).shape == (3, 2 * 32)  # the pooled trunk: 2 * encoder_ch
        exported = offline_module(wide.eval(), encoder=True)(x.permute(0, 2, 3, 1))
    assert exported.shape == (3, 100)


def test_conditional_batch_norm_one_plus_gain():
    cbn = ConditionalBatchNorm(3, 5, one_plus_gain=True).train()
    x, c = torch.randn(8, 3, 4, 4), torch.randn(8, 5)
    normalised = torch.nn.functional.batch_norm(x, None, None, training=True, eps=1e-5)
    expected = normalised * (1 + cbn.gamma(c))[:, :, None, None] + cbn.beta(c)[:, :, None, None]
    torch.testing.assert_close(cbn(x, c), expected)


def test_label_dropout_adds_a_null_class_and_drops_the_given_fraction():
    cfg = ModelConfig(ch=8, label_dropout=0.25)
    model = BigBiGAN(cfg)
    assert model.G.embed.num_embeddings == 11 and model.F.embed.num_embeddings == 11
    run_state = run_of(model)
    y = torch.arange(4000) % 10
    dropped = train.drop_labels(run_state, y)
    null = dropped == 10
    assert null.float().mean().item() == pytest.approx(0.25, abs=0.02)
    assert torch.equal(dropped[~null], y[~null])
    # without dropout nothing is drawn: the noise stream is the reference recipe's
    plain = BigBiGAN(ModelConfig(ch=8))
    state = run_of(plain)
    assert train.drop_labels(state, y) is y
    assert state.noise_rng.random() == np.random.default_rng(0).random()


def test_encoder_label_loss_trains_a_classifier_of_z_that_export_leaves_out():
    """The classifier starts at zero, leaves every other layer's initialisation as without it,
    learns from the step's cross-entropy, and is not part of the exported encoder."""
    torch.manual_seed(0)
    cfg = ModelConfig(ch=8, encoder_label_loss=2.0)
    model = BigBiGAN(cfg)
    torch.manual_seed(0)
    without = BigBiGAN(ModelConfig(ch=8)).state_dict()
    for key, value in model.state_dict().items():  # the same draws: the head draws nothing
        if key.startswith("E.classifier."):
            assert not value.any(), key
        else:
            assert torch.equal(value, without[key]), key
    assert model.state_dict().keys() - without.keys() == {
        "E.classifier.weight",
        "E.classifier.bias",
    }
    run_state = run_of(model)
    x, y = torch.rand(8, 1, 32, 32), torch.arange(8) % 10
    with torch.no_grad():
        expected = torch.nn.functional.cross_entropy(model.E.classifier(model.E(x)), y)
    before = model.E.classifier.weight.clone()
    losses = train.train_step(run_state, x, y, TrainConfig(d_steps=1))
    assert losses["encoder_label_ce"] == pytest.approx(expected.item(), rel=1e-5)
    assert not torch.equal(model.E.classifier.weight, before)  # the loss reaches it
    model.eval()
    with torch.no_grad():
        exported = offline_module(model, encoder=True)(x.permute(0, 2, 3, 1))
    torch.testing.assert_close(exported, model.E(x))  # z, not the logits
    plain_run = run_of(BigBiGAN(ModelConfig(ch=8)))
    assert "encoder_label_ce" not in train.train_step(plain_run, x, y, TrainConfig(d_steps=1))


def test_optimizers_learning_rates():
    model = BigBiGAN(ModelConfig(ch=8))
    opt_d, opt_ge = train.make_optimizers(model, TrainConfig())
    assert [g["lr"] for g in opt_d.param_groups] == [2e-4]
    assert [g["lr"] for g in opt_ge.param_groups] == [2e-4]  # one group, as before the option
    opt_d, opt_ge = train.make_optimizers(model, TrainConfig(lr_d=4e-4, encoder_lr_mult=5))
    assert [g["lr"] for g in opt_d.param_groups] == [4e-4]
    assert [g["lr"] for g in opt_ge.param_groups] == [2e-4, pytest.approx(1e-3)]
    e_params = {id(p) for p in model.E.parameters()}
    assert {id(p) for p in opt_ge.param_groups[1]["params"]} == e_params
    _, opt_ge = train.make_optimizers(model, TrainConfig(encoder_warmup=4))
    assert [g["lr"] for g in opt_ge.param_groups] == [2e-4, 2e-4]  # E apart, to be warmed up


@pytest.mark.parametrize(("step", "fraction"), [(0, 0.25), (2, 0.75), (3, 1.0), (50, 1.0)])
def test_encoder_warmup_scales_only_encoder_lr_by_the_step(step, fraction):
    cfg = TrainConfig(encoder_lr_mult=2.0, encoder_warmup=4)
    state = run_of(BigBiGAN(ModelConfig(ch=8)), cfg)
    state.step = step
    train.warm_up_encoder(state, cfg)
    assert [g["lr"] for g in state.opt_ge.param_groups] == [2e-4, pytest.approx(4e-4 * fraction)]


def test_encoder_warmup_shrinks_the_first_encoder_step_and_nothing_else():
    """Step one with a warm-up of 10 moves E a tenth as far (Adam's first step is lr x sign of
    the gradient) and leaves G and the discriminators exactly as without it."""
    x, y = torch.rand(8, 1, 32, 32), torch.arange(8) % 10
    moved, after = {}, {}
    for warmup in (0, 10):
        torch.manual_seed(0)
        model = BigBiGAN(ModelConfig(ch=8))
        cfg = TrainConfig(d_steps=1, encoder_warmup=warmup, encoder_lr_mult=1.5)
        state = run_of(model, cfg)
        before = [p.detach().double() for p in model.E.parameters()]
        train.train_step(state, x, y, cfg)
        moved[warmup] = [
            p.detach().double() - b for p, b in zip(model.E.parameters(), before, strict=True)
        ]
        after[warmup] = {k: v for k, v in model.state_dict().items() if not k.startswith("E.")}
    for tenth, full in zip(moved[10], moved[0], strict=True):
        torch.testing.assert_close(tenth, full / 10, rtol=0, atol=2e-7)  # float32 rounding
    assert max(full.abs().max() for full in moved[0]) > 1e-4  # E did move at full rate
    for key, value in after[0].items():
        assert torch.equal(after[10][key], value), key


def test_ema_update_averages_parameters_and_copies_buffers():
    model = BigBiGAN(ModelConfig(ch=8, ema=True))
    assert count_parameters(model) == count_parameters(BigBiGAN(ModelConfig(ch=8)))
    for average, live in model.ema_pairs():  # starts as a copy
        for a, b in zip(average.state_dict().values(), live.state_dict().values(), strict=True):
            assert torch.equal(a, b)
    before = model.G_ema.dense.bias.clone()
    with torch.no_grad():
        model.G.dense.bias.add_(1.0)
        model.G.bn.running_mean.add_(2.0)
    train.update_ema(model, step=1000, decay=0.9)
    torch.testing.assert_close(model.G_ema.dense.bias, before + 0.1)
    assert torch.equal(model.G_ema.bn.running_mean, model.G.bn.running_mean)
    train.update_ema(model, step=0, decay=0.999)  # warm-up: decay (1 + 0) / (10 + 0) = 0.1
    torch.testing.assert_close(model.G_ema.dense.bias, 0.1 * (before + 0.1) + 0.9 * (before + 1))
    assert model.generator is model.G_ema and model.encoder is model.E_ema


def test_offline_modules_use_the_ema_copies():
    torch.manual_seed(0)
    model = BigBiGAN(ModelConfig(ch=8, ema=True)).eval()
    with torch.no_grad():  # not spectral-normed weights: those are scale-free
        model.G_ema.bn.bias.add_(0.5)
        model.E_ema.head[-1].bias.add_(1.0)
    z, y, x = torch.randn(2, 100), torch.tensor([1, 2]), torch.rand(2, 1, 32, 32)
    with torch.no_grad():
        images = offline_module(model)(z, y.int()).permute(0, 3, 1, 2)
        torch.testing.assert_close(images, model.G_ema(z, y))
        latents = offline_module(model, encoder=True)(x.permute(0, 2, 3, 1))
        torch.testing.assert_close(latents, model.E_ema(x))
        torch.testing.assert_close(latents, model.E(x) + 1.0)  # the live E, shifted


def test_all_options_train_record_and_resume_exactly(tmp_path, full_run):
    ckpt = checkpoint.read(full_run)
    for key, value in OPTIONS.items():
        assert getattr(ckpt.model, key) == value
    for key, value in TRAIN_OPTIONS.items():
        assert getattr(ckpt.train, key) == value
    tensors = checkpoint.load_tensors(ckpt, checkpoint.MODEL_FILE)
    assert not torch.equal(tensors["G_ema.dense.bias"], tensors["G.dense.bias"])  # averaged
    out = run(tmp_path / "r", steps=2, **OPTIONS)
    run(out, steps=4, resume=True, **OPTIONS)
    resumed, whole = checkpoint.read(out).directory, checkpoint.read(full_run).directory
    for name in (checkpoint.MODEL_FILE, checkpoint.STATE_FILE):
        assert (resumed / name).read_bytes() == (whole / name).read_bytes(), name


def test_ema_leaves_the_live_training_unchanged(tmp_path):
    """The EMA copies are built under a forked RNG and never feed back: G, E and the
    discriminators train exactly as without them."""
    plain = checkpoint.load_tensors(checkpoint.read(run(tmp_path / "a", 2)), "model.safetensors")
    with_ema = run(tmp_path / "b", 2, ema=True)
    tensors = checkpoint.load_tensors(checkpoint.read(with_ema), "model.safetensors")
    for key, value in plain.items():
        assert torch.equal(tensors[key], value), key


def test_cli_flags_reach_the_checkpoint(tmp_path):
    out = tmp_path / "r"
    argv = ["train", "--dataset", "digits", "--ch", "8", "--batch-size", "16", "--steps", "1"]
    argv += ["--stochastic-encoder", "--label-dropout", "0.3", "--ema", "--ema-decay", "0.99"]
    argv += ["--cbn-gain", "one_plus_gamma", "--lr-d", "1e-4", "--encoder-lr-mult", "2"]
    argv += ["--encoder-warmup", "5"]
    argv += ["--output-sn", "conv", "--encoder-ch", "16", "--encoder-label-loss", "0.5"]
    argv += ["--out", str(out)]
    assert main(argv) == 0
    ckpt = checkpoint.read(out)
    expected_model = {"stochastic_encoder": True, "label_dropout": 0.3, "ema": True}
    expected_model |= {"cbn_gain": "one_plus_gamma", "output_sn": "conv", "encoder_ch": 16}
    expected_model |= {"encoder_label_loss": 0.5}
    assert {k: getattr(ckpt.model, k) for k in expected_model} == expected_model
    assert ckpt.train is not None
    expected_train = {"lr_d": 1e-4, "encoder_lr_mult": 2.0, "encoder_warmup": 5, "ema_decay": 0.99}
    assert {k: getattr(ckpt.train, k) for k in expected_train} == expected_train


def test_every_train_flag_is_checked_on_resume_or_is_about_the_process():
    """A recipe flag missing from resume.py would be silently ignored by `--resume`: the run
    would continue as started while the command line said otherwise."""
    from bigbigan.cli.main import _assemble
    from bigbigan.training import resume

    dests = {action.dest for action in _assemble()[1]["train"]._actions}
    checked = {*resume._MODEL_FLAGS, *resume._TRAIN_FLAGS, *resume._FREE_FLAGS, "unconditional"}
    process = {"help", "verbose", "out", "resume", "device", "sync_bn"}
    process |= {"keep_checkpoints", "keep_every"}  # which checkpoints stay on disk
    process |= {"nproc", "steps", "epochs"}  # the schedule, which --resume may extend
    assert dests - checked == process
    fields = {f.name for f in dataclasses.fields(TrainConfig)} - {"betas", "d_steps"}
    fields -= {"steps", "epochs"}  # the schedule again
    assert fields <= {*resume._TRAIN_FLAGS.values(), *resume._FREE_FLAGS.values()}
