"""The fast training path against the eager reference it replaces (issue: training speed).

The fused centered softplus and the batch norm with the clip folded into its kernel must
give the composite formulas' values, first and second derivatives; so must every
training variant's loss and parameter gradients, compiled or not.
"""
import math
import warnings

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings, strategies as st

from lcnn_core import layers
from lcnn_core.config import TRAINING_VARIANTS, resolve
from lcnn_core.layers import CenteredSoftplus, ClippedBatchNorm2d, SNConv2d, centered_softplus, frozen
from lcnn_core.models import small_cnn
from lcnn_core.oracles import bn_then_factor_forward as reference_bn_forward
from lcnn_core.oracles import composite_softplus_forward as reference_act_forward
from lcnn_core.train import compiled, model_for_shape, training_loss


def composite_softplus(x, b):
    """The formula as written in STUDY.md, differentiated op by op by autograd."""
    return (F.softplus(b * x) - math.log(2.0)) / b


def test_fused_softplus_passes_gradcheck_and_gradgradcheck():
    gen = torch.Generator().manual_seed(0)
    x = (3 * torch.randn(2, 3, 4, 4, generator=gen, dtype=torch.float64)).requires_grad_(True)
    b = torch.tensor(2.5, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(centered_softplus, (x, b))
    assert torch.autograd.gradgradcheck(centered_softplus, (x, b))


@settings(max_examples=30, deadline=None)
@given(beta=st.floats(0.05, 200.0), scale=st.floats(0.01, 30.0), seed=st.integers(0, 2**16))
def test_fused_softplus_matches_the_composite_formula(beta, scale, seed):
    """(below beta = 0.05 both formulas lose digits to (softplus(b x) - log 2) / b cancelling,
    and their second derivatives in b part at 1e-6 relative: a conditioning effect, not an error)"""
    gen = torch.Generator().manual_seed(seed)
    x = (scale * torch.randn(64, generator=gen, dtype=torch.float64)).requires_grad_(True)
    b = torch.tensor(beta, dtype=torch.float64, requires_grad=True)
    w = torch.randn(64, generator=gen, dtype=torch.float64)
    fast = centered_softplus(x, b)
    torch.testing.assert_close(fast, composite_softplus(x, b), rtol=1e-12, atol=1e-12)
    # The fused backward uses the exact slope sigmoid(b x); torch's softplus is linear above
    # b x = 20 with autograd slope exactly 1 there (a 2e-9 relative difference, below float32's
    # resolution), so the derivatives are checked against the formula without that threshold.
    t = b * x
    exact = (t.clamp_min(0) + torch.log1p(torch.exp(-t.abs())) - math.log(2.0)) / b  # stable, no threshold
    g_fast = torch.autograd.grad((fast * w).sum(), (x, b), create_graph=True)
    g_ref = torch.autograd.grad((exact * w).sum(), (x, b), create_graph=True)
    for a, r in zip(g_fast, g_ref):
        torch.testing.assert_close(a, r, rtol=1e-8, atol=1e-10)
    h_fast = torch.autograd.grad(g_fast[0].pow(2).sum() + g_fast[1], (x, b))
    h_ref = torch.autograd.grad(g_ref[0].pow(2).sum() + g_ref[1], (x, b))
    for a, r in zip(h_fast, h_ref):
        # e^{-20}-sized terms of the recomputed y; (softplus(b x) - log 2) / b cancels as b -> 0
        torch.testing.assert_close(a, r, rtol=1e-6, atol=1e-8)


def test_fused_softplus_handles_channels_last_and_eval_uses_the_composite():
    act = CenteredSoftplus(3.0)
    x = torch.randn(4, 8, 5, 5).contiguous(memory_format=torch.channels_last).requires_grad_(True)
    y = act(x)
    (gx,) = torch.autograd.grad(y.sum(), x)
    torch.testing.assert_close(gx, torch.sigmoid(act.b.detach() * x.detach()))
    act.eval()
    torch.testing.assert_close(act(x), y)


@pytest.mark.parametrize("gamma", [0.5, 10.0])
def test_folded_clip_matches_plain_batch_norm_times_the_factor(gamma):
    torch.manual_seed(0)
    fast, ref = ClippedBatchNorm2d(6, gamma=gamma), ClippedBatchNorm2d(6, gamma=gamma)
    ref.load_state_dict(fast.state_dict())
    for step in range(3):
        x = 2 + 3 * torch.randn(5, 6, 4, 4)
        out_f, out_r = fast(x), reference_bn_forward(ref, x)
        torch.testing.assert_close(out_f, out_r, rtol=1e-5, atol=1e-6)
        g = torch.randn_like(x)
        (gf,) = torch.autograd.grad((out_f * g).sum(), fast.log_gamma)
        (gr,) = torch.autograd.grad((out_r * g).sum(), ref.log_gamma)
        torch.testing.assert_close(gf, gr, rtol=1e-4, atol=1e-6)
    for name, buf in fast.named_buffers():
        torch.testing.assert_close(buf, dict(ref.named_buffers())[name])
    fast.eval(), ref.eval()
    torch.testing.assert_close(fast(x), reference_bn_forward(ref, x), rtol=1e-5, atol=1e-6)


def test_folded_clip_double_backward_matches_the_reference():
    """GradReg's double backward through the clipped batch norm, repeated: an expanded
    (stride-0) weight made batch norm's double backward read uninitialised memory."""
    gen = torch.Generator().manual_seed(0)
    x0 = torch.randn(16, 3, 9, 9, generator=gen).contiguous(memory_format=torch.channels_last)
    results = []
    for forward in (ClippedBatchNorm2d.forward, reference_bn_forward) * 3:
        torch.manual_seed(0)
        bn = ClippedBatchNorm2d(3, gamma=0.3)
        x = x0.clone().requires_grad_(True)
        (gx,) = torch.autograd.grad(forward(bn, x).pow(3).sum(), x, create_graph=True)
        results.append(torch.autograd.grad(gx.pow(2).sum(), (x, bn.log_gamma)))
    for got in results:
        for a, r in zip(got, results[1]):
            torch.testing.assert_close(a, r, rtol=1e-4, atol=1e-4)


def _variant_grads(variant, monkeypatch=None, compile_model=False):
    cfg = resolve(dict(variant=variant, arch="small_cnn", width=4, dataset="mnist5k", adv_steps=2))
    torch.manual_seed(0)
    model = model_for_shape(cfg, (1, 12, 12), 10)
    net = compiled(model, dict(cfg, compile="on"), torch.device("cpu")) if compile_model else model
    gen = torch.Generator().manual_seed(1)
    x, y = torch.rand(8, 1, 12, 12, generator=gen), torch.randint(0, 10, (8,), generator=gen)
    net.train()
    loss, logits = training_loss(net, x, y, cfg)
    grads = torch.autograd.grad(loss, [p for p in model.parameters()])
    if compile_model:
        assert net._fn, "torch.compile fell back to eager"
    return loss.detach(), logits.detach(), grads, [b.clone() for b in model.buffers()]


@pytest.mark.parametrize("variant", sorted(TRAINING_VARIANTS))
def test_every_variant_matches_the_eager_reference(variant, monkeypatch):
    fast = _variant_grads(variant)
    monkeypatch.setattr(CenteredSoftplus, "forward", reference_act_forward)
    monkeypatch.setattr(ClippedBatchNorm2d, "forward", reference_bn_forward)
    ref = _variant_grads(variant)
    torch.testing.assert_close(fast[0], ref[0], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(fast[1], ref[1], rtol=1e-5, atol=1e-5)
    for a, r in zip(fast[2], ref[2]):
        torch.testing.assert_close(a, r, rtol=1e-4, atol=1e-5)
    for a, r in zip(fast[3], ref[3]):  # running statistics, power-iteration u and sigma
        torch.testing.assert_close(a, r, rtol=1e-5, atol=1e-6)


def test_power_step_sigma_is_the_norm_after_one_power_iteration():
    torch.manual_seed(0)
    conv = SNConv2d(3, 5, 3, input_size=(6, 6), padding=1)
    u0, w = conv.u.clone(), conv.weight.detach()
    conv(torch.randn(2, 3, 6, 6))
    u1 = F.conv_transpose2d(F.conv2d(u0, w, padding=1), w, padding=1)
    u1 = u1 / u1.norm()
    torch.testing.assert_close(conv.u, u1)
    torch.testing.assert_close(conv.sigma, F.conv2d(u1, w, padding=1).norm())


def test_frozen_converges_nothing_and_restores_every_flag():
    torch.manual_seed(0)
    model = small_cnn("lcnn", width=4, input_size=12)
    model.train()
    model[2].training = True
    sigmas = [m.sigma.clone() for m in model.modules() if isinstance(m, SNConv2d)]
    with frozen(model):
        assert not any(m.training for m in model.modules())
        model(torch.rand(2, 1, 12, 12))
    assert all(m.training for m in model.modules())
    for s, m in zip(sigmas, [m for m in model.modules() if isinstance(m, SNConv2d)]):
        assert torch.equal(s, m.sigma)  # model.eval() would have run Lanczos and moved sigma


def test_compile_failure_falls_back_to_eager_with_one_warning(monkeypatch):
    def broken(model, **kwargs):
        def fn(*args):
            raise RuntimeError("inductor: no C compiler\nlong traceback line")
        return fn
    monkeypatch.setattr(torch, "compile", broken)
    cfg = resolve(dict(variant="lcnn", arch="small_cnn", width=4, dataset="mnist5k", compile="on"))
    torch.manual_seed(0)
    model = model_for_shape(cfg, (1, 12, 12), 10)
    net = compiled(model, cfg, torch.device("cpu"))
    x = torch.rand(3, 1, 12, 12)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = net(x)
        net(x)
    assert len(caught) == 1 and "\n" not in str(caught[0].message) and "eager" in str(caught[0].message)
    model.eval()
    torch.testing.assert_close(net.eval()(x), model(x))
    assert out.shape == (3, 10)


def test_compile_auto_is_off_on_cpu_and_for_double_backward():
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    from lcnn_core.train import wants_compile
    assert not wants_compile(resolve(dict(variant="lcnn")), cpu)
    assert not wants_compile(resolve(dict(variant="lcnn")), cuda)  # captured as a CUDA graph instead
    assert wants_compile(resolve(dict(variant="lcnn", capture="off")), cuda)
    assert wants_compile(resolve(dict(variant="adv")), cuda)  # not capturable: compiled
    assert not wants_compile(resolve(dict(variant="gradreg")), cuda)
    assert not wants_compile(resolve(dict(variant="cure", compile="on")), cuda)
    assert wants_compile(resolve(dict(variant="standard", compile="on")), cpu)
    assert not wants_compile(resolve(dict(variant="standard", compile="off")), cuda)


def test_compiled_step_matches_eager():
    """torch.compile (inductor; gcc is on these machines) of a tiny LCNN training step."""
    eager = _variant_grads("lcnn")
    fast = _variant_grads("lcnn", compile_model=True)
    torch.testing.assert_close(fast[0], eager[0], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(fast[1], eager[1], rtol=1e-5, atol=1e-5)
    for a, r in zip(fast[2], eager[2]):
        torch.testing.assert_close(a, r, rtol=1e-4, atol=1e-5)
