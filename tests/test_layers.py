"""The LCNN layers against independent oracles (autograd, dense SVD)."""
import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings, strategies as st

from lcnn_core.layers import (CenteredSoftplus, ClippedBatchNorm2d, SNConv2d, SNLinear,
                              conv_operator_norm)
from lcnn_core.models import small_cnn
from oracles import dense_matrix


def test_centered_softplus_zero_at_origin_and_slope_in_unit_interval():
    act = CenteredSoftplus().double()
    assert act(torch.zeros(3, dtype=torch.float64)).abs().max() < 1e-12
    x = torch.linspace(-3, 3, 601, dtype=torch.float64, requires_grad=True)
    (slope,) = torch.autograd.grad(act(x).sum(), x)
    assert (slope > 0).all() and (slope < 1).all()


@pytest.mark.parametrize("beta", [0.1, 5.0, 50.0])
def test_centered_softplus_second_derivative_at_most_b_over_4(beta):
    act = CenteredSoftplus(beta).double()
    x = torch.linspace(-2, 2, 4001, dtype=torch.float64, requires_grad=True)
    (g,) = torch.autograd.grad(act(x).sum(), x, create_graph=True)
    (h,) = torch.autograd.grad(g.sum(), x)
    assert h.max() <= act.curvature() * (1 + 1e-9)
    assert h.max() >= 0.99 * act.curvature()  # attained at x = 0: the bound is tight


def test_centered_softplus_tends_to_half_identity_as_beta_vanishes():
    act = CenteredSoftplus(beta=1e-8).double()
    x = torch.linspace(-1, 1, 101, dtype=torch.float64)
    assert torch.allclose(act(x), x / 2, atol=2e-4)


def test_gradient_flows_to_log_beta():
    act = CenteredSoftplus()
    act(torch.randn(10)).pow(2).sum().backward()
    assert act.log_beta.grad is not None and act.log_beta.grad.abs() > 0


@pytest.mark.parametrize("gamma", [0.05, 10.0])
def test_clipped_batchnorm_lipschitz_matches_power_iteration_on_jacobian(gamma):
    torch.manual_seed(0)
    bn = ClippedBatchNorm2d(4, gamma=gamma).double()
    bn.running_var.copy_(torch.tensor([0.5, 2.0, 4.0, 9.0]))
    bn.running_mean.uniform_(-1, 1)
    bn.eval()
    x0 = torch.randn(1, 4, 3, 3, dtype=torch.float64)
    u = torch.randn_like(x0)
    for _ in range(100):  # power iteration on J^T J via jvp/vjp
        _, ju = torch.func.jvp(bn, (x0,), (u,))
        _, vjp = torch.func.vjp(bn, x0)
        (u,) = vjp(ju)
        u = u / u.norm()
    _, ju = torch.func.jvp(bn, (x0,), (u,))
    expected = min(1 / math.sqrt(0.5 + bn.eps), gamma)
    assert abs(ju.norm().item() - expected) < 1e-6 * expected
    assert abs(bn.lipschitz() - expected) < 1e-6 * expected


@settings(max_examples=25, deadline=None)
@given(cin=st.integers(1, 3), cout=st.integers(1, 4), k=st.sampled_from([1, 2, 3, 5]),
       stride=st.sampled_from([1, 2]), padding=st.sampled_from([0, 1]), n=st.integers(5, 8),
       seed=st.integers(0, 10_000))
def test_conv_operator_norm_matches_dense_svd(cin, cout, k, stride, padding, n, seed):
    w = torch.randn(cout, cin, k, k, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    mat = dense_matrix(lambda x: F.conv2d(x, w, stride=stride, padding=padding), (cin, n, n))
    exact = torch.linalg.svdvals(mat).max().item()
    sigma, _ = conv_operator_norm(w, (n, n), stride, padding, iters=5000, tol=1e-13)
    assert abs(sigma.item() - exact) <= 1e-4 * exact


def test_reshaped_kernel_spectral_norm_is_not_the_operator_norm():
    """torch.nn.utils.spectral_norm normalises W.reshape(cout, -1): a different, smaller number."""
    w = torch.randn(8, 4, 3, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    mat = dense_matrix(lambda x: F.conv2d(x, w, padding=1), (4, 8, 8))
    exact = torch.linalg.svdvals(mat).max().item()
    conv = torch.nn.utils.spectral_norm(torch.nn.Conv2d(4, 8, 3, padding=1, bias=False).double(), n_power_iterations=200)
    conv.weight_orig.data.copy_(w)
    conv.train()
    conv(torch.zeros(1, 4, 8, 8, dtype=torch.float64))  # runs the power iteration
    sn_sigma = torch.linalg.svdvals(w.reshape(8, -1)).max().item()
    normalised = dense_matrix(lambda x: F.conv2d(x, conv.weight.detach(), padding=1), (4, 8, 8))
    assert sn_sigma < 0.9 * exact
    assert torch.linalg.svdvals(normalised).max().item() > 1.1  # not a valid Lipschitz-1 layer


def _trained_lcnn_small():
    torch.manual_seed(0)
    model = small_cnn("lcnn", width=4, in_channels=1, input_size=8)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    for _ in range(5):
        loss = F.cross_entropy(model(torch.rand(16, 1, 8, 8)), torch.randint(0, 10, (16,)))
        opt.zero_grad(); loss.backward(); opt.step()
    return model


def test_spectrally_normalised_layers_have_true_norm_at_most_one_in_eval():
    model = _trained_lcnn_small()
    model.eval()
    convs = [m for m in model.modules() if isinstance(m, SNConv2d)]
    assert len(convs) == 3
    for conv in convs:
        mat = dense_matrix(lambda x: conv.double()(x), (conv.in_channels, *conv.input_size))
        conv.float()
        true = torch.linalg.svdvals(mat).max().item()
        assert true <= 1.002, true
        assert true >= 0.998, true
    lin = [m for m in model.modules() if isinstance(m, SNLinear)][0]
    assert torch.linalg.svdvals((lin.weight / lin.sigma).double()).max().item() <= 1 + 1e-6


def test_under_converged_estimate_never_undershoots_the_true_norm():
    """sigma from 15 iterations is a lower estimate, so weight / sigma has norm >= 1
    (this is why eval mode re-converges the estimate)."""
    torch.manual_seed(1)
    conv = SNConv2d(4, 8, 3, input_size=8, padding=1, init_iters=15).double()
    conv.sigma.copy_(conv_operator_norm(conv.weight, (8, 8), 1, 1, iters=15, tol=0.0)[0])
    mat = dense_matrix(lambda x: F.conv2d(x, conv.weight / conv.sigma, padding=1), (4, 8, 8))
    assert torch.linalg.svdvals(mat).max().item() >= 1 - 1e-9


def test_sn_conv_rejects_an_input_size_it_was_not_built_for():
    conv = SNConv2d(3, 4, 3, input_size=8, padding=1)
    with pytest.raises(ValueError, match="built for inputs of size"):
        conv(torch.zeros(1, 3, 16, 16))
