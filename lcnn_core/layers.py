"""The three LCNN layers and their slope / curvature bounds (STUDY.md §1).

Every layer here exposes two numbers the provable bound composes:

* ``lipschitz()``  -- an upper bound L on the operator norm of the layer's
  Jacobian, sup_x ||J(x)||_2 (eval mode);
* ``curvature()`` -- an upper bound kappa on sup_x ||d^2 layer / dx^2||_2.

Shapes: images are N x C x H x W, features N x D. Pixel range [0, 1].
"""
import math

import torch
import torch.nn.functional as F
from torch import nn

BETA_OFFSET = 1e-3  # b = beta + 1e-3 keeps the softplus well defined as beta -> 0


# ---------------------------------------------------------------- activations
class CenteredSoftplus(nn.Module):
    """s0(x; b) = (softplus(b x) - log 2) / b with b = beta + 1e-3.

    s0(0) = 0, s0' = sigmoid(b x) in (0, 1), s0'' = b sigma (1 - sigma) <= b / 4,
    and s0(x) -> x / 2 as beta -> 0. beta is stored as log beta (init 5) so it
    stays positive; ``learnable=False`` freezes it (a buffer).
    """

    def __init__(self, beta=5.0, learnable=True):
        super().__init__()
        if beta <= 0:
            raise ValueError(f"beta must be positive, got {beta}")
        log_beta = torch.tensor(math.log(beta))
        if learnable:
            self.log_beta = nn.Parameter(log_beta)
        else:
            self.register_buffer("log_beta", log_beta)

    @property
    def b(self):
        return self.log_beta.exp() + BETA_OFFSET

    def forward(self, x):
        b = self.b
        # softplus is linear once b x > 20 (torch's threshold), as in the paper
        return (F.softplus(b * x) - math.log(2.0)) / b

    def lipschitz(self):
        return 1.0

    def curvature(self):
        return float(self.b.detach()) / 4.0


class Softplus(nn.Softplus):
    """Plain softplus(x; beta) = log(1 + e^{beta x}) / beta with a fixed beta.

    beta = 1000 is the paper's "Standard" (ReLU-like but twice differentiable),
    beta = 10 its "Softplus + Wt. Decay" row. Slope <= 1, curvature <= beta / 4.
    """

    def lipschitz(self):
        return 1.0

    def curvature(self):
        return self.beta / 4.0


# ---------------------------------------------------------------- batch norm
class ClippedBatchNorm2d(nn.BatchNorm2d):
    """Batch norm without affine parameters followed by a Lipschitz clip.

    With scale = min_c sqrt(running_var_c + eps), output = BN(x) * min(1, gamma*scale),
    so the eval-mode Lipschitz constant is min(1 / scale, gamma). gamma > 0 is
    learnable, stored as log gamma (init 10). As in the paper's code the clip
    uses the running variance in training too.
    """

    def __init__(self, num_features, gamma=10.0, eps=1e-5, momentum=0.1):
        super().__init__(num_features, eps=eps, momentum=momentum, affine=False)
        self.log_gamma = nn.Parameter(torch.tensor(math.log(gamma)))

    @property
    def gamma(self):
        return self.log_gamma.exp()

    def scale(self):
        return torch.sqrt(self.running_var + self.eps).min()

    def forward(self, x):
        factor = torch.clamp(self.gamma * self.scale(), max=1.0)
        return super().forward(x) * factor

    def lipschitz(self):
        return float(torch.minimum(1.0 / self.scale(), self.gamma.detach()))

    def curvature(self):
        return 0.0


def batchnorm_lipschitz(bn):
    """Eval-mode Lipschitz constant of a plain ``nn.BatchNorm2d``:
    max_c |w_c| / sqrt(running_var_c + eps) (w_c = 1 without affine)."""
    inv = torch.rsqrt(bn.running_var + bn.eps)
    if bn.weight is not None:
        inv = inv * bn.weight.abs()
    return float(inv.max())


# ---------------------------------------------------------------- convolution
def _check_spatial(x, input_size, name):
    if tuple(x.shape[-2:]) != tuple(input_size):
        raise ValueError(
            f"{name} was built for inputs of size {tuple(input_size)}, got {tuple(x.shape[-2:])}; "
            "its operator norm depends on the input size, so build the model for this size"
        )


def conv_output_padding(input_size, kernel_size, stride, padding):
    """output_padding that makes conv_transpose2d the exact adjoint of conv2d
    (it recovers the input size lost to the floor in strided convolutions)."""
    pads = []
    for n, k, s, p in zip(input_size, kernel_size, stride, padding):
        out = (n + 2 * p - k) // s + 1
        pads.append(n - ((out - 1) * s - 2 * p + k))
    return tuple(pads)


def conv_operator_norm(weight, input_size, stride=1, padding=0, iters=500, tol=1e-9, u=None):
    """Largest singular value of x -> conv2d(x, weight) on C x H x W inputs.

    Power iteration on A^T A, with A = conv2d and A^T = conv_transpose2d.
    Returns (sigma, u) with u the unit right singular vector estimate
    (shape 1 x C x H x W). sigma = ||A u|| is a lower estimate that converges
    to the true norm; it stops when the relative change is below ``tol``.
    """
    stride, padding = _pair(stride), _pair(padding)
    k = weight.shape[-2:]
    out_pad = conv_output_padding(input_size, k, stride, padding)
    if u is None:
        gen = torch.Generator().manual_seed(0)
        u = torch.randn((1, weight.shape[1], *input_size), generator=gen).to(weight)
    u = u / u.norm()
    sigma = torch.zeros((), dtype=weight.dtype, device=weight.device)
    with torch.no_grad():
        for _ in range(iters):
            v = F.conv2d(u, weight, stride=stride, padding=padding)
            new_sigma = v.norm()
            u = F.conv_transpose2d(v, weight, stride=stride, padding=padding, output_padding=out_pad)
            u = u / u.norm().clamp_min(1e-30)
            if abs(float(new_sigma - sigma)) <= tol * float(new_sigma):
                sigma = new_sigma
                break
            sigma = new_sigma
        sigma = F.conv2d(u, weight, stride=stride, padding=padding).norm()
    return sigma, u


def linear_operator_norm(weight):
    """Largest singular value of a dense matrix (exact, by SVD)."""
    return torch.linalg.matrix_norm(weight.detach().double(), ord=2).to(weight.dtype)


def _pair(v):
    return (v, v) if isinstance(v, int) else tuple(v)


class SNConv2d(nn.Conv2d):
    """Conv2d whose weight is divided by the *true operator norm* of the convolution
    on inputs of size ``input_size`` (H, W), stride and padding included.

    The norm is tracked by power iteration alternating conv2d / conv_transpose2d
    with the right-singular-vector estimate ``u`` kept as a buffer: ``init_iters``
    iterations at construction, one per training forward, and a converged run
    when the layer switches to eval mode, so the eval-mode forward (which never
    touches buffers, as ``torch.func`` requires) has operator norm <= 1.
    """

    def __init__(self, in_channels, out_channels, kernel_size, input_size, stride=1, padding=0,
                 init_iters=15, eval_iters=300):
        super().__init__(in_channels, out_channels, kernel_size, stride=stride, padding=padding, bias=False)
        self.input_size = _pair(input_size)
        if min(self.input_size) <= 0:
            raise ValueError(f"input_size must be positive, got {input_size}")
        self.eval_iters = eval_iters
        self.out_pad = conv_output_padding(self.input_size, self.kernel_size, self.stride, self.padding)
        sigma, u = conv_operator_norm(self.weight, self.input_size, self.stride, self.padding, iters=init_iters, tol=0.0)
        self.register_buffer("u", u)
        self.register_buffer("sigma", sigma.reshape(()))

    def _conv(self, x, weight):
        return F.conv2d(x, weight, stride=self.stride, padding=self.padding)

    def train(self, mode=True):
        if not mode and self.training:  # switching to eval: converge once
            self.converge()
        return super().train(mode)

    @torch.no_grad()
    def converge(self, iters=None, tol=1e-7):
        """Run power iteration to convergence and store sigma (used for eval)."""
        sigma, u = conv_operator_norm(self.weight, self.input_size, self.stride, self.padding,
                                      iters=iters or self.eval_iters, tol=tol, u=self.u)
        self.u.copy_(u)
        self.sigma.copy_(sigma)

    def forward(self, x):
        _check_spatial(x, self.input_size, "SNConv2d")
        if not self.training:
            return self._conv(x, self.weight / self.sigma)
        with torch.autocast(x.device.type, enabled=False):  # the norm in fp32 even under AMP
            sigma = self._power_step()
        return self._conv(x, self.weight / sigma)

    def _power_step(self):
        """One power-iteration step on the buffer u; returns sigma = ||W u||, which is
        v^T W u with v = W u / ||W u|| and has the spectral norm's gradient v u^T in W."""
        with torch.no_grad():
            v = self._conv(self.u, self.weight)
            u = F.conv_transpose2d(v, self.weight, stride=self.stride, padding=self.padding,
                                   output_padding=self.out_pad)
            self.u.copy_(u / u.norm().clamp_min(1e-30))
        # a copy: a second forward in the same graph (CURE) updates the buffer in place
        sigma = self._conv(self.u.clone(), self.weight).norm()
        self.sigma.copy_(sigma.detach())
        return sigma

    def operator_norm(self):
        """True operator norm of the normalised conv (converged power iteration)."""
        sigma, _ = conv_operator_norm(self.weight.detach() / self.sigma, self.input_size, self.stride, self.padding)
        return float(sigma)

    def lipschitz(self):
        return self.operator_norm()

    def curvature(self):
        return 0.0


class SNLinear(nn.Linear):
    """Linear layer with weight / ||W||_2 (power iteration, u/v buffers; exact
    SVD refresh when switching to eval). Bias allowed: it does not change the
    Lipschitz constant."""

    def __init__(self, in_features, out_features, bias=True, init_iters=15):
        super().__init__(in_features, out_features, bias=bias)
        gen = torch.Generator().manual_seed(0)
        u = torch.randn(in_features, generator=gen)
        with torch.no_grad():
            for _ in range(init_iters):
                v = self.weight @ u
                u = self.weight.t() @ (v / v.norm())
                u = u / u.norm()
        self.register_buffer("u", u)
        self.register_buffer("sigma", (self.weight @ u).norm().detach())

    def train(self, mode=True):
        if not mode and self.training:
            with torch.no_grad():
                self.sigma.copy_(linear_operator_norm(self.weight))
        return super().train(mode)

    def forward(self, x):
        if not self.training:
            return F.linear(x, self.weight / self.sigma, self.bias)
        with torch.no_grad():
            v = self.weight @ self.u
            v = v / v.norm().clamp_min(1e-30)
            u = self.weight.t() @ v
            self.u.copy_(u / u.norm().clamp_min(1e-30))
            v = self.weight @ self.u
            v = v / v.norm().clamp_min(1e-30)
        sigma = v @ self.weight @ self.u.clone()  # a copy, as in SNConv2d
        self.sigma.copy_(sigma.detach())
        return F.linear(x, self.weight / sigma, self.bias)

    def operator_norm(self):
        return float(linear_operator_norm(self.weight.detach() / self.sigma))

    def lipschitz(self):
        return self.operator_norm()

    def curvature(self):
        return 0.0


class Conv2d(nn.Conv2d):
    """Plain bias-free Conv2d that remembers its input size, so the bound can use
    its exact operator norm (the Standard / Softplus models)."""

    def __init__(self, in_channels, out_channels, kernel_size, input_size, stride=1, padding=0):
        super().__init__(in_channels, out_channels, kernel_size, stride=stride, padding=padding, bias=False)
        self.input_size = _pair(input_size)

    def operator_norm(self):
        sigma, _ = conv_operator_norm(self.weight.detach(), self.input_size, self.stride, self.padding)
        return float(sigma)

    def lipschitz(self):
        return self.operator_norm()

    def curvature(self):
        return 0.0


class GlobalAvgPool(nn.Module):
    """N x C x H x W -> N x C mean over pixels; operator norm 1 / sqrt(H W)."""

    def __init__(self, input_size):
        super().__init__()
        self.input_size = _pair(input_size)

    def forward(self, x):
        return x.mean(dim=(-2, -1))

    def lipschitz(self):
        return 1.0 / math.sqrt(self.input_size[0] * self.input_size[1])

    def curvature(self):
        return 0.0
