"""Layer-level behaviour: shapes, spectral norm, conditional batch norm, attention, RevNet."""

import pytest
import torch
from torch import nn

from bigbigan.model.blocks import (
    ConditionalBatchNorm,
    DenseResBlock,
    DownBlock,
    ResBlock,
    ReversibleBlock,
    SelfAttention,
    UpBlock,
    conv3x3,
    sn,
)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def test_block_shapes():
    x, c = torch.randn(2, 16, 8, 8), torch.randn(2, 5)
    assert UpBlock(16, 8, 5)(x, c).shape == (2, 8, 16, 16)
    assert DownBlock(16, 32)(x).shape == (2, 32, 4, 4)
    assert ResBlock(16)(x).shape == (2, 16, 8, 8)
    assert SelfAttention(16)(x).shape == (2, 16, 8, 8)
    assert ReversibleBlock(16)(x).shape == (2, 16, 8, 8)
    assert DenseResBlock(7, 12)(torch.randn(3, 7)).shape == (3, 12)


def test_spectral_norm_normalises_the_largest_singular_value():
    layer = sn(nn.Linear(20, 30))
    layer.parametrizations.weight.original.data.mul_(7)
    for _ in range(50):  # one power iteration per training forward
        layer(torch.randn(1, 20))
    assert torch.linalg.matrix_norm(layer.weight, ord=2).item() == pytest.approx(1.0, abs=1e-3)


def test_spectral_norm_is_frozen_in_eval_mode():
    layer = conv3x3(4, 4).eval()
    buffers = {k: v.clone() for k, v in layer.state_dict().items()}
    x = torch.randn(2, 4, 5, 5)
    first = layer(x)
    second = layer(x)
    assert torch.equal(first, second)
    for key, value in layer.state_dict().items():
        assert torch.equal(value, buffers[key]), key


def test_spectral_norm_iterates_in_training_mode():
    layer = conv3x3(4, 4).train()
    u = layer.parametrizations.weight[0]._u.clone()
    layer(torch.randn(2, 4, 5, 5))
    assert not torch.equal(layer.parametrizations.weight[0]._u, u)


def test_conditional_batch_norm_uses_gamma_as_the_gain():
    bn = ConditionalBatchNorm(3, 2).train()
    with torch.no_grad():
        bn.gamma.weight.zero_()
        bn.gamma.bias.fill_(2.0)
        bn.beta.weight.zero_()
        bn.beta.bias.fill_(0.5)
    x = torch.randn(8, 3, 4, 4) * 3 + 1
    out = bn(x, torch.randn(8, 2))
    normalised = (x - x.mean((0, 2, 3), keepdim=True)) / torch.sqrt(
        x.var((0, 2, 3), unbiased=False, keepdim=True) + 1e-5
    )
    torch.testing.assert_close(out, 2.0 * normalised + 0.5)


def test_conditional_batch_norm_running_statistics_decay_0_9():
    bn = ConditionalBatchNorm(2, 1).train()
    x = torch.randn(16, 2, 3, 3) + 4.0
    bn(x, torch.zeros(16, 1))
    torch.testing.assert_close(bn.bn.running_mean, 0.1 * x.mean((0, 2, 3)))
    assert bn.bn.eps == 1e-5


def test_attention_with_zero_gamma_is_identity():
    attention = SelfAttention(16)
    x = torch.randn(2, 16, 4, 4)
    assert torch.equal(attention(x), x)
    with torch.no_grad():
        attention.gamma.fill_(1.0)
    assert not torch.allclose(attention(x), x)


def test_attention_rows_are_a_softmax_over_positions():
    attention = SelfAttention(8)
    x = torch.randn(1, 8, 3, 3)
    f, g = attention.f(x).flatten(2), attention.g(x).flatten(2)
    weights = torch.softmax(g.transpose(1, 2) @ f, dim=-1)
    torch.testing.assert_close(weights.sum(-1), torch.ones(1, 9))


def test_reversible_block_is_invertible():
    block = ReversibleBlock(8).eval()
    x = torch.randn(2, 8, 5, 5)
    out = block(x)
    x2, y1 = out.chunk(2, dim=1)
    x1 = y1 - x2 - block.unit(x2)
    torch.testing.assert_close(torch.cat([x1, x2], 1), x)


def test_transposed_layout_spectral_norm_matches_the_reference_matrix_svd():
    """The reference's output layer is a stride-1 transposed conv: TF's spectral norm reshapes
    its kernel (3, 3, C_out, C_in) to a (3*3*C_out, C_in) matrix. Ours (dim=1) converges to that
    matrix's largest singular value, not to the ordinary conv's (C_out, C_in*3*3)."""
    conv = sn(nn.Conv2d(16, 3, 3, padding=1, bias=False), dim=1)
    kernel = conv.parametrizations.weight.original.detach()  # (C_out, C_in, 3, 3)
    reference = kernel.permute(2, 3, 0, 1).reshape(3 * 3 * 3, 16)  # TF (kh, kw, out, in) layout
    sigma_reference = torch.linalg.svdvals(reference)[0]
    sigma_conv = torch.linalg.svdvals(kernel.reshape(3, 16 * 9))[0]
    assert abs(sigma_reference - sigma_conv) > 0.05 * sigma_reference  # the layouts differ
    for _ in range(200):  # one power iteration per training forward
        conv(torch.randn(1, 16, 4, 4))
    sigma = (kernel / conv.weight.detach()).mean()  # W / sigma: the ratio is sigma
    assert sigma.item() == pytest.approx(sigma_reference.item(), rel=1e-4)
    v = conv.parametrizations.weight[0]._v
    assert v.shape == (3 * 3 * 3,)  # the reference's u (TF) lives in k*k*C_out space
