"""How loose are the Lipschitz and curvature bounds? Provable upper bounds against
measured lower bounds (STUDY.md §1 and §7).

Notation: x is a batch B x C x H x W in the pixel box [0, 1]^n (n = C H W), g(x) the
K logits, J(x) = dg/dx (K x n per sample), l(x, y) = CE(g(x), y) the per-sample loss.
Eval mode throughout (samples are independent, so batched derivatives are per sample).

Upper bounds (data independent, ``lcnn_core.bound``), with Gamma, K the composed slope
and curvature bounds of the logit map (exact per-layer operator norms; a residual
block's slopes and curvatures add):

    sup_x ||J(x)||_2            <= Gamma
    sup_{x,y} ||grad_x l(x, y)|| <= sqrt(2) Gamma
    sup_{x,y} ||hess_x l(x, y)|| <= sqrt(2) K + Gamma^2 / 2

Lower bounds (measured): any evaluation at a feasible x is a lower bound on the sup:
||J(x)||_2 (exact SVD of the K x n Jacobian), max_y ||grad_x l(x, y)|| = max_y ||J^T (p - e_y)||
(exact, every label at once), and a Lanczos / power estimate of ||hess_x l(x, y)||_2 at the
true label (Ritz values and ||H v|| with ||v|| = 1 never exceed the norm). The largest value
over data is improved by projected sign-gradient ascent on x inside [0, 1]^n, started from
the best data points (``ascend``). For the Hessian the ascent climbs ||H(x) v||, with v
carried along as a warm-started power iteration (one step per ascent step), and the best
point is re-measured by Lanczos.

Looseness = upper / lower >= 1; 1 means the bound is attained.

Per-depth audit (``depth_audit``): for every prefix F_k = model[:k+1] of the Sequential
model, the bound Gamma_k (``bound_profile``) against the measured max_x ||J_{F_k}(x)||_2 by
power iteration on J^T J (J v and J^T u by autograd, see ``jacobian_spectral_norm``).
The ratio Gamma_k / measured_k shows at which layer the looseness is born.
"""
import math

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from .bound import bound_profile
from .checks import check_batch, eval_mode
from .linalg import random_unit_rows
from .metrics import input_hessian_norm

PIXEL_RANGE = (0.0, 1.0)  # the data box of lcnn_core.data (no input normalisation)
QUANTITIES = ("logit_lipschitz", "loss_gradient", "loss_hessian")


def _rows(t):
    return t.flatten(1)


def _per_sample(v, like):
    """Reshape a per-sample scalar (Tensor[B]) to broadcast against ``like`` (B x ...)."""
    return v.view(-1, *([1] * (like.dim() - 1)))


def _unit_rows(shape, seed, like):
    """B x ... random directions with unit-norm rows (CPU generator, so device independent)."""
    return random_unit_rows(shape, torch.Generator().manual_seed(seed), like=like)


# ---------------------------------------------------------------- upper bounds
def upper_bounds(model, input_shape, profile=None):
    """Provable bounds for inputs of ``input_shape`` (C x H x W): dict with
    logit_lipschitz = Gamma, loss_gradient = sqrt(2) Gamma, loss_hessian = sqrt(2) K + Gamma^2/2.
    ``profile``: ``bound_profile(model, input_shape)`` if already computed (the exact conv
    norms are the slow part); its last two rows are the logit map and the loss."""
    profile = profile or bound_profile(model, input_shape)  # also puts the model in eval mode
    logits, loss = profile[-2], profile[-1]
    return dict(logit_lipschitz=logits["cum_lipschitz"], loss_gradient=loss["cum_lipschitz"],
                loss_hessian=loss["cum_curvature"])


# ---------------------------------------------------------------- measured values at given inputs
def logit_jacobian(model, x):
    """(J, logits): J is B x K x n with J[i] = d model(x)_i / d x_i, one backward per class."""
    x = x.detach().requires_grad_(True)
    with torch.enable_grad():
        logits = model(x)
        rows = [torch.autograd.grad(logits[:, k].sum(), x, retain_graph=k + 1 < logits.shape[1])[0]
                for k in range(logits.shape[1])]
    return torch.stack([_rows(r) for r in rows], 1).detach(), logits.detach()


def loss_gradient_norms(jacobian, logits):
    """||grad_x l(x_i, y)|| = ||J_i^T (p_i - e_y)|| for every sample and label: B x K."""
    p = logits.softmax(1)
    residual = p[:, None, :] - torch.eye(p.shape[1], dtype=p.dtype, device=p.device)  # B x K(label) x K
    return (residual @ jacobian).norm(dim=2)


def jacobian_spectral_norm(fn, x, iters=30, seed=0):
    """Lower estimate of ||J_fn(x_i)||_2 per sample (Tensor[B]) by ``iters`` steps of power
    iteration on J^T J, batched: in eval mode sample i's output depends on x_i only.

    One forward; J^T u is a backward with graph, J v the backward of that in the dummy u
    (the double-vjp trick), J^T (J v) a backward of the forward. Returns ||J v|| for the
    final unit v, which never exceeds the true norm."""
    x = x.detach().requires_grad_(True)
    with torch.enable_grad():
        out = fn(x)
        u = torch.zeros_like(out, requires_grad=True)
        (jt_u,) = torch.autograd.grad(out, x, grad_outputs=u, create_graph=True)
    v = _unit_rows(x.shape, seed, x)
    for _ in range(iters):
        (jv,) = torch.autograd.grad(jt_u, u, grad_outputs=v, retain_graph=True)
        (w,) = torch.autograd.grad(out, x, grad_outputs=jv, retain_graph=True)
        norm = _rows(w).norm(dim=1)
        if (norm == 0).all():  # J = 0
            break
        v = w / _per_sample(norm.clamp_min(1e-30), w)
    (jv,) = torch.autograd.grad(jt_u, u, grad_outputs=v)
    return _rows(jv).norm(dim=1).detach()


# ---------------------------------------------------------------- projected ascent
def ascend(objective, x, steps=10, step_size=0.02, box=PIXEL_RANGE):
    """Projected sign-gradient ascent on x inside ``box``: x <- clip(x + step_size sign(grad)).

    objective(x) -> Tensor[B] of per-sample values, differentiable in x; each value is a valid
    lower bound at its x. Returns (best_x, best_value) per sample over all visited points.
    step_size is in pixel units (an L-infinity step)."""
    x = x.detach().clamp(*box)
    best_x, best = x.clone(), torch.full((len(x),), -math.inf, dtype=x.dtype, device=x.device)
    for step in range(steps + 1):
        x.requires_grad_(True)
        with torch.enable_grad():
            value = objective(x)
            grad = torch.autograd.grad(value.sum(), x)[0] if step < steps else None
        value = value.detach()
        better = value > best
        best = torch.where(better, value, best)
        best_x[better] = x.detach()[better]
        if grad is None:
            break
        x = (x.detach() + step_size * grad.sign()).clamp(*box)
    return best_x, best


def _top(values, k):
    return torch.topk(values, min(k, len(values))).indices


def logit_lipschitz_lower(model, x, n_ascent=16, steps=10, step_size=0.02, seed=0):
    """(data, ascent, x_best): max_i ||J(x_i)||_2 over the data (exact SVD) and after ascent on
    ||J(x) v|| from the ``n_ascent`` best data points (v: a power step per ascent step)."""
    jac, _ = logit_jacobian(model, x)
    norms = torch.linalg.matrix_norm(jac.double(), ord=2).to(x.dtype)
    start = x[_top(norms, n_ascent)]
    if steps == 0:
        return float(norms.max()), float(norms.max()), start
    v = _unit_rows(start.shape, seed, start)

    def objective(z):
        nonlocal v
        _, jv = torch.func.jvp(model, (z,), (v,))
        _, vjp = torch.func.vjp(model, z.detach())
        (w,) = vjp(jv.detach())
        v = (w / _per_sample(_rows(w).norm(dim=1).clamp_min(1e-30), w)).detach()
        return _rows(jv).norm(dim=1)

    best_x, _ = ascend(objective, start, steps, step_size)
    jac, _ = logit_jacobian(model, best_x)
    after = torch.linalg.matrix_norm(jac.double(), ord=2).to(x.dtype)
    return float(norms.max()), float(torch.maximum(after.max(), norms.max())), best_x


def loss_gradient_lower(model, x, n_ascent=16, steps=10, step_size=0.02):
    """(data, ascent, x_best): max over data and labels of ||grad_x l(x, y)||, then ascent on
    ||grad_x l(x, y)|| from the best (x, y) pairs with y fixed, re-measured over every label."""
    jac, logits = logit_jacobian(model, x)
    norms, labels = loss_gradient_norms(jac, logits).max(1)
    idx = _top(norms, n_ascent)
    start, y = x[idx], labels[idx]

    def objective(z):
        loss = F.cross_entropy(model(z), y, reduction="sum")
        (g,) = torch.autograd.grad(loss, z, create_graph=True)
        return _rows(g).norm(dim=1)

    best_x, best = ascend(objective, start, steps, step_size)
    jac, logits = logit_jacobian(model, best_x)
    after = loss_gradient_norms(jac, logits).max(1).values
    return float(norms.max()), float(torch.maximum(after.max(), norms.max())), best_x


def hessian_norms(model, x, y, iters=30):
    """||hess_x l(x_i, y_i)||_2 per sample by batched Lanczos (lcnn_core.metrics), Tensor[B]."""
    return input_hessian_norm(model, x, y, method="lanczos", iters=iters).norm


def loss_hessian_lower(model, x, y, n_ascent=8, steps=10, step_size=0.02, iters=30, seed=0):
    """(data, ascent, x_best): max_i ||hess_x l(x_i, y_i)||_2 over the data at the true labels
    (Lanczos), then ascent on ||H(x) v|| with v a warm-started power iteration, from the
    ``n_ascent`` best data points; the best points are re-measured by Lanczos."""
    norms = hessian_norms(model, x, y, iters)
    idx = _top(norms, n_ascent)
    start, labels = x[idx], y[idx]
    v = _unit_rows(start.shape, seed, start)

    def objective(z):
        nonlocal v
        loss = F.cross_entropy(model(z), labels, reduction="sum")
        (g,) = torch.autograd.grad(loss, z, create_graph=True)
        (hv,) = torch.autograd.grad(g, z, grad_outputs=v, create_graph=True)
        norm = _rows(hv).norm(dim=1)
        v = (hv / _per_sample(norm.clamp_min(1e-30), hv)).detach()
        return norm

    best_x, best = ascend(objective, start, steps, step_size)
    after = hessian_norms(model, best_x, labels, iters)
    lower = torch.maximum(torch.maximum(after, best), norms[idx])
    return float(norms.max()), float(max(lower.max(), norms.max())), best_x


# ---------------------------------------------------------------- tables
def tightness_table(model, x, y, n_ascent=16, n_ascent_hessian=8, steps=10, step_size=0.02,
                    hessian_iters=30, seed=0, return_points=False, profile=None):
    """Tidy table, one row per quantity (logit_lipschitz, loss_gradient, loss_hessian):
    upper (provable bound), lower_data (largest over the samples x, y), lower (after ascent),
    looseness = upper / lower, the label used (every / worst / true) and the settings.
    x: B x C x H x W in [0, 1], y: B labels. With return_points=True also returns a dict
    quantity -> the ascent's best inputs (n_ascent x C x H x W). ``profile``: as in upper_bounds."""
    y = check_batch(x, y)
    with eval_mode(model):
        upper = upper_bounds(model, tuple(x.shape[1:]), profile)
        found = dict(
            logit_lipschitz=logit_lipschitz_lower(model, x, n_ascent, steps, step_size, seed),
            loss_gradient=loss_gradient_lower(model, x, n_ascent, steps, step_size),
            loss_hessian=loss_hessian_lower(model, x, y, n_ascent_hessian, steps, step_size,
                                            hessian_iters, seed),
        )
    labels = dict(logit_lipschitz="every", loss_gradient="worst", loss_hessian="true")
    rows = []
    for q in QUANTITIES:
        data, lower, points = found[q]
        rows.append(dict(quantity=q, upper=upper[q], lower_data=data, lower=lower,
                         looseness=upper[q] / lower if lower > 0 else math.inf, label=labels[q],
                         n_samples=len(x), n_ascent=len(points), steps=steps, step_size=step_size))
    table = pd.DataFrame(rows)
    if return_points:
        return table, {q: found[q][2] for q in QUANTITIES}
    return table


def depth_audit(model, x, iters=30, seed=0, loss_row=True, profile=None):
    """Per prefix F_k = model[:k+1]: the layer, its bound L_k, the cumulative bound Gamma_k
    and curvature bound K_k (``bound_profile``), the measured max_i ||J_{F_k}(x_i)||_2 (power
    iteration), looseness_k = Gamma_k / measured_k and added_k = looseness_k / looseness_{k-1}
    (the factor layer k adds). With loss_row, a last "CrossEntropy" row compares sqrt(2) Gamma
    with the max over samples and labels of ||grad_x l||. x: B x C x H x W; one row per layer.
    ``profile``: ``bound_profile(model, x.shape[1:])`` if already computed."""
    with eval_mode(model):
        profile = profile or bound_profile(model, tuple(x.shape[1:]))
        rows, previous = [], 1.0
        for k, row in enumerate(profile[:-1]):
            prefix = model[:k + 1]
            measured = float(jacobian_spectral_norm(prefix, x, iters, seed).max())
            rows.append(dict(row, bound=row["cum_lipschitz"], measured=measured))
        if loss_row:
            jac, logits = logit_jacobian(model, x)
            measured = float(loss_gradient_norms(jac, logits).max())
            rows.append(dict(profile[-1], bound=profile[-1]["cum_lipschitz"], measured=measured))
    table = pd.DataFrame(rows)
    table["looseness"] = table["bound"] / table["measured"]
    table["added"] = table["looseness"] / table["looseness"].shift(1, fill_value=1.0)
    table["log10_looseness"] = np.log10(table["looseness"])
    return table
