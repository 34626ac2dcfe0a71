"""Attacks against independent oracles: the constraint set (L2 ball and [0, 1]) checked
directly, the closed-form worst case of a two-class linear model, and the clean loss."""
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings, strategies as st
from torch import nn

from lcnn_core.attacks import fgsm, iterative_fgsm, pgd_l2, robust_accuracy
from lcnn_core.models import small_cnn

SHAPE = (1, 8, 8)


def _cnn(variant="softplus"):
    torch.manual_seed(0)
    model = small_cnn(variant, width=4, in_channels=1, input_size=8)
    return model.eval().double()


def _batch(n=8, seed=1):
    gen = torch.Generator().manual_seed(seed)
    return torch.rand(n, *SHAPE, generator=gen, dtype=torch.float64), torch.arange(n) % 10


def _l2(t):
    return t.flatten(1).norm(dim=1)


def _ce(model, x, y):
    with torch.no_grad():
        return F.cross_entropy(model(x), y, reduction="none")


# ---------------------------------------------------------------- PGD constraint set
@settings(max_examples=12, deadline=None)
@given(eps=st.floats(1e-4, 3.0), seed=st.integers(0, 2 ** 16), random_start=st.booleans(),
       edge=st.sampled_from(["uniform", "binary"]))
def test_pgd_never_leaves_the_eps_ball_or_the_pixel_range(eps, seed, random_start, edge):
    model = _cnn()
    gen = torch.Generator().manual_seed(seed)
    x = torch.rand(4, *SHAPE, generator=gen, dtype=torch.float64)
    if edge == "binary":  # pixels on the box faces, where clamping is active
        x = (x > 0.5).double()
    y = torch.randint(0, 10, (4,), generator=gen)
    x_adv = pgd_l2(model, x, y, eps, steps=5, random_start=random_start, seed=seed)
    assert x_adv.shape == x.shape
    assert (_l2(x_adv - x) <= eps * (1 + 1e-5)).all()
    assert x_adv.min() >= 0 and x_adv.max() <= 1


def test_pgd_loss_is_never_below_the_clean_loss():
    model = _cnn("standard")
    x, y = _batch()
    for random_start in (True, False):
        x_adv = pgd_l2(model, x, y, eps=0.1, random_start=random_start)
        assert (_ce(model, x_adv, y) >= _ce(model, x, y)).all()
    assert (_ce(model, x_adv, y) > _ce(model, x, y)).any()


def test_pgd_with_zero_eps_returns_the_input():
    model = _cnn()
    x, y = _batch(3)
    assert torch.equal(pgd_l2(model, x, y, eps=0.0), x)


def test_pgd_matches_closed_form_worst_case_of_a_two_class_linear_model():
    """For logits W x + b with 2 classes, CE(x + delta, y) = softplus((w_j - w_y).(x + delta)
    + b_j - b_y) is maximised over ||delta|| <= eps by delta = eps (w_j - w_y) / ||w_j - w_y||
    (inputs well inside [0, 1], so the box is inactive)."""
    torch.manual_seed(0)
    lin = nn.Linear(64, 2).double()
    model = nn.Sequential(nn.Flatten(), lin).eval()
    gen = torch.Generator().manual_seed(2)
    x = 0.4 + 0.2 * torch.rand(6, *SHAPE, generator=gen, dtype=torch.float64)
    y = torch.tensor([0, 1, 0, 1, 0, 1])
    eps = 0.05
    with torch.no_grad():
        w = lin.weight
        d = (w[1 - y] - w[y])
        delta = eps * d / d.norm(dim=1, keepdim=True)
    worst = _ce(model, x + delta.view_as(x), y)
    for kwargs in (dict(random_start=False), dict(random_start=True, steps=100)):
        got = _ce(model, pgd_l2(model, x, y, eps, **kwargs), y)
        torch.testing.assert_close(got, worst, rtol=1e-3, atol=0)
        assert (got <= worst * (1 + 1e-9)).all()  # nothing beats the closed form


# ---------------------------------------------------------------- FGSM
def test_fgsm_steps_and_clamps():
    model = _cnn()
    x, y = _batch(4)
    eps = 0.03
    x_inf = fgsm(model, x, y, eps, norm="linf")
    assert (x_inf - x).abs().max() <= eps * (1 + 1e-12) and x_inf.min() >= 0 and x_inf.max() <= 1
    x_l2 = fgsm(model, x, y, eps, norm="l2")
    assert (_l2(x_l2 - x) <= eps * (1 + 1e-9)).all() and x_l2.min() >= 0 and x_l2.max() <= 1
    # with x well inside [0, 1] the L_inf step is exactly eps * sign(grad)
    xc = 0.25 + 0.5 * x
    xg = xc.clone().requires_grad_(True)
    (g,) = torch.autograd.grad(F.cross_entropy(model(xg), y, reduction="sum"), xg)
    torch.testing.assert_close(fgsm(model, xc, y, eps), xc + eps * g.sign())


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_iterative_fgsm_stays_in_the_ball_and_raises_the_loss(norm):
    model = _cnn()
    x, y = _batch(6)
    eps = 0.1
    x_adv = iterative_fgsm(model, x, y, eps, steps=5, norm=norm)
    dist = (x_adv - x).flatten(1).abs().amax(1) if norm == "linf" else _l2(x_adv - x)
    assert (dist <= eps * (1 + 1e-5)).all() and x_adv.min() >= 0 and x_adv.max() <= 1
    assert _ce(model, x_adv, y).mean() > _ce(model, x, y).mean()


# ---------------------------------------------------------------- robust accuracy
def test_robust_accuracy_never_exceeds_clean_accuracy_and_records_settings():
    model = _cnn("standard")
    x, y = _batch(12)
    with torch.no_grad():  # label half the batch with the model's own prediction: clean acc > 0
        pred = model(x).argmax(1)
    y = torch.where(torch.arange(12) % 2 == 0, pred, y)
    batches = [(x[:6], y[:6]), (x[6:], y[6:])]
    out = robust_accuracy(model, batches, eps_list=(0.0, 0.5, 2.0), steps=5, progress=False)
    with torch.no_grad():
        clean = 100.0 * float((model(x).argmax(1) == y).double().mean())
    assert out["clean_accuracy"] == pytest.approx(clean) and out["n_samples"] == 12
    accs = [out["robust_accuracy"][e] for e in (0.0, 0.5, 2.0)]
    assert accs[0] == pytest.approx(clean)
    assert all(a <= clean + 1e-9 for a in accs) and accs[2] <= accs[1] and accs[2] < clean
    s = out["settings"]
    assert s["steps"] == 5 and s["step_size"] == "2.5 * eps / steps" and s["random_start"] is True


# ---------------------------------------------------------------- bad input
def test_bad_inputs_raise_value_error():
    model = _cnn()
    x, y = _batch(4)
    cases = [
        lambda: pgd_l2(model, x, y, eps=-0.1),
        lambda: pgd_l2(model, x, y[:3], eps=0.1),
        lambda: pgd_l2(model, x, torch.tensor([0, 1, 2, 10]), eps=0.1),
        lambda: pgd_l2(model, x[:0], y[:0], eps=0.1),
        lambda: pgd_l2(model, x * 2, y, eps=0.1),                 # pixels outside [0, 1]
        lambda: fgsm(model, x, y, eps=0.1, norm="l1"),
        lambda: iterative_fgsm(model, x, y, eps=-1.0),
        lambda: robust_accuracy(model, [(x, y)], attack="cw", progress=False),
        lambda: robust_accuracy(model, [(x, y)], stepz=3, progress=False),
        lambda: robust_accuracy(model, [], progress=False),
    ]
    for case in cases:
        with pytest.raises(ValueError):
            case()
