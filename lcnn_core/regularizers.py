"""Training regularisers (STUDY.md §1, §3).

* ``lcnn_penalty``: the paper's proxy, lambda_beta sum_i beta_i + lambda_gamma sum_j |log gamma_j|
  (lambda = 1e-3 in the runs behind the paper's tables; 1e-2 in the later refactor the team ran).
* ``gradient_penalty``: mean_i ||grad_x l_i||^2 over the batch (double backprop; the per-sample
  gradients come from ``checks.input_gradients``, as everywhere in the package). Its
  coefficient is batch-size invariant; ``reference_gradreg_coefficient`` converts the
  reference code's convention 1e5 * lambda * sum_i ||grad_x Lbar||^2 / B (Lbar the
  batch-mean loss), which equals (1e5 lambda / B^2) * mean_i ||grad_x l_i||^2.
* ``cure_penalty``: CURE's finite-difference curvature penalty
  mean_i ||grad l_i(x_i + h z_i) - grad l_i(x_i)||^2, z_i = sign(g_i) / ||sign(g_i)||.
"""
import torch

from .checks import input_gradients
from .layers import CenteredSoftplus, ClippedBatchNorm2d


def lcnn_penalty(model, lam_beta=1e-3, lam_gamma=1e-3):
    """lambda_beta * sum beta + lambda_gamma * sum |log gamma| (a scalar tensor): each sum over
    the stacked parameters, a handful of ops instead of one exp / abs / add per layer."""
    betas = [m.log_beta for m in model.modules() if isinstance(m, CenteredSoftplus)]
    log_gammas = [m.log_gamma for m in model.modules() if isinstance(m, ClippedBatchNorm2d)]
    total = next(model.parameters()).new_zeros(())
    if betas:
        total = total + lam_beta * torch.stack(betas).exp().sum()
    if log_gammas:
        total = total + lam_gamma * torch.stack(log_gammas).abs().sum()
    return total


def reference_gradreg_coefficient(lam=1e-3, batch_size=128):
    """The reference's GradReg weight expressed on mean_i ||grad_x l_i||^2: 1e5 lam / B^2
    (0.0061 at lam = 1e-3, B = 128)."""
    return 1e5 * lam / batch_size ** 2


def gradient_penalty(grad):
    """mean_i ||grad_i||^2 for per-sample input gradients (N x ...)."""
    return grad.flatten(1).pow(2).sum(1).mean()


def cure_penalty(model, x, y, grad, h=1.0, scale=None):
    """CURE: mean_i ||g_i(x_i + h z_i) - g_i(x_i)||^2 with z_i = sign(g_i) / ||sign(g_i)||,
    ``grad`` the per-sample input gradients at x (built with create_graph=True); ``scale``:
    fp16's loss scale for the inner backward (``checks.input_gradients``)."""
    z = grad.detach().sign()
    z = z / z.flatten(1).norm(dim=1).clamp_min(1e-12).view(-1, *([1] * (x.dim() - 1)))
    grad_h, *_ = input_gradients(model, x.detach() + h * z, y, create_graph=True, check=False, scale=scale)
    return (grad_h - grad).flatten(1).pow(2).sum(1).mean()
