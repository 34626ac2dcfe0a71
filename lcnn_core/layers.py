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

from .linalg import lanczos, tridiagonal

BETA_OFFSET = 1e-3  # b = beta + 1e-3 keeps the softplus well defined as beta -> 0


# ---------------------------------------------------------------- activations
LOG2 = math.log(2.0)


class _CenteredSoftplusFn(torch.autograd.Function):
    """y = (softplus(b x) - log 2) / b with dy/dx = sigmoid(b x), dy/db = (x sigmoid(b x) - y) / b.

    The composite formula costs four elementwise passes forward and about eight backward
    (autograd differentiates mul, softplus, sub and div one by one); this costs three
    forward (b x, softplus, one addcmul) and four backward (sigmoid, x sigmoid - y, the
    product for dx, one dot product for the scalar db). When the backward itself is recorded (create_graph,
    as GradReg and CURE need) it recomputes b x and y from the saved inputs with
    differentiable ops, so second derivatives are exact.
    """

    @staticmethod
    def forward(ctx, x, b):
        t = x * b
        y = torch.addcmul(-LOG2 / b, F.softplus(t), 1.0 / b)
        ctx.save_for_backward(x, b, t, y)
        return y

    @staticmethod
    def backward(ctx, g):
        x, b, t, y = ctx.saved_tensors
        if torch.is_grad_enabled():  # a double backward follows: rebuild t, y inside the graph
            t = x * b
            y = (F.softplus(t) - LOG2) / b
        s = torch.sigmoid(t)
        gb = _dot(g, torch.addcmul(-y, x, s)) / b  # x s - y per element first: no cancellation between sums
        return (g * s).to(x.dtype), gb.to(b.dtype)


def _dot(a, b):
    """sum(a * b) over every element (accumulated in at least float32), in one pass where
    the memory layout allows."""
    if a.is_contiguous() and b.is_contiguous() and a.dtype == b.dtype and a.dtype in (torch.float32, torch.float64):
        return torch.vdot(a.view(-1), b.view(-1))
    return (a * b).sum(dtype=torch.promote_types(torch.promote_types(a.dtype, b.dtype), torch.float32))


def centered_softplus(x, b):
    """s0(x; b) = (softplus(b x) - log 2) / b for a 0-d tensor b > 0 (fused autograd)."""
    return _CenteredSoftplusFn.apply(x, b)


class CenteredSoftplus(nn.Module):
    """s0(x; b) = (softplus(b x) - log 2) / b with b = beta + 1e-3.

    s0(0) = 0, s0' = sigmoid(b x) in (0, 1), s0'' = b sigma (1 - sigma) <= b / 4,
    and s0(x) -> x / 2 as beta -> 0. beta is stored as log beta (init 5) so it
    stays positive; ``learnable=False`` freezes it (a buffer).

    Training uses the fused ``centered_softplus``; eval mode the composite formula,
    which ``torch.func`` transforms (the dense-Hessian oracles, jvp / vjp) can trace.
    softplus is linear once b x > 20 (torch's threshold) on both paths, as in the paper.
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
        if self.training:
            return centered_softplus(x, b)
        return (F.softplus(b * x) - LOG2) / b

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


# ---------------------------------------------------------------- modes
class frozen:
    """``with frozen(model):`` eval-mode forward passes exactly as the model stands: batch
    norm on its running statistics and every spectrally normalised layer on its current
    sigma estimate. Unlike ``model.eval()`` it converges nothing (no Lanczos run per SN
    conv, no SVD), so a training-time attack can use it on every batch; each module's
    flag is restored on exit. Evaluation proper uses ``model.eval()``."""

    def __init__(self, model):
        self.modes = [(m, m.training) for m in model.modules()]

    def __enter__(self):
        for m, _ in self.modes:
            m.training = False

    def __exit__(self, *exc):
        for m, flag in self.modes:
            m.training = flag


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
        # a real C-vector: batch norm's double backward (GradReg, CURE) reads garbage from a
        # stride-0 expanded weight (torch 2.13, CPU; tests/test_fast_path.py)
        return self._normalise(x, factor.expand(self.num_features).contiguous())

    def _normalise(self, x, weight):
        """BN(x) with channel c scaled by weight_c inside batch norm's own kernel (forward
        and backward), instead of a separate product over the whole activation."""
        self._check_input_dim(x)
        momentum = self.momentum
        if self.training:
            self.num_batches_tracked.add_(1)
            if momentum is None:  # cumulative average, as nn.BatchNorm2d
                momentum = 1.0 / float(self.num_batches_tracked)
        return F.batch_norm(x, self.running_mean, self.running_var, weight, None, self.training,
                            momentum or 0.0, self.eps)

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


def conv_operator_norm(weight, input_size, stride=1, padding=0, iters=500, tol=1e-6, u=None):
    """Largest singular value of A: x -> conv2d(x, weight) on C x H x W inputs.

    Lanczos with full reorthogonalisation on M = A^T A (A^T = conv_transpose2d with
    the output_padding that makes it the exact adjoint), in float64, started from
    ``u`` (or a fixed random vector) and restarted from the top Ritz vector every
    64 steps, at most ``iters`` products with M. It stops when the top Ritz pair
    (theta, y) has residual r = ||M y - theta y|| <= tol * theta. Some eigenvalue of
    M lies within r of theta, so the returned sigma = sqrt(theta + r) is an upper
    estimate of the singular value Lanczos converged to (the largest, unless the
    start vector is orthogonal to its singular vector), high by at most tol / 2
    relative. The residual, not the change in theta, is the stopping rule: on
    large convs the top singular values are packed (neighbouring frequencies), so
    theta creeps up long after it looks settled. Unlike power iteration, Lanczos
    does not stall when the top two singular values nearly coincide.

    Returns (sigma, u): sigma a 0-d tensor in weight's dtype, rounded up; u the unit
    right singular vector estimate, 1 x C x H x W in weight's dtype.
    """
    stride, padding = _pair(stride), _pair(padding)
    k = weight.shape[-2:]
    out_pad = conv_output_padding(input_size, k, stride, padding)
    w = weight.detach().double()
    shape = (1, weight.shape[1], *input_size)
    n = math.prod(shape)

    def gram(q):  # M q, flat float64 -> flat float64
        v = F.conv2d(q.view(shape), w, stride=stride, padding=padding)
        return F.conv_transpose2d(v, w, stride=stride, padding=padding, output_padding=out_pad).flatten()

    if u is None:
        gen = torch.Generator().manual_seed(0)
        u = torch.randn(shape, generator=gen)
    y = u.detach().to(w).flatten()
    y = y / y.norm()
    cycle = min(64, n, max(iters, 1))
    buffer = torch.empty(cycle, n, dtype=w.dtype, device=w.device)

    def top_ritz(alphas, betas):  # top eigenpair of the Lanczos tridiagonal
        evals, evecs = torch.linalg.eigh(tridiagonal(alphas, betas))
        return float(evals[-1]), evecs[:, -1]

    def converged(alphas, betas):  # beta |s_last| is the Ritz residual of the top pair
        theta, s = top_ritz(alphas, betas)
        return betas[-1] * abs(float(s[-1])) <= tol * abs(theta)

    used = 0
    with torch.no_grad():
        while True:
            alphas, betas, basis = lanczos(gram, y, min(cycle, iters - used), converged, buffer)
            used += len(alphas)
            _, s = top_ritz(alphas, betas)
            y = basis.T @ s.to(basis)
            y = y / y.norm()
            my = gram(y)  # the residual measured, not trusted from the recurrence
            used += 1
            theta = float(y @ my)
            resid = float((my - theta * y).norm())
            if resid <= tol * abs(theta) or used >= iters:
                break
    sigma = torch.tensor(math.sqrt(max(theta, 0.0) + resid), dtype=torch.float64, device=weight.device)
    return _round_up(sigma, weight.dtype), y.view(shape).to(weight.dtype)


def _round_up(value, dtype):
    """Cast a float64 0-d tensor to ``dtype`` without rounding down (a norm divided out
    must not shrink, or the normalised layer's norm exceeds 1 by half an ulp)."""
    cast = value.to(dtype)
    if float(cast) < float(value):
        cast = torch.nextafter(cast, torch.full_like(cast, math.inf))
    return cast


def linear_operator_norm(weight):
    """Largest singular value of a dense matrix (exact, by SVD in float64, rounded up)."""
    return _round_up(torch.linalg.matrix_norm(weight.detach().double(), ord=2), weight.dtype)


def _pair(v):
    return (v, v) if isinstance(v, int) else tuple(v)


class _SpectralNormalise(torch.autograd.Function):
    """W / sigma after one power step on u, as one autograd node (fewer dispatched ops than
    autograd's ten or so: no clone, no norm / div / conv backward nodes of their own).

    Forward (no grad): u <- W^T W u / ||W^T W u|| (conv then conv_transpose, into the buffer),
    w u = conv(u, W), sigma = ||w u|| (into the buffer); returns W / sigma.
    Backward: for G = dL/d(W / sigma),
        dL/dW = G / sigma - (<G, W> / sigma^2) dsigma/dW,   dsigma/dW = conv_weight_grad(u, w u / sigma),
    sigma's gradient v u^T in W with v = W u / ||W u|| (u held fixed, as in power-iteration SN).
    First order only: nothing differentiates through W's normalisation twice (GradReg and CURE
    take second derivatives in x, never through this node).
    """

    @staticmethod
    def forward(ctx, weight, u_buf, sigma_buf, stride, padding, out_pad):
        v = F.conv2d(u_buf, weight, stride=stride, padding=padding)
        u = F.conv_transpose2d(v, weight, stride=stride, padding=padding, output_padding=out_pad)
        u = u / u.norm().clamp_min(1e-30)
        u_buf.copy_(u)
        wu = F.conv2d(u, weight, stride=stride, padding=padding)
        sigma = wu.norm()
        sigma_buf.copy_(sigma)
        ctx.save_for_backward(weight, u, wu, sigma)
        ctx.conv = (stride, padding)
        return weight / sigma

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, g):
        weight, u, wu, sigma = ctx.saved_tensors
        stride, padding = ctx.conv
        _, grad_sigma_w, _ = torch.ops.aten.convolution_backward(
            wu, u, weight, None, stride, padding, (1, 1), False, (0, 0), 1, (False, True, False))
        coef = _dot(g, weight) / (sigma * sigma * sigma)  # <G, W> / sigma^2, and 1 / sigma of v = w u / sigma
        return torch.addcmul(g / sigma, grad_sigma_w, coef, value=-1.0), None, None, None, None, None


_DEFERRED = False


class deferred_norms:
    """``with deferred_norms():`` SNConv2d layers built inside skip their initial Lanczos run
    (placeholders u = 0, sigma = 1), for ``init_norms`` to run on the model's device after it
    has moved there, or for a checkpoint to fill. On a CPU a full-width LCNN spent about 7 s
    (2 cores) building its twenty initial operator norms in float64 before it moved to a GPU."""

    def __enter__(self):
        global _DEFERRED
        self.saved, _DEFERRED = _DEFERRED, True

    def __exit__(self, *exc):
        global _DEFERRED
        _DEFERRED = self.saved


def init_norms(model):
    """Run every SNConv2d's initial Lanczos where the model now is (after ``deferred_norms``)."""
    for m in model.modules():
        if isinstance(m, SNConv2d):
            m.init_norm()
    return model


class SNConv2d(nn.Conv2d):
    """Conv2d whose weight is divided by the *true operator norm* of the convolution
    on inputs of size ``input_size`` (H, W), stride and padding included.

    The norm is tracked by power iteration alternating conv2d / conv_transpose2d
    with the right-singular-vector estimate ``u`` kept as a buffer: ``init_iters``
    Lanczos steps at construction, one power step per training forward, and a
    converged Lanczos run when the layer switches to eval mode, so the eval-mode forward (which never
    touches buffers, as ``torch.func`` requires) has operator norm <= 1.
    """

    def __init__(self, in_channels, out_channels, kernel_size, input_size, stride=1, padding=0,
                 init_iters=15, eval_iters=300):
        super().__init__(in_channels, out_channels, kernel_size, stride=stride, padding=padding, bias=False)
        self.input_size = _pair(input_size)
        if min(self.input_size) <= 0:
            raise ValueError(f"input_size must be positive, got {input_size}")
        self.eval_iters, self.init_iters = eval_iters, init_iters
        self.out_pad = conv_output_padding(self.input_size, self.kernel_size, self.stride, self.padding)
        self.register_buffer("u", torch.zeros(1, in_channels, *self.input_size))
        self.register_buffer("sigma", torch.ones(()))
        if not _DEFERRED:
            self.init_norm()

    @torch.no_grad()
    def init_norm(self):
        """sigma and u from ``init_iters`` Lanczos steps from the fixed start (seed 0), wherever
        the layer lives: a model built under ``deferred_norms`` runs it after moving to its device."""
        sigma, u = conv_operator_norm(self.weight, self.input_size, self.stride, self.padding,
                                      iters=self.init_iters, tol=0.0)
        self.u.copy_(u)
        self.sigma.copy_(sigma.reshape(()))

    def _conv(self, x, weight):
        return F.conv2d(x, weight, stride=self.stride, padding=self.padding)

    def train(self, mode=True):
        if not mode and self.training:  # switching to eval: converge once
            self.converge()
        return super().train(mode)

    @torch.no_grad()
    def converge(self, iters=None, tol=1e-6):
        """Run Lanczos to convergence and store sigma, rounded up (used for eval)."""
        sigma, u = conv_operator_norm(self.weight, self.input_size, self.stride, self.padding,
                                      iters=iters or self.eval_iters, tol=tol, u=self.u)
        self.u.copy_(u)
        self.sigma.copy_(sigma)

    def forward(self, x):
        _check_spatial(x, self.input_size, "SNConv2d")
        if not self.training:
            return self._conv(x, self.weight / self.sigma)
        with torch.autocast(x.device.type, enabled=False):  # the norm in fp32 even under AMP
            weight = self._power_step()
        return self._conv(x, weight)

    def _power_step(self):
        """One power-iteration step on the buffer u; returns W / sigma with sigma = ||W u||
        (``_SpectralNormalise``: the step, the norm and its gradient in one autograd node)."""
        return _SpectralNormalise.apply(self.weight, self.u, self.sigma, self.stride, self.padding, self.out_pad)

    def operator_norm(self):
        """True operator norm of the normalised conv (converged Lanczos, rounded up)."""
        sigma, _ = conv_operator_norm(self.weight.detach() / self.sigma, self.input_size, self.stride, self.padding,
                                      u=self.u)
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
