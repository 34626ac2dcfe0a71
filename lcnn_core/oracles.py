"""Independent oracles: dense, exact answers built without any of the package's estimators,
for the tests and the benchmarks to check the estimators against.

* ``dense_matrix``: the matrix of a linear map, column by column from basis inputs;
* ``exact_input_hessian`` (torch.func.hessian): the dense C*H*W x C*H*W Hessian of
  l(x, y) = CE(model(x), y) for one input, and ``exact_input_hessian_norm`` its max |eigenvalue|;
* ``dense_input_hessian_norm``: the same norm from Hessian columns H e_i taken by double
  backward on ``chunk`` copies of x at a time (memory bounded: a 3072-dim ResNet input), in
  the model's dtype, symmetrised, then eigvalsh in float64;
* ``composite_softplus_forward``, ``bn_then_factor_forward``: the LCNN activation and clipped
  batch norm as plain formulas (the fused training path's reference).
"""
import math

import torch
import torch.nn.functional as F


def dense_matrix(fn, in_shape, dtype=torch.float64):
    """Matrix of a linear map fn: R^{in_shape} -> R^m, built column by column from basis inputs."""
    n = int(torch.tensor(in_shape).prod())
    basis = torch.eye(n, dtype=dtype).reshape(n, *in_shape)
    with torch.no_grad():
        return fn(basis).reshape(n, -1).T


def exact_input_hessian(model, x, y):
    """Dense Hessian of l(x, y) = CE(model(x), y) for one input x (C x H x W)."""
    def loss(inp):
        return F.cross_entropy(model(inp.unsqueeze(0)), y.view(1))
    h = torch.func.hessian(loss)(x)
    n = x.numel()
    return h.reshape(n, n)


def exact_input_hessian_norm(model, x, y):
    return torch.linalg.eigvalsh(exact_input_hessian(model, x, y)).abs().max().item()


def dense_input_hessian_norm(model, x, y, chunk=256):
    """max |eigvalsh(H)| with H the dense input Hessian of CE(model(x), y) for one sample
    x (1 x C x H x W), y (1): columns H e_i from double backward on ``chunk`` copies of x."""
    n = x[0].numel()
    cols = []
    for s in range(0, n, chunk):
        k = min(chunk, n - s)
        xr = x.expand(k, *x.shape[1:]).clone().requires_grad_(True)
        loss = F.cross_entropy(model(xr), y.expand(k), reduction="sum")
        (g,) = torch.autograd.grad(loss, xr, create_graph=True)
        basis = torch.zeros(k, n, dtype=x.dtype)
        basis[torch.arange(k), s + torch.arange(k)] = 1
        (hv,) = torch.autograd.grad(g, xr, basis.view_as(xr))
        cols.append(hv.reshape(k, n).detach())
    h = torch.cat(cols).double()
    return float(torch.linalg.eigvalsh((h + h.T) / 2).abs().max())


# ---------------------------------------------------------------- the LCNN layers before the speed work
def composite_softplus_forward(act, x):
    """CenteredSoftplus as the formula reads, (softplus(b x) - log 2) / b, differentiated op by
    op by autograd: the reference the fused training path is checked and benchmarked against."""
    b = act.b
    return (F.softplus(b * x) - math.log(2.0)) / b


def bn_then_factor_forward(bn, x):
    """ClippedBatchNorm2d as it was: plain batch norm without affine, then a separate product
    with the clip factor min(1, gamma * min_c sqrt(running_var_c + eps))."""
    factor = torch.clamp(bn.gamma * bn.scale(), max=1.0)
    return torch.nn.BatchNorm2d.forward(bn, x) * factor
