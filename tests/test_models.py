"""Whole networks: reference parameter counts, shapes, determinism, the offline interface."""

import pytest
import torch

from bigbigan.config import ModelConfig
from bigbigan.errors import BigBiGANError
from bigbigan.model.networks import BigBiGAN, count_parameters, generator_flops, offline_module

# docs/architecture.md's table ("The model"): trainable parameters of the reference at ch=64.
REFERENCE_COUNTS = {
    (1, True): {"G": 2_081_201, "E": 550_948, "F": 2_368_986, "H": 42_113, "J": 70_273},
    (1, False): {"G": 2_011_249, "E": 550_948, "F": 2_366_426, "H": 42_113, "J": 70_273},
    (3, True): {"G": 2_082_353, "E": 554_084, "F": 2_370_266, "H": 42_113, "J": 70_273},
    (3, False): {"G": 2_012_401, "E": 554_084, "F": 2_367_706, "H": 42_113, "J": 70_273},
}


@pytest.mark.parametrize(("channels", "conditional"), list(REFERENCE_COUNTS))
def test_reference_parameter_counts(channels, conditional):
    model = BigBiGAN(ModelConfig(channels=channels, conditional=conditional))
    counts = {name: count_parameters(getattr(model, name)) for name in "GEFHJ"}
    assert counts == REFERENCE_COUNTS[(channels, conditional)]


def test_generator_flops_match_design():
    assert generator_flops(ModelConfig()) / 1e9 == pytest.approx(0.656, abs=5e-4)


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("conditional", [True, False])
def test_forward_shapes(channels, conditional):
    cfg = ModelConfig(channels=channels, ch=8, conditional=conditional)
    model = BigBiGAN(cfg)
    z, x = torch.randn(3, 100), torch.rand(3, channels, 32, 32)
    y = torch.tensor([0, 4, 9]) if conditional else None
    images = model.G(z, y)
    assert images.shape == (3, channels, 32, 32)
    assert images.min() >= 0 and images.max() <= 1
    assert model.E(x).shape == (3, 100)
    features, score = model.F(x, y)
    assert features.shape == (3, 32) and score.shape == (3,)
    assert all(s.shape == (3,) for s in model.scores(x, z, y))


def test_eval_is_deterministic_and_changes_no_buffer():
    model = BigBiGAN(ModelConfig(ch=8)).train()
    model.G(torch.randn(4, 100), torch.arange(4))  # move running stats off their init
    model.eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    z, y = torch.randn(4, 100), torch.arange(4)
    a, b = model.G(z, y), model.G(z, y)
    e1, e2 = model.E(a), model.E(a)
    assert torch.equal(a, b) and torch.equal(e1, e2)
    model.scores(a, e1, y)
    for key, value in model.state_dict().items():
        assert torch.equal(value, before[key]), key


def test_initialisation_follows_the_reference():
    model = BigBiGAN(ModelConfig(ch=8, init="normal"))
    assert model.G.embed.weight.abs().max() <= 0.05
    dense = model.G.dense.parametrizations.weight.original
    assert dense.abs().max() <= 0.04 and 0.01 < dense.std() < 0.03
    assert torch.count_nonzero(model.G.dense.bias) == 0
    attention = model.G.attention.f.parametrizations.weight.original
    assert attention.std() > 0.1  # Glorot-uniform, not std 0.02
    orthogonal = BigBiGAN(ModelConfig(ch=8, init="orthogonal"))
    w = orthogonal.H.blocks[1].fc1.parametrizations.weight.original
    torch.testing.assert_close(w @ w.T, torch.eye(w.shape[0]), atol=1e-5, rtol=0)


def test_offline_generator_matches_and_has_no_spectral_norm_left():
    model = BigBiGAN(ModelConfig(ch=8)).train()
    model.G(torch.randn(4, 100), torch.arange(4))
    model.eval()
    offline = offline_module(model)
    x1, x2 = torch.randn(5, 100), torch.tensor([0, 1, 2, 3, 9], dtype=torch.int32)
    torch.testing.assert_close(
        offline(x1, x2), model.G(x1, x2.long()).permute(0, 2, 3, 1), atol=1e-6, rtol=0
    )
    assert not any("parametrizations" in k or "_u" in k for k in offline.state_dict())
    assert not any(m.training for m in offline.modules())
    encoder = offline_module(model, encoder=True)
    images = torch.rand(2, 32, 32, 1)
    torch.testing.assert_close(encoder(images), model.E(images.permute(0, 3, 1, 2)))
    # the original keeps working after the copy was folded
    model.G(x1, x2.long())


@pytest.mark.parametrize(
    ("field", "value"),
    [("z_dim", 99), ("ch", 12), ("channels", 2), ("init", "xavier"), ("output_sn", "rows")],
)
def test_bad_config_is_a_clear_error(field, value):
    with pytest.raises(
        BigBiGANError, match=field.replace("_", "-") if field != "channels" else "channels"
    ):
        ModelConfig(**{field: value})


def test_output_layer_spectral_norm_layout_recorded_and_legacy_checkpoints_keep_theirs(tmp_path):
    """New configs use the reference's transposed layout; a checkpoint.json written before the
    field existed loads with the old conv layout and gives the same images."""
    import json

    from bigbigan.training import checkpoint

    assert ModelConfig().output_sn == "transposed"
    new = BigBiGAN(ModelConfig(ch=8))
    assert new.G.conv_out.parametrizations.weight[0]._u.shape == (8,)  # rows: C_in
    old = BigBiGAN(ModelConfig(ch=8, output_sn="conv")).eval()
    assert old.G.conv_out.parametrizations.weight[0]._u.shape == (1,)  # rows: C_out
    checkpoint.save(tmp_path, old)
    doc = json.loads((tmp_path / "checkpoint.json").read_text())
    del doc["model"]["output_sn"]
    (tmp_path / "checkpoint.json").write_text(json.dumps(doc))
    loaded, ckpt = checkpoint.load_model(tmp_path)
    assert ckpt.model.output_sn == "conv"
    z, y = torch.randn(4, 100), torch.arange(4)
    with torch.no_grad():
        assert torch.equal(loaded.G(z, y), old.G(z, y))
