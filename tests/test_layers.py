"""The LCNN layers against independent oracles (autograd, dense SVD)."""
import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings, strategies as st

from lcnn_core.layers import (CenteredSoftplus, ClippedBatchNorm2d, Conv2d, SNConv2d, SNLinear,
                              conv_operator_norm)
from lcnn_core.models import small_cnn
from lcnn_core.oracles import dense_matrix


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
    sigma, _ = conv_operator_norm(w, (n, n), stride, padding)
    # an estimate from above (sqrt(theta + residual)), high by at most tol / 2 = 5e-7
    assert exact * (1 - 1e-12) <= sigma.item() <= exact * (1 + 1e-6)


@pytest.mark.parametrize("cout, size, seed, gap", [(1, 3, 5, 1.0e-4), (2, 6, 379, 1.0e-3)])
def test_lanczos_is_exact_where_power_iteration_stalls(cout, size, seed, gap):
    """Convs whose top two singular values nearly coincide (found by hypothesis: 0.94287 vs
    0.94194, and 1.21283 vs 1.21082): 500 power steps stay short by `gap` relative, which would
    make a "normalised" layer's norm exceed 1; Lanczos lands on the dense SVD from above."""
    torch.manual_seed(seed)
    w = Conv2d(1, cout, 3, input_size=size, padding=1).weight.detach().double()
    mat = dense_matrix(lambda x: F.conv2d(x, w, padding=1), (1, size, size))
    exact = torch.linalg.svdvals(mat).max().item()
    u = torch.randn(1, 1, size, size, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    for _ in range(500):
        u = F.conv_transpose2d(F.conv2d(u, w, padding=1), w, padding=1)
        u = u / u.norm()
    power = F.conv2d(u, w, padding=1).norm().item()
    assert power < exact * (1 - gap)
    sigma, _ = conv_operator_norm(w, (size, size), 1, 1)
    assert exact * (1 - 1e-12) <= sigma.item() <= exact * (1 + 1e-6)


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
        mat = dense_matrix(lambda x: F.conv2d(x, conv.weight.double() / conv.sigma.double(), stride=conv.stride,
                                              padding=conv.padding), (conv.in_channels, *conv.input_size))
        true = torch.linalg.svdvals(mat).max().item()
        assert 1 - 1e-5 <= true <= 1.0, true  # sigma is rounded up, so never above 1
    lin = [m for m in model.modules() if isinstance(m, SNLinear)][0]
    assert torch.linalg.svdvals(lin.weight.double() / lin.sigma.double()).max().item() <= 1.0


def test_training_estimate_undershoots_until_eval_converges_it():
    """One power step per training forward gives sigma = ||W u|| <= ||W||, a normalised norm
    >= 1 (this is why eval mode re-converges the estimate, from above)."""
    torch.manual_seed(1)
    conv = SNConv2d(4, 8, 3, input_size=8, padding=1).double()
    mat = dense_matrix(lambda x: F.conv2d(x, conv.weight.detach(), padding=1), (4, 8, 8))
    exact = torch.linalg.svdvals(mat).max().item()
    for _ in range(3):
        conv(torch.zeros(1, 4, 8, 8, dtype=torch.float64))
    assert conv.sigma.item() <= exact
    conv.eval()
    assert exact <= conv.sigma.item() <= exact * (1 + 1e-6)


def test_sn_conv_rejects_an_input_size_it_was_not_built_for():
    conv = SNConv2d(3, 4, 3, input_size=8, padding=1)
    with pytest.raises(ValueError, match="built for inputs of size"):
        conv(torch.zeros(1, 3, 16, 16))


def test_deferred_norms_give_the_same_model_and_skip_lanczos_for_a_checkpoint(monkeypatch):
    """model_for_shape builds under layers.deferred_norms and runs the initial Lanczos where the
    model lives: the same state as building it directly; with init=False no Lanczos runs at all."""
    from lcnn_core import layers
    from lcnn_core.config import resolve
    from lcnn_core.models import resnet18
    from lcnn_core.train import model_for_shape
    cfg = resolve(dict(variant="lcnn", arch="resnet18", width=4, dataset="cifar10-jpeg"))
    torch.manual_seed(0)
    direct = resnet18("lcnn", width=4).state_dict()
    torch.manual_seed(0)
    built = model_for_shape(cfg, (3, 32, 32), 10, device="cpu").state_dict()
    assert direct.keys() == built.keys() and all(torch.equal(direct[k], built[k]) for k in direct)
    calls = []
    real = layers.conv_operator_norm
    monkeypatch.setattr(layers, "conv_operator_norm", lambda *a, **k: calls.append(1) or real(*a, **k))
    model_for_shape(cfg, (3, 32, 32), 10, init=False)
    assert not calls
    n_sn = sum(isinstance(m, layers.SNConv2d) for m in built_model_modules(cfg))
    assert n_sn == 20
    model_for_shape(cfg, (3, 32, 32), 10)
    assert len(calls) == n_sn


def built_model_modules(cfg):
    from lcnn_core.layers import deferred_norms
    from lcnn_core.models import resnet18
    with deferred_norms():
        return list(resnet18("lcnn", width=cfg["width"]).modules())
