"""The strong attack (AutoAttack's APGD-CE + APGD-T from pyautoattack) against oracles: the
exact L2 robust accuracy of a linear classifier, our PGD on a trained model, and the flags on
models built to mask gradients."""
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from lcnn_core.apgd import apgd_correct, attack_flags, more_effort_check, pgd_correct, strong_robustness
from lcnn_core.models import small_cnn

N_PIX, K = 64, 10


def _linear(scale=3.0, seed=0):
    torch.manual_seed(seed)
    lin = nn.Linear(N_PIX, K)
    with torch.no_grad():
        lin.weight.mul_(scale)
    return nn.Sequential(nn.Flatten(), lin).eval(), lin


def _exact_distance(lin, x, y):
    """Smallest L2 perturbation that makes a linear classifier wrong, ignoring the box:
    min_{j != y} (z_y - z_j) / ||w_y - w_j||, and the inf-norm of that optimal perturbation."""
    W, b = lin.weight.detach().double(), lin.bias.detach().double()
    xf = x.flatten(1).double()
    z = xf @ W.T + b
    diff = W[y][:, None, :] - W[None]                        # B x K x n: w_y - w_j
    dist = (z.gather(1, y[:, None]) - z) / diff.norm(dim=2)
    dist[torch.arange(len(y)), y] = float("inf")
    d, j = dist.min(1)
    step = d[:, None] * diff[torch.arange(len(y)), j] / diff[torch.arange(len(y)), j].norm(dim=1, keepdim=True)
    return d, step.abs().amax(1)


def _linear_data(model, n=120, seed=2):
    gen = torch.Generator().manual_seed(seed)
    x = 0.4 + 0.2 * torch.rand(n, 1, 8, 8, generator=gen)   # well inside [0, 1]
    with torch.no_grad():
        y = model(x).argmax(1)
    y[::6] = (y[::6] + 1) % K                                 # some clean errors too
    return x, y


def test_apgd_matches_the_exact_robust_accuracy_of_a_linear_classifier():
    model, lin = _linear()
    x, y = _linear_data(model)
    d, step_inf = _exact_distance(lin, x, y)
    correct = d > 0
    eps_list = [float(e) for e in d[correct].quantile(torch.tensor([0.2, 0.5, 0.8], dtype=torch.float64))]
    assert float(step_inf[correct].max()) < 0.4 * 1.5          # the box [0, 1] rarely binds
    out = strong_robustness(model, [(x[:64], y[:64]), (x[64:], y[64:])], eps_list, apgd_steps=40,
                            progress=False)
    assert out["n_samples"] == len(y)
    assert out["clean_accuracy"] == pytest.approx(100.0 * float(correct.double().mean()))
    one = 100.0 / len(y)
    for row, e in zip(out["table"], eps_list):
        exact = 100.0 * float((d > e).double().mean())
        assert row["apgd_t"] == pytest.approx(exact, abs=one + 1e-9)    # the library finds the optimum
        assert row["pgd"] >= exact - 1e-9 and row["apgd_ce"] >= exact - 1e-9  # nothing beats it
        assert row["strongest"] == pytest.approx(exact, abs=one + 1e-9)
        assert row["strongest"] <= min(row["pgd"], row["apgd_ce"], row["apgd_t"]) + 1e-9


def test_library_is_at_least_as_strong_as_our_pgd_on_a_trained_cnn():
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(0)
    centres = torch.rand(K, 1, 8, 8, generator=gen)
    y = torch.arange(200) % K
    x = (centres[y] + 0.15 * torch.randn(200, 1, 8, 8, generator=gen)).clamp(0, 1)
    model = small_cnn("softplus", width=4, in_channels=1, input_size=8)
    opt = torch.optim.Adam(model.parameters(), lr=0.02)
    for _ in range(60):
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        opt.step()
    model.eval()
    out = strong_robustness(model, [(x[:100], y[:100]), (x[100:], y[100:])], [0.3, 1.0],
                            apgd_targets=3, apgd_steps=50, progress=False)
    assert out["clean_accuracy"] > 80
    one = 100.0 / 200
    for row in out["table"]:
        assert row["apgd_t"] <= row["pgd"] + one               # within one image of noise
    assert out["table"][-1]["strongest"] < out["table"][0]["strongest"]


def test_saturated_logits_fool_pgd_but_not_apgd_t_and_raise_the_pgd_flag():
    """Logits x 1000: the cross-entropy gradient underflows to 0 at correct points (masking for
    CE attacks); the targeted DLR loss is scale-free, so APGD-T still finds the exact answer."""
    model, lin = _linear(scale=3.0)
    x, y = _linear_data(model)
    d, _ = _exact_distance(lin, x, y)
    with torch.no_grad():
        lin.weight.mul_(1000.0)
        lin.bias.mul_(1000.0)
    e = float(d[d > 0].quantile(0.8))
    out = strong_robustness(model, [(x, y)], [e], progress=False)
    row = out["table"][0]
    exact = 100.0 * float((d > e).double().mean())
    assert row["apgd_t"] == pytest.approx(exact, abs=100.0 / len(y) + 1e-9)
    assert row["pgd"] > exact + 20
    assert attack_flags(out)["pgd_weak"]


class _Quantised(nn.Module):
    """Rounds the input to 4 grey levels first: zero gradient everywhere (a masking defence)."""

    def __init__(self, inner):
        super().__init__()
        self.inner = inner

    def forward(self, x):
        return self.inner(torch.round(x * 3) / 3)


def test_a_model_with_zero_gradients_gets_a_flat_curve_and_the_masking_flag():
    inner, _ = _linear()
    model = _Quantised(inner).eval()
    x, y = _linear_data(inner)
    with torch.no_grad():
        y = model(x).argmax(1)
    with pytest.warns(Warning, match="zero gradient"):    # the library itself warns too
        out = strong_robustness(model, [(x[:60], y[:60])], [0.05, 0.2], apgd_steps=10, apgd_targets=2,
                                progress=False)
    flags = attack_flags(out)
    assert flags["flat_curve"] and flags["masking_suspected"] and not flags["reaches_near_zero"]

    honest, lin = _linear()
    x, y = _linear_data(honest)
    d, _ = _exact_distance(lin, x, y)
    out = strong_robustness(honest, [(x, y)], [float(d.max()) + 0.01], apgd_steps=20, progress=False)
    flags = attack_flags(out)
    assert out["table"][0]["strongest"] == 0.0
    assert flags["reaches_near_zero"] and not flags["flat_curve"] and not flags["masking_suspected"]


def test_more_effort_does_not_lower_the_exact_number_and_rng_state_is_restored():
    model, lin = _linear()
    x, y = _linear_data(model, n=60)
    d, _ = _exact_distance(lin, x, y)
    e = float(d[d > 0].median())
    base_settings = dict(apgd_steps=20, apgd_targets=3)
    base = strong_robustness(model, [(x, y)], [e], progress=False, **base_settings)["table"][0]["strongest"]
    state = torch.get_rng_state()
    check = more_effort_check(model, [(x, y)], e, base, **base_settings)
    assert torch.equal(state, torch.get_rng_state())
    assert check["ok"] and abs(check["lowered_by"]) <= check["tolerance"] + 1e-9
    assert check["settings"]["apgd"]["steps"] == 40 and check["settings"]["pgd"]["restarts"] == 2


def test_per_image_correctness_and_zero_eps():
    model, _ = _linear()
    x, y = _linear_data(model, n=30)
    with torch.no_grad():
        clean = model(x).argmax(1) == y
    assert torch.equal(pgd_correct(model, x, y, 0.0), clean)
    ce, t = apgd_correct(model, x, y, 0.0)
    assert torch.equal(ce, clean) and torch.equal(t, clean)
    ce, t = apgd_correct(model, x, y, 0.5, steps=20)
    assert not (t & ~ce).any() and not (ce & ~clean).any()   # the cascade only removes images
    with pytest.raises(ValueError):
        strong_robustness(model, [(x, y)], [], progress=False)
