"""A provable, data-independent bound on the input gradient and Hessian of the loss.

For a composition F_k = f_k o F_{k-1} whose layer k has slope bound L_k and
curvature bound kappa_k (STUDY.md §1):

    Gamma_k <= L_k Gamma_{k-1},        K_k <= L_k K_{k-1} + kappa_k Gamma_{k-1}^2,

with Gamma_0 = 1, K_0 = 0. A residual sum adds slopes and curvatures. The
per-sample cross-entropy on logits has ||grad|| <= sqrt(2) and ||Hessian|| <= 1/2,
so for every input x (eval mode)

    ||grad_x l(x, y)|| <= sqrt(2) Gamma,      ||hess_x l(x, y)|| <= sqrt(2) K + Gamma^2 / 2.

Linear maps use their exact operator norm (SVD for dense layers; for convs, converged
Lanczos on the conv for the layer's input size, returned as sqrt(theta + residual): an estimate
from above, high by at most 5e-7 relative, see ``layers.conv_operator_norm``), so the bound is
tight per layer and loose only through composition. ``paper_proxy`` is the paper's training proxy
(sum of beta, product of gamma), which is *not* a bound.
"""
import math

import torch
from torch import nn

from .layers import CenteredSoftplus, ClippedBatchNorm2d, batchnorm_lipschitz
from .models import Residual

CE_GRAD = math.sqrt(2.0)  # sup ||p - e_y||
CE_HESS = 0.5             # sup ||diag(p) - p p^T||


def lipschitz_curvature(module):
    """(L, kappa): slope and curvature bounds of a module built from this package's
    pieces (Sequential, Residual, layers with ``lipschitz()``/``curvature()``,
    plain BatchNorm2d, Flatten/Identity). Eval-mode constants."""
    if isinstance(module, nn.Sequential):
        gamma, k = 1.0, 0.0
        for child in module:
            lc, kc = lipschitz_curvature(child)
            gamma, k = lc * gamma, lc * k + kc * gamma ** 2
        return gamma, k
    if isinstance(module, Residual):
        lb, kb = lipschitz_curvature(module.branch)
        ls, ks = lipschitz_curvature(module.shortcut)
        return lb + ls, kb + ks
    if hasattr(module, "lipschitz"):
        return float(module.lipschitz()), float(module.curvature())
    if isinstance(module, nn.BatchNorm2d):
        return batchnorm_lipschitz(module), 0.0
    if isinstance(module, (nn.Flatten, nn.Identity)):
        return 1.0, 0.0
    raise TypeError(f"no slope/curvature bound known for {type(module).__name__}")


def _prepare(model, input_shape):
    if not isinstance(model, nn.Sequential):
        raise TypeError("the bound composes nn.Sequential models (lcnn_core.models)")
    model.eval()
    shape = tuple(input_shape)
    if len(shape) == 3:
        shape = (1, *shape)
    with torch.no_grad():  # validates that the model was built for this input size
        p = next(model.parameters())
        model(torch.zeros(shape, device=p.device, dtype=p.dtype))


@torch.no_grad()
def loss_bound(model, input_shape):
    """(grad_bound, hessian_bound): provable upper bounds on sup_x ||grad_x l|| and
    sup_x ||hess_x l||_2 of the per-sample cross-entropy, for inputs of
    ``input_shape`` (C x H x W). Puts the model in eval mode."""
    _prepare(model, input_shape)
    gamma, k = lipschitz_curvature(model)
    return CE_GRAD * gamma, CE_GRAD * k + CE_HESS * gamma ** 2


@torch.no_grad()
def bound_profile(model, input_shape):
    """Per top-level layer: its (L, kappa) and the cumulative (Gamma, K) after it.
    Returns a list of dicts, one per layer, plus a final row for the CE loss:
    where the curvature bound is born."""
    _prepare(model, input_shape)
    rows, gamma, k = [], 1.0, 0.0
    for i, child in enumerate(model):
        lc, kc = lipschitz_curvature(child)
        gamma, k = lc * gamma, lc * k + kc * gamma ** 2
        rows.append(dict(index=i, layer=type(child).__name__ if not isinstance(child, nn.Sequential)
                         else "ResidualBlock", lipschitz=lc, curvature=kc, cum_lipschitz=gamma, cum_curvature=k))
    rows.append(dict(index=len(rows), layer="CrossEntropy", lipschitz=CE_GRAD, curvature=CE_HESS,
                     cum_lipschitz=CE_GRAD * gamma, cum_curvature=CE_GRAD * k + CE_HESS * gamma ** 2))
    return rows


@torch.no_grad()
def paper_proxy(model):
    """The paper's training proxy (not a bound): sum and mean of beta over the
    centered softplus layers, product of gamma and sum |log gamma| over the
    clipped batch norms. Empty sums/products for models without those layers."""
    betas = [float(m.log_beta.exp()) for m in model.modules() if isinstance(m, CenteredSoftplus)]
    log_gammas = [float(m.log_gamma) for m in model.modules() if isinstance(m, ClippedBatchNorm2d)]
    return dict(
        sum_beta=sum(betas), mean_beta=sum(betas) / len(betas) if betas else float("nan"),
        prod_gamma=math.exp(sum(log_gammas)) if log_gammas else float("nan"),
        sum_abs_log_gamma=sum(abs(g) for g in log_gammas),
        mean_gamma=sum(math.exp(g) for g in log_gammas) / len(log_gammas) if log_gammas else float("nan"),
    )
