"""Hessian of the training loss w.r.t. the parameters (STUDY.md §5; Yao et al. 2018).

For parameters theta in R^P (every parameter with requires_grad, flattened in
``model.parameters()`` order) and a fixed list of batches (x_b, y_b) holding N samples,
the loss is the sample mean

    L(theta) = sum_b (|b| / N) * loss_fn(model(x_b), y_b),

with ``loss_fn`` returning the MEAN over its batch (e.g. ``F.cross_entropy``), and
H = hess_theta L (P x P, never formed). Everything runs on Hessian-vector products
H v (one double backward per batch, summed), with the model in eval mode.

``ParamHessian`` has three verbs, as PyHessian (written here from the algorithms):

* ``eigenvalues(top_n, iters, tol)``: power iteration with deflation;
* ``trace(iters)``:                   Hutchinson's estimator, Rademacher probes;
* ``density(iters, n_v)``:            stochastic Lanczos quadrature (SLQ) nodes and
  weights; ``smoothed_density`` turns them into a Gaussian-smoothed curve on a grid.

``loss_landscape_1d`` / ``loss_landscape_2d`` evaluate L(theta + a d1 + b d2) along
given directions (Yao et al. use the top one / two eigenvectors).

Vectors are flat 1-D tensors of length P, on the model's device and dtype; random
probes come from a CPU ``torch.Generator`` (results do not depend on the device).
"""
import contextlib
import math
from dataclasses import dataclass

import numpy as np
import torch

from .linalg import lanczos, tridiagonal
from .checks import eval_mode, model_device_dtype


def _parameters(model):
    return [p for p in model.parameters() if p.requires_grad]


def flatten(tensors):
    """One flat vector (P) from a list of tensors shaped like the parameters."""
    return torch.cat([t.reshape(-1) for t in tensors])


def unflatten(v, params):
    """The list of tensors shaped like ``params`` that the flat vector v (P) holds."""
    out, i = [], 0
    for p in params:
        out.append(v[i:i + p.numel()].view_as(p))
        i += p.numel()
    return out


@contextlib.contextmanager
def _shifted(params, delta):
    """Parameters temporarily set to theta + delta (flat), restored exactly on exit."""
    saved = [p.detach().clone() for p in params]
    try:
        with torch.no_grad():
            for p, d in zip(params, unflatten(delta, params)):
                p.add_(d)
        yield
    finally:
        with torch.no_grad():
            for p, s in zip(params, saved):
                p.copy_(s)


def _on_model(model, batches):
    """Batches moved to the model's device (x also to its dtype), and their sample count."""
    device, dtype = model_device_dtype(model)
    out = [(x.to(device=device, dtype=dtype), y.to(device)) for x, y in batches]
    n = sum(len(y) for _, y in out)
    if n == 0:
        raise ValueError("no samples: batches is empty")
    return out, n


def batch_loss(model, loss_fn, batches):
    """L(theta): the sample-mean loss over all batches (float), eval mode, no grad."""
    batches, n = _on_model(model, batches)
    total = 0.0
    with eval_mode(model), torch.no_grad():
        for x, y in batches:
            total += float(loss_fn(model(x), y)) * len(y) / n
    return total


@dataclass
class TraceEstimate:
    """Hutchinson estimate of tr(H): mean and standard error of the probes' v^T H v."""
    mean: float
    std_error: float
    samples: np.ndarray  # v_i^T H v_i per probe, shape (iters,)


class ParamHessian:
    """Hessian of the sample-mean training loss w.r.t. the model's parameters.

    model: nn.Module (kept in eval mode during every product); loss_fn(logits, y) ->
    the batch MEAN loss; batches: iterable of (x, y), stored on the model's device.
    """

    def __init__(self, model, loss_fn, batches):
        self.model, self.loss_fn = model, loss_fn
        self.params = _parameters(model)
        self.batches, self.n_samples = _on_model(model, batches)
        self.dim = sum(p.numel() for p in self.params)
        self.device, self.dtype = self.params[0].device, self.params[0].dtype
        self.hvps = 0  # Hessian-vector products computed so far (each over all batches)

    # ------------------------------------------------------------ the one HVP
    def hvp(self, v):
        """H v for a flat v (P): per batch, g = grad L_b (create_graph) and
        grad (g . v); summed with weights |b| / N. Returns a detached flat vector (P)."""
        out = torch.zeros(self.dim, device=self.device, dtype=self.dtype)
        vs = unflatten(v.to(device=self.device, dtype=self.dtype), self.params)
        with eval_mode(self.model), torch.enable_grad():
            for x, y in self.batches:
                loss = self.loss_fn(self.model(x), y) * (len(y) / self.n_samples)
                grads = torch.autograd.grad(loss, self.params, create_graph=True)
                dot = sum((g * u).sum() for g, u in zip(grads, vs))
                hv = torch.autograd.grad(dot, self.params, allow_unused=True)
                out += flatten([torch.zeros_like(p) if h is None else h for p, h in zip(self.params, hv)])
        self.hvps += 1
        return out.detach()

    def gradient(self):
        """grad L (flat, P), summed over the batches like ``hvp``."""
        out = torch.zeros(self.dim, device=self.device, dtype=self.dtype)
        with eval_mode(self.model), torch.enable_grad():
            for x, y in self.batches:
                loss = self.loss_fn(self.model(x), y) * (len(y) / self.n_samples)
                out += flatten(torch.autograd.grad(loss, self.params))
        return out

    def _randn(self, gen):
        return torch.randn(self.dim, generator=gen, dtype=torch.float64).to(self.device, self.dtype)

    def _rademacher(self, gen):
        v = torch.randint(0, 2, (self.dim,), generator=gen, dtype=torch.int64) * 2 - 1
        return v.to(self.device, self.dtype)

    # ------------------------------------------------------------ the three verbs
    def eigenvalues(self, top_n=1, iters=100, tol=1e-3, seed=0):
        """Top ``top_n`` eigenpairs by power iteration with deflation.

        For k = 1..top_n: start from a unit N(0, I) vector; each step
        v <- orth(H v) / ||.||, where orth removes the components along the k-1
        eigenvectors already found (Gram-Schmidt, applied before and after the HVP), so
        the iteration runs on H restricted to their orthogonal complement. Estimate:
        the Rayleigh quotient lambda = v^T H v. Stop when
        |lambda_t - lambda_{t-1}| <= tol * |lambda_t| (relative tolerance), or after
        ``iters`` steps. Finds the eigenvalues of largest MAGNITUDE (the dominant ones;
        at a minimum of the loss these are the top positive ones).

        Returns (eigenvalues: list of top_n floats, eigenvectors: top_n x P tensor with
        orthonormal rows, iterations: list of steps used per eigenvalue).
        """
        if not isinstance(top_n, int) or not 1 <= top_n <= self.dim:
            raise ValueError(f"top_n must be an integer in [1, {self.dim}], got {top_n!r}")
        gen = torch.Generator().manual_seed(seed)
        vals, vecs, its = [], [], []

        def orth(w):
            for u in vecs:
                w = w - (u @ w) * u
            return w

        for _ in range(top_n):
            v = orth(self._randn(gen))
            v = v / v.norm()
            lam, steps = None, 0
            for steps in range(1, iters + 1):
                hv = orth(self.hvp(v))
                new = float(v.double() @ hv.double())
                nrm = hv.norm()
                if nrm == 0:  # v is in the null space of the deflated H
                    lam = new
                    break
                v = orth(hv / nrm)
                v = v / v.norm()
                if lam is not None and abs(new - lam) <= tol * abs(new):
                    lam = new
                    break
                lam = new
            vals.append(lam)
            vecs.append(v)
            its.append(steps)
        return vals, torch.stack(vecs), its

    def trace(self, iters=100, seed=0):
        """Hutchinson's estimator tr(H) ~ (1/m) sum_i v_i^T H v_i, v_i with iid +-1 entries
        (Rademacher), m = ``iters`` probes, no early stop. Unbiased; its variance per probe
        is 2 (||H||_F^2 - sum_j H_jj^2). Returns a ``TraceEstimate``."""
        if not isinstance(iters, int) or iters < 1:
            raise ValueError(f"iters must be a positive integer, got {iters!r}")
        gen = torch.Generator().manual_seed(seed)
        samples = np.empty(iters)
        for i in range(iters):
            v = self._rademacher(gen)
            samples[i] = float(v.double() @ self.hvp(v).double())
        se = samples.std(ddof=1) / math.sqrt(iters) if iters > 1 else float("nan")
        return TraceEstimate(mean=float(samples.mean()), std_error=float(se), samples=samples)

    def density(self, iters=50, n_v=1, seed=0):
        """Spectral density by stochastic Lanczos quadrature (Golub-Welsch / Ubaru et al.).

        For each of ``n_v`` runs: v = Rademacher / sqrt(P) (unit norm); m = min(iters, P)
        Lanczos steps with full reorthogonalisation (stops early at an invariant subspace,
        beta < 1e-10 * |alpha|-scale) give the tridiagonal T = S diag(theta) S^T; the
        quadrature nodes are theta_j and the weights S_{0j}^2 / n_v (each run's weights sum
        to 1, so all weights sum to 1). v^T f(H) v ~ sum_j w_j f(theta_j).

        Returns (nodes, weights): two float64 numpy arrays of shape (n_v, m') with m' <= m
        (runs that stopped early are zero-weight padded).
        """
        if not isinstance(iters, int) or iters < 1 or not isinstance(n_v, int) or n_v < 1:
            raise ValueError(f"iters and n_v must be positive integers, got {iters!r}, {n_v!r}")
        gen = torch.Generator().manual_seed(seed)
        m = min(iters, self.dim)
        nodes, weights = np.zeros((n_v, m)), np.zeros((n_v, m))

        def breakdown(alphas, betas):  # beta tiny against the scale of T so far: invariant subspace
            scale = max(abs(a) for a in alphas) + max(betas[:-1], default=0.0)
            return betas[-1] <= 1e-10 * max(scale, 1e-30)

        for r in range(n_v):
            q = self._rademacher(gen)
            alphas, betas, _ = lanczos(self.hvp, q / q.norm(), m, breakdown)
            theta, S = np.linalg.eigh(tridiagonal(alphas, betas).numpy())
            nodes[r, :len(theta)] = theta
            weights[r, :len(theta)] = S[0] ** 2 / n_v
        return nodes, weights


def smoothed_density(nodes, weights, grid=None, sigma=None, num=1000):
    """Gaussian-smoothed spectral density on a grid: sum_j w_j N(t; theta_j, sigma^2).

    nodes, weights: arrays from ``ParamHessian.density`` (any shape, flattened).
    grid: 1-D array (default: ``num`` points spanning the nodes +- 5 sigma).
    sigma: kernel width (default: 1 % of the node range, at least 1e-8).
    Returns (grid, density): it integrates to sum(weights) (= 1) over a covering grid.
    """
    nodes, weights = np.ravel(nodes), np.ravel(weights)
    lo, hi = float(nodes.min()), float(nodes.max())
    if sigma is None:
        sigma = max(0.01 * (hi - lo), 1e-8)
    if grid is None:
        grid = np.linspace(lo - 5 * sigma, hi + 5 * sigma, num)
    grid = np.asarray(grid, dtype=float)
    k = np.exp(-0.5 * ((grid[:, None] - nodes[None, :]) / sigma) ** 2) / (sigma * math.sqrt(2 * math.pi))
    return grid, k @ weights


# ---------------------------------------------------------------- loss landscapes
def loss_landscape_1d(model, loss_fn, batches, direction, alphas):
    """L(theta + a d) for each a in ``alphas`` (d a flat P vector, e.g. the top eigenvector).
    Eval mode; parameters restored afterwards. Returns a float64 numpy array (len(alphas))."""
    params = _parameters(model)
    d = direction.to(device=params[0].device, dtype=params[0].dtype)
    out = []
    for a in alphas:
        with _shifted(params, float(a) * d):
            out.append(batch_loss(model, loss_fn, batches))
    return np.array(out)


def loss_landscape_2d(model, loss_fn, batches, d1, d2, alphas, betas=None):
    """L(theta + a d1 + b d2) on the grid alphas x betas (default betas = alphas); Yao et
    al. use the top two eigenvectors. Returns float64 numpy (len(alphas), len(betas))."""
    params = _parameters(model)
    betas = alphas if betas is None else betas
    d1 = d1.to(device=params[0].device, dtype=params[0].dtype)
    d2 = d2.to(device=params[0].device, dtype=params[0].dtype)
    out = np.empty((len(alphas), len(betas)))
    for i, a in enumerate(alphas):
        for j, b in enumerate(betas):
            with _shifted(params, float(a) * d1 + float(b) * d2):
                out[i, j] = batch_loss(model, loss_fn, batches)
    return out
