"""Input-geometry metrics against independent oracles: dense input Hessians
(torch.func.hessian + torch.linalg.eigvalsh, float64), central finite differences,
one-sample runs (the block-diagonal argument), and closed forms for linear models."""
import warnings

import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from lcnn_core.metrics import (evaluate_geometry, gradient_robustness, input_gradient_norm,
                               input_hessian_norm, normalized_curvature)
from lcnn_core.models import small_cnn

SHAPE = (1, 8, 8)


# ---------------------------------------------------------------- models and oracles
def _small_cnn(variant):
    torch.manual_seed(0)
    model = small_cnn(variant, width=4, in_channels=1, input_size=8)
    model.eval()  # first: converges the LCNN spectral-norm estimate
    return model.double()


def _relu_like_cnn():
    """A plain conv net with ReLU-like softplus (beta = 100), biases, no batch norm."""
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1), nn.Softplus(beta=100),
        nn.Conv2d(4, 8, 3, stride=2, padding=1), nn.Softplus(beta=100),
        nn.Flatten(), nn.Linear(8 * 4 * 4, 10),
    )
    return model.eval().double()


MODELS = {
    "standard": lambda: _small_cnn("standard"),
    "lcnn": lambda: _small_cnn("lcnn"),
    "softplus": lambda: _small_cnn("softplus"),
    "relu_like": _relu_like_cnn,
}


def _batch(n=8, seed=1, dtype=torch.float64):
    gen = torch.Generator().manual_seed(seed)
    return torch.rand(n, *SHAPE, generator=gen, dtype=dtype), torch.arange(n) % 10


def _f(model, x, y, output):
    """f for one input x (C x H x W): CE at the true label or the true-class logit."""
    logits = model(x.unsqueeze(0))
    if output == "loss":
        return F.cross_entropy(logits, y.view(1))
    if output == "margin":  # written independently of metrics.per_sample_output
        others = torch.cat([logits[0, :y], logits[0, y + 1:]])
        return logits[0, y] - others.max()
    return logits[0, y]


def dense_hessian_norms(model, x, y, output="loss"):
    """Oracle: max |eigvalsh| of the dense Hessian from torch.func.hessian, per sample."""
    norms = []
    for xi, yi in zip(x, y):
        h = torch.func.hessian(lambda inp: _f(model, inp, yi, output))(xi)
        n = xi.numel()
        norms.append(torch.linalg.eigvalsh(h.reshape(n, n)).abs().max())
    return torch.stack(norms).detach()


# ---------------------------------------------------------------- Hessian norm
@pytest.mark.parametrize("name", list(MODELS))
def test_lanczos_hessian_norm_within_1_percent_of_dense_eigvalsh_on_every_sample(name):
    model = MODELS[name]()
    x, y = _batch()
    exact = dense_hessian_norms(model, x, y)
    est = input_hessian_norm(model, x, y)
    assert est.method == "lanczos" and est.hvps <= 30
    assert ((est.norm / exact - 1).abs() <= 0.01).all(), (est.norm / exact)
    assert (est.norm <= exact * (1 + 1e-6)).all()  # Ritz values never exceed ||H||
    assert (est.iterations >= 1).all() and (est.iterations <= est.hvps).all()


@pytest.mark.parametrize("method", ["reference", "power"])
@pytest.mark.parametrize("name", list(MODELS))
def test_power_readouts_are_lower_bounds_on_dense_norm(name, method):
    model = MODELS[name]()
    x, y = _batch()
    exact = dense_hessian_norms(model, x, y)
    est = input_hessian_norm(model, x, y, method=method)
    assert (est.norm <= exact * (1 + 1e-6)).all()
    if method == "reference":
        assert (est.iterations == 10).all() and est.hvps == 10


@pytest.mark.parametrize("output", ["logit", "margin"])
def test_lanczos_on_a_logit_output_matches_dense_eigvalsh(output):
    model = _small_cnn("softplus")
    x, y = _batch(4)
    exact = dense_hessian_norms(model, x, y, output=output)
    est = input_hessian_norm(model, x, y, output=output)
    assert ((est.norm / exact - 1).abs() <= 0.01).all()


def test_margin_gradient_matches_finite_differences_and_the_geometry_row():
    model = _small_cnn("softplus")
    x, y = _batch(4)
    est = input_hessian_norm(model, x, y, output="margin")
    g = input_gradient_norm(model, x, y, output="margin")
    for i in range(2):  # directional finite difference along a random unit vector
        u = torch.randn_like(x[i])
        u /= u.norm()
        h = 1e-5
        fd = (_f(model, x[i] + h * u, y[i], "margin") - _f(model, x[i] - h * u, y[i], "margin")) / (2 * h)
        xi = x[i].clone().requires_grad_(True)
        (gi,) = torch.autograd.grad(_f(model, xi, y[i], "margin"), xi)
        assert float(fd) == pytest.approx(float((gi * u).sum()), rel=1e-5, abs=1e-9)
        assert float(gi.norm()) == pytest.approx(float(g[i]), rel=1e-9)
    row = evaluate_geometry(model, [(x, y)], hessian_methods=("lanczos",), output="margin", progress=False)
    assert row["output"] == "margin"
    assert row["hess_norm_lanczos_mean"] == pytest.approx(float(est.norm.mean()), rel=1e-6)


def test_batched_hessian_norm_equals_one_sample_runs_with_same_start_vectors():
    """Block-diagonal argument: sample i's answer does not depend on the rest of the batch."""
    model = _small_cnn("lcnn")
    x, y = _batch(6)
    start = torch.randn(x.shape, generator=torch.Generator().manual_seed(3), dtype=x.dtype)
    for method in ("lanczos", "power", "reference"):
        batched = input_hessian_norm(model, x, y, method=method, start=start)
        for i in range(len(x)):
            single = input_hessian_norm(model, x[i:i + 1], y[i:i + 1], method=method,
                                        start=start[i:i + 1])
            torch.testing.assert_close(batched.norm[i:i + 1], single.norm, rtol=1e-9, atol=0)
            assert batched.iterations[i] == single.iterations[0]


def test_converged_norm_does_not_depend_on_seeded_start_vectors():
    model = _small_cnn("softplus")
    x, y = _batch(6)
    a = input_hessian_norm(model, x, y, seed=0).norm
    b = input_hessian_norm(model, x, y, seed=1).norm
    torch.testing.assert_close(a, b, rtol=2e-3, atol=0)
    torch.testing.assert_close(a, input_hessian_norm(model, x, y, seed=0).norm)  # reproducible


def test_hessian_norm_float32_agrees_with_float64():
    model64 = _small_cnn("standard")
    model32 = _small_cnn("standard").float()
    x, y = _batch()
    h64 = input_hessian_norm(model64, x, y).norm
    h32 = input_hessian_norm(model32, x.float(), y)
    assert h32.norm.dtype == torch.float32
    assert ((h32.norm.double() / h64 - 1).abs() <= 2e-3).all()


def test_hessian_of_a_linear_models_logit_is_exactly_zero():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 3)).double().eval()
    x, y = _batch(5)
    y = y % 3
    for method in ("lanczos", "power", "reference"):
        est = input_hessian_norm(model, x, y, method=method, output="logit")
        assert (est.norm == 0).all() and not est.norm.isnan().any()


def test_linear_model_cross_entropy_hessian_matches_closed_form():
    """For z = W x + b, hess_x CE = W^T (diag(p) - p p^T) W: its norm by eigvalsh."""
    torch.manual_seed(0)
    lin = nn.Linear(64, 5).double()
    model = nn.Sequential(nn.Flatten(), lin).eval()
    x, y = _batch(4)
    y = y % 5
    est = input_hessian_norm(model, x, y).norm
    with torch.no_grad():
        p = torch.softmax(model(x), dim=1)
        W = lin.weight
        exact = torch.stack([torch.linalg.eigvalsh(W.T @ (torch.diag(pi) - torch.outer(pi, pi)) @ W).abs().max()
                             for pi in p])
    torch.testing.assert_close(est, exact, rtol=1e-6, atol=0)


# ---------------------------------------------------------------- gradient norm and C_f
def test_input_gradient_norm_matches_central_finite_differences():
    model = _small_cnn("softplus")
    x, y = _batch(3)
    norms = input_gradient_norm(model, x, y)
    h, n = 1e-5, x[0].numel()
    basis = torch.eye(n, dtype=x.dtype).reshape(n, *SHAPE)
    for i in range(len(x)):
        with torch.no_grad():
            up = F.cross_entropy(model(x[i] + h * basis), y[i].repeat(n), reduction="none")
            down = F.cross_entropy(model(x[i] - h * basis), y[i].repeat(n), reduction="none")
        fd = (up - down) / (2 * h)
        torch.testing.assert_close(norms[i], fd.norm(), rtol=1e-6, atol=0)


def test_normalized_curvature_is_hessian_over_gradient_plus_eps():
    g = torch.tensor([0.0, 1.0, 2.0], dtype=torch.float64)
    h = torch.tensor([1.0, 3.0, 4.0], dtype=torch.float64)
    torch.testing.assert_close(normalized_curvature(g, h), h / (g + 1e-6))
    torch.testing.assert_close(normalized_curvature(g, h, eps=0.5), h / (g + 0.5))


# ---------------------------------------------------------------- gradient robustness
def test_gradient_robustness_is_exactly_zero_for_a_linear_models_logit():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 10)).double().eval()
    x, y = _batch(4)
    table = gradient_robustness(model, x, y, output="logit")
    assert (table["relative_change"] == 0).all() and (table["first_order"] == 0).all()


def test_gradient_robustness_table_layout():
    model = _small_cnn("lcnn")
    x, y = _batch(3)
    table = gradient_robustness(model, x, y, magnitudes=(1e-3, 1e-2), n_draws=2)
    assert list(table.columns) == ["sample", "magnitude", "draw", "relative_change", "first_order"]
    assert len(table) == 3 * 2 * 2
    assert set(table["magnitude"]) == {1e-3, 1e-2} and set(table["draw"]) == {0, 1}
    assert (table["relative_change"] > 0).all()


def test_gradient_robustness_first_order_prediction_bounds_small_perturbations():
    """||grad f(x + delta) - grad f(x)|| = ||H delta|| + O(m^2) <= m ||H||: the ratio to
    m * C_f stays <= 1 (+ O(m)) as m -> 0, and first_order is m * C_f from the Hessian norm."""
    model = _small_cnn("softplus")
    x, y = _batch(4)
    hess = input_hessian_norm(model, x, y)
    table = gradient_robustness(model, x, y, magnitudes=(1e-5, 1e-4, 1e-3), hessian=hess)
    ratio = table["relative_change"] / table["first_order"]
    assert ratio.max() <= 1.5 and ratio.min() > 0
    c_f = normalized_curvature(input_gradient_norm(model, x, y), hess).numpy()
    expected = table["magnitude"] * c_f[table["sample"].to_numpy()]
    assert (table["first_order"] - expected).abs().max() <= 1e-12 * expected.max()


# ---------------------------------------------------------------- table row
def test_evaluate_geometry_row_matches_direct_calls_and_truncates():
    model = _small_cnn("standard")
    x, y = _batch(10)
    batches = [(x[:4], y[:4]), (x[4:8], y[4:8]), (x[8:], y[8:])]
    row, samples = evaluate_geometry(model, batches, max_samples=6, progress=False, return_samples=True)
    assert row["n_samples"] == 6
    assert isinstance(samples, pd.DataFrame) and len(samples) == 6
    g = input_gradient_norm(model, x[:6], y[:6])
    torch.testing.assert_close(torch.tensor(samples["grad_norm"].to_numpy()), g)
    assert row["grad_norm_mean"] == pytest.approx(float(g.mean()))
    assert row["grad_norm_std"] == pytest.approx(float(g.std(unbiased=False)))
    exact = dense_hessian_norms(model, x[:6], y[:6]).numpy()
    assert (abs(samples["hess_norm_lanczos"] / exact - 1) <= 0.01).all()
    assert (samples["hess_norm_reference"] <= exact * (1 + 1e-6)).all()
    assert row["curvature_lanczos_mean"] == pytest.approx(samples["curvature_lanczos"].mean())
    with torch.no_grad():
        acc = 100.0 * float((model(x[:6]).argmax(1) == y[:6]).double().mean())
    assert row["accuracy"] == pytest.approx(acc)


# ---------------------------------------------------------------- bad input and modes
def test_bad_inputs_raise_value_error():
    model = _small_cnn("standard")
    x, y = _batch(4)
    cases = [
        lambda: input_gradient_norm(model, x, y[:3]),                       # mismatched sizes
        lambda: input_hessian_norm(model, x, torch.tensor([0, 1, 2, 10])),  # label >= 10 outputs
        lambda: input_hessian_norm(model, x, torch.tensor([0, -1, 2, 3])),  # negative label
        lambda: input_gradient_norm(model, x[:0], y[:0]),                   # empty batch
        lambda: input_hessian_norm(model, x, y, method="eigen"),            # unknown method
        lambda: input_hessian_norm(model, x, y, output="probability"),      # unknown output
        lambda: input_gradient_norm(model, (x * 255).to(torch.uint8), y),   # not float pixels
        lambda: evaluate_geometry(model, [(x, y)], hessian_methods=("lobpcg",), progress=False),
        lambda: evaluate_geometry(model, [], progress=False),               # no data
        lambda: gradient_robustness(model, x, y, magnitudes=(-1.0,)),
    ]
    for case in cases:
        with pytest.raises(ValueError):
            case()


def test_model_in_train_mode_is_measured_in_eval_mode_with_a_warning_and_restored():
    model = _small_cnn("standard")
    x, y = _batch(4)
    expected = input_gradient_norm(model, x, y)
    model.train()
    with pytest.warns(UserWarning, match="train mode"):
        got = input_gradient_norm(model, x, y)
    assert model.training and all(m.training for m in model.modules())
    torch.testing.assert_close(got, expected)
    model.eval()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        input_hessian_norm(model, x, y)


def test_the_two_dense_oracles_agree():
    """oracles.dense_input_hessian_norm (chunked double backward, the benchmark's) against
    exact_input_hessian_norm (torch.func.hessian, the tests')."""
    from lcnn_core.oracles import dense_input_hessian_norm, exact_input_hessian_norm
    torch.manual_seed(0)
    model = small_cnn("standard", width=2, in_channels=1, input_size=6).double().eval()
    x = torch.rand(1, 1, 6, 6, dtype=torch.float64)
    y = torch.tensor([3])
    assert dense_input_hessian_norm(model, x, y, chunk=7) == pytest.approx(exact_input_hessian_norm(model, x[0], y), rel=1e-10)
