"""Soundness of the provable bound: measured exact input gradient / Hessian norms of the
per-sample loss never exceed it, over random and adversarially searched inputs."""
import math

import pytest
import torch
import torch.nn.functional as F

from lcnn_core.bound import bound_profile, loss_bound, paper_proxy
from lcnn_core.models import resnet18, small_cnn
from lcnn_core.oracles import exact_input_hessian_norm

SHAPE = (1, 8, 8)


def _model(kind, variant, trained):
    torch.manual_seed(0)
    if kind == "cnn":
        model = small_cnn(variant, width=3, in_channels=1, input_size=8)
    else:
        model = resnet18(variant, width=2, in_channels=1, input_size=8)
    if trained:  # brief training moves BN statistics, beta and gamma away from init
        opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
        for _ in range(10):
            x = torch.rand(32, *SHAPE)
            loss = F.cross_entropy(model(x), (x.mean((1, 2, 3)) * 20).long() % 10)
            opt.zero_grad(); loss.backward(); opt.step()
    model.eval()
    return model.double()


def _search_inputs(model, n_random, n_ascent, steps=15):
    """Random inputs in [0, 1] (and wider), plus inputs found by gradient ascent on ||grad_x l||^2."""
    gen = torch.Generator().manual_seed(0)
    xs = [torch.rand(n_random, *SHAPE, generator=gen, dtype=torch.float64),
          3 * torch.randn(n_random, *SHAPE, generator=gen, dtype=torch.float64)]
    x = torch.rand(n_ascent, *SHAPE, generator=gen, dtype=torch.float64)
    y = torch.randint(0, 10, (n_ascent,), generator=gen)
    for _ in range(steps):
        x.requires_grad_(True)
        (g,) = torch.autograd.grad(F.cross_entropy(model(x), y, reduction="sum"), x, create_graph=True)
        (step,) = torch.autograd.grad(g.pow(2).sum(), x)
        x = (x + 0.1 * step / step.flatten(1).norm(dim=1).clamp_min(1e-12).view(-1, 1, 1, 1)).detach()
    xs.append(x)
    return torch.cat(xs)


@pytest.mark.parametrize("kind", ["cnn", "resnet"])
@pytest.mark.parametrize("variant", ["lcnn", "standard", "softplus"])
@pytest.mark.parametrize("trained", [False, True])
def test_measured_gradient_and_hessian_never_exceed_the_bound(kind, variant, trained):
    model = _model(kind, variant, trained)
    grad_bound, hess_bound = loss_bound(model, SHAPE)
    xs = _search_inputs(model, n_random=6, n_ascent=6)
    ys = torch.arange(len(xs)) % 10
    xg = xs.clone().requires_grad_(True)
    (g,) = torch.autograd.grad(F.cross_entropy(model(xg), ys, reduction="sum"), xg)
    assert g.flatten(1).norm(dim=1).max().item() <= grad_bound
    for x, y in zip(xs, ys):
        assert exact_input_hessian_norm(model, x, y) <= hess_bound


def test_bound_is_tight_for_a_single_spectrally_normalised_linear_layer():
    """For CE o (x -> W x) the gradient bound sqrt(2) ||W|| is attained in the limit of a
    confident wrong prediction; the measured gradient must approach it from below."""
    from lcnn_core.layers import SNLinear
    torch.manual_seed(0)
    lin = SNLinear(4, 2).double()
    model = torch.nn.Sequential(torch.nn.Flatten(), lin).eval()
    grad_bound, _ = loss_bound(model, (1, 2, 2))
    w = lin.weight / lin.sigma
    direction = (w[1] - w[0]) / (w[1] - w[0]).norm()
    x = (50 * direction).view(1, 1, 2, 2).requires_grad_(True)  # logit 1 >> logit 0, label 0
    (g,) = torch.autograd.grad(F.cross_entropy(model(x), torch.tensor([0])), x)
    assert g.norm().item() <= grad_bound
    # ||p - e_0|| -> sqrt(2) and W^T (p - e_0) -> (w1 - w0): ratio is ||w1 - w0|| / (sqrt2 ||W||)
    assert g.norm().item() >= 0.99 * (w[1] - w[0]).norm().item()


def test_profile_ends_at_the_loss_bound():
    model = _model("resnet", "lcnn", trained=False)
    rows = bound_profile(model, SHAPE)
    grad_bound, hess_bound = loss_bound(model, SHAPE)
    assert rows[-1]["layer"] == "CrossEntropy"
    assert math.isclose(rows[-1]["cum_lipschitz"], grad_bound, rel_tol=1e-9)
    assert math.isclose(rows[-1]["cum_curvature"], hess_bound, rel_tol=1e-9)
    assert all(r["cum_curvature"] >= 0 for r in rows)


def test_paper_proxy_at_initialisation():
    model = resnet18("lcnn", width=2)
    proxy = paper_proxy(model)
    assert math.isclose(proxy["sum_beta"], 17 * 5.0, rel_tol=1e-6)  # 17 activations, beta = 5
    assert math.isclose(proxy["prod_gamma"], 10.0 ** 20, rel_tol=1e-4)  # 20 clipped BNs, gamma = 10
    assert math.isnan(paper_proxy(resnet18("standard", width=2))["mean_beta"])
