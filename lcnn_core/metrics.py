"""Input-space geometry of a trained classifier (STUDY.md §2; paper §5, Table 1, Fig. 2).

For one sample (x, y), with the model in eval mode and pixels in [0, 1],
``f(x)`` is the per-sample cross-entropy at the true label,
``f(x) = -log softmax(model(x))_y`` (``output="loss"``), the true-class logit
``f(x) = model(x)_y`` (``output="logit"``), or the margin ``f(x) = z_y - max_{j != y} z_j``
with z = model(x) (``output="margin"``; smooth wherever the runner-up class is unique,
which holds almost everywhere). The metrics are

* ``input_gradient_norm``:  ||grad_x f(x)||_2                         -> Tensor[B]
* ``input_hessian_norm``:   ||hess_x f(x)||_2 = max_i |lambda_i(H)|    -> HessianNorm
* ``normalized_curvature``: C_f(x) = ||hess_x f|| / (||grad_x f|| + eps), eps = 1e-6
* ``gradient_robustness``:  ||grad f(x + delta) - grad f(x)|| / ||grad f(x)|| with
  ||delta||_2 = m, and its first-order prediction m * C_f(x)
* ``evaluate_geometry``:    the paper's table row (means and stds over samples).

Shapes: x is B x C x H x W (any B x ... works), y is B int64 labels. Norms are
Euclidean norms over all C*H*W input coordinates, in units of the [0, 1] pixel scale.

Batched Hessian-vector products. In eval mode sample i's output depends on x_i
only, so the Hessian of F(x_1..x_B) = sum_i f(x_i) with respect to the whole batch
is block diagonal, with block i = hess f(x_i). One double backward of F against a
batch of vectors (v_1..v_B) therefore returns (H_1 v_1, ..., H_B v_B): every
sample's HVP at once, with no per-sample loop or vmap. All Hessian estimators
below run on these batched HVPs, with per-sample scalars and stopping rules.
"""
import contextlib
import math
import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from tqdm import tqdm  # text bars: they render in terminals, papermill logs and built books alike

OUTPUTS = ("loss", "logit", "margin")
HESSIAN_METHODS = ("lanczos", "power", "reference")
DEFAULT_ITERS = {"lanczos": 30, "power": 30, "reference": 10}
ROBUSTNESS_MAGNITUDES = (1e-3, 2.5e-3, 5e-3, 1e-2, 2.5e-2, 5e-2, 1e-1)
CURVATURE_EPS = 1e-6  # the reference's epsilon in C_f
# Relative-change stopping tolerance. 1e-4 stopped some samples early on the clustered
# spectra of LCNN models (a Ritz value stalls near the second eigenvalue for a few steps:
# worst 96-98 % of the dense norm on MNIST); 1e-5 gave >= 99.98 % at ~4 more HVPs/sample.
DEFAULT_TOL = 1e-5


# ---------------------------------------------------------------- checks and helpers
def check_batch(x, y):
    """Validate a batch: x a float tensor B x ..., y integer labels of shape B, B > 0.
    Returns y as int64 on x's device. Raises ValueError with a one-line reason."""
    if not torch.is_tensor(x) or not torch.is_tensor(y):
        raise ValueError("x and y must be tensors")
    if not x.is_floating_point():
        raise ValueError(f"x must be a float tensor with pixels in [0, 1], got dtype {x.dtype}")
    if x.dim() < 2:
        raise ValueError(f"x must have a batch dimension (B x ...), got shape {tuple(x.shape)}")
    if y.dim() != 1:
        raise ValueError(f"y must be a 1-D tensor of labels, got shape {tuple(y.shape)}")
    if y.is_floating_point() or y.dtype == torch.bool:
        raise ValueError(f"y must hold integer class labels, got dtype {y.dtype}")
    if len(x) != len(y):
        raise ValueError(f"x and y have different batch sizes: {len(x)} vs {len(y)}")
    if len(x) == 0:
        raise ValueError("empty batch")
    if x[0].numel() == 0:
        raise ValueError(f"x has no input coordinates, shape {tuple(x.shape)}")
    return y.to(device=x.device, dtype=torch.long)


def check_labels(y, logits):
    """Labels must lie in [0, number of model outputs)."""
    k = logits.shape[-1]
    if int(y.min()) < 0 or int(y.max()) >= k:
        raise ValueError(f"labels must lie in [0, {k}) for a model with {k} outputs, "
                         f"got range [{int(y.min())}, {int(y.max())}]")


@contextlib.contextmanager
def eval_mode(model):
    """Run the block with the model in eval mode. A model (or any submodule) found in
    train mode is switched with a warning, and every module's flag is restored on exit
    (eval-mode batch norm keeps samples independent, which the batched HVPs require;
    an LCNN model converges its spectral-norm estimate when switched to eval)."""
    modes = [(m, m.training) for m in model.modules()]
    if any(flag for _, flag in modes):
        warnings.warn("model was in train mode; switched to eval mode for the measurement "
                      "and restored afterwards", stacklevel=3)
        model.eval()
    try:
        yield model
    finally:
        for m, flag in modes:
            m.training = flag


def _check_output(output):
    if output not in OUTPUTS:
        raise ValueError(f"unknown output {output!r}; allowed: {', '.join(OUTPUTS)}")


def per_sample_output(model, x, y, output="loss"):
    """f(x_i) for every sample (Tensor[B]) and the logits (B x K).
    output="loss": cross-entropy at the true label; "logit": the true-class logit;
    "margin": z_y - max_{j != y} z_j (negative where the sample is misclassified)."""
    _check_output(output)
    logits = model(x)
    if logits.dim() != 2:
        raise ValueError(f"model must return B x K logits, got shape {tuple(logits.shape)}")
    check_labels(y, logits)
    if output == "loss":
        return F.cross_entropy(logits, y, reduction="none"), logits
    true = logits.gather(1, y[:, None]).squeeze(1)
    if output == "margin":
        others = logits.scatter(1, y[:, None], float("-inf"))
        return true - others.amax(1), logits
    return true, logits


def _input_gradient(model, x, y, output="loss", create_graph=False):
    """(grad_x f(x_i) for all i as B x ..., logits, x with requires_grad). One backward of sum_i f."""
    x = x.detach().requires_grad_(True)
    with torch.enable_grad():
        f, logits = per_sample_output(model, x, y, output)
        (grad,) = torch.autograd.grad(f.sum(), x, create_graph=create_graph, allow_unused=True)
    if grad is None:  # f does not depend on x
        grad = torch.zeros_like(x)
    return grad, logits, x


def _rows(t):
    return t.flatten(1)


# ---------------------------------------------------------------- gradient
def input_gradient_norm(model, x, y, output="loss"):
    """||grad_x f(x_i)||_2 per sample (Tensor[B], same dtype as x), eval mode.

    One batched backward of sum_i f(x_i); by the block-diagonal argument row i of the
    result is grad f(x_i)."""
    y = check_batch(x, y)
    with eval_mode(model):
        grad, _, _ = _input_gradient(model, x, y, output)
    return _rows(grad).norm(dim=1).detach()


# ---------------------------------------------------------------- Hessian norm
@dataclass
class HessianNorm:
    """Per-sample estimate of ||hess_x f(x_i)||_2 and how it was obtained.

    norm:       Tensor[B], the estimate (dtype of x)
    iterations: Tensor[B] int64, HVPs spent on each sample before its answer froze
    residual:   Tensor[B], ||H v - theta v|| / |theta| for the returned pair (theta, v)
                (Lanczos: beta_k |s_k| / |theta| from the tridiagonal eigenvector s)
    converged:  Tensor[B] bool, stopped by the tolerance (or an exact invariant
                subspace) before the iteration budget; always False for "reference"
    hvps:       int, batched HVP calls made (each computes one HVP for every sample)
    method:     "lanczos", "power" or "reference"
    """
    norm: torch.Tensor
    iterations: torch.Tensor
    residual: torch.Tensor
    converged: torch.Tensor
    hvps: int
    method: str


def _batched_hvp(model, x, y, output):
    """Closure v -> (H_1 v_1, ..., H_B v_B) (rows, B x n) from one shared first backward."""
    grad, logits, x_req = _input_gradient(model, x, y, output, create_graph=True)

    def hvp(v):
        if not grad.requires_grad:  # f is linear in x: H = 0
            return torch.zeros_like(v)
        with torch.enable_grad():
            (hv,) = torch.autograd.grad(grad, x_req, grad_outputs=v.reshape(x.shape),
                                        retain_graph=True, allow_unused=True)
        return torch.zeros_like(v) if hv is None else _rows(hv).detach()

    return hvp, logits


def _start_vectors(x, seed, start):
    """Unit start vectors, B x n: ``start`` if given, else N(0, I) rows from a CPU
    torch.Generator seeded with ``seed`` (row i is the i-th draw), so results do not
    depend on the device."""
    n = x[0].numel()
    if start is None:
        gen = torch.Generator().manual_seed(seed)
        v = torch.randn(len(x), n, generator=gen, dtype=torch.float64)
    else:
        if start.shape != x.shape:
            raise ValueError(f"start must have the shape of x {tuple(x.shape)}, got {tuple(start.shape)}")
        v = _rows(start).to(torch.float64)
    norms = v.norm(dim=1, keepdim=True)
    if (norms == 0).any():
        raise ValueError("start vectors must be non-zero")
    return (v / norms).to(device=x.device, dtype=x.dtype)


def _lanczos(hvp, v, iters, tol):
    """Batched Lanczos with full reorthogonalisation, one tridiagonal T_k per sample.

    Step k: w = H q_k; alpha_k = q_k.w; w -= alpha_k q_k + beta_{k-1} q_{k-1}, then w is
    orthogonalised twice against all previous q (cheap for k <= 30); beta_k = ||w||;
    q_{k+1} = w / beta_k. The estimate is max |Ritz value| = max |eig(T_k)| (Ritz
    values interlace, so it never decreases and never exceeds ||H||). A sample's answer
    freezes once that value changes by at most tol relatively between two steps, or at
    an invariant subspace (beta_k ~ 0, the Ritz values are then exact); frozen samples
    keep being computed with the batch but their answer is fixed.
    """
    B, n = v.shape
    dev, dt = v.device, v.dtype
    f64 = dict(device=dev, dtype=torch.float64)
    eps = torch.finfo(dt).eps
    Q = torch.zeros(B, iters, n, device=dev, dtype=dt)
    alphas = torch.zeros(B, iters, **f64)
    betas = torch.zeros(B, iters, **f64)
    norm = torch.zeros(B, **f64)
    resid = torch.zeros(B, **f64)
    its = torch.zeros(B, dtype=torch.long, device=dev)
    conv = torch.zeros(B, dtype=torch.bool, device=dev)
    active = torch.ones(B, dtype=torch.bool, device=dev)
    q, q_prev, beta_prev = v, torch.zeros_like(v), torch.zeros(B, device=dev, dtype=dt)
    rows = torch.arange(B, device=dev)
    hvps = 0
    for k in range(iters):
        Q[:, k] = q
        w = hvp(q)
        hvps += 1
        alpha = (q * w).sum(1)
        w = w - alpha[:, None] * q - beta_prev[:, None] * q_prev
        basis = Q[:, :k + 1]
        for _ in range(2):  # full reorthogonalisation ("twice is enough")
            w = w - torch.einsum("bk,bkn->bn", torch.einsum("bkn,bn->bk", basis, w), basis)
        beta = w.norm(dim=1)
        alphas[:, k], betas[:, k] = alpha.double(), beta.double()
        T = torch.diag_embed(alphas[:, :k + 1])
        if k > 0:
            off = torch.diag_embed(betas[:, :k], offset=1)
            T = T + off + off.transpose(1, 2)
        evals, evecs = torch.linalg.eigh(T)
        idx = evals.abs().argmax(dim=1)
        theta = evals[rows, idx].abs()
        # Lanczos residual of the Ritz pair: ||H y - theta y|| = beta_k |last entry of s|
        res = betas[:, k] * evecs[rows, k, idx].abs() / theta.clamp_min(torch.finfo(torch.float64).tiny)
        breakdown = betas[:, k] <= 100 * eps * torch.maximum(theta, evals.abs().amax(dim=1))
        settled = (theta - norm).abs() <= tol * theta if k > 0 else torch.zeros_like(active)
        norm = torch.where(active, theta, norm)
        resid = torch.where(active, res, resid)
        its = torch.where(active, torch.full_like(its, k + 1), its)
        stop = active & (settled | breakdown)
        conv |= stop
        active &= ~stop
        if not active.any():
            break
        safe = torch.where(breakdown, torch.ones_like(beta), beta)
        q_prev, q = q, torch.where(breakdown[:, None], torch.zeros_like(w), w / safe[:, None])
        beta_prev = torch.where(breakdown, torch.zeros_like(beta), beta)
    return norm, its, resid, conv, hvps


def _power(hvp, u, iters, tol, readout):
    """Batched power iteration u <- H u / ||H u||.

    readout="norm": the estimate after each step is ||H u|| (a lower bound on ||H||
    that converges to it even when H is indefinite); a sample freezes once it changes
    by at most tol relatively. readout="rayleigh": the reference's |u^T H u| after
    exactly ``iters`` steps, no tolerance (on an indefinite H this Rayleigh quotient
    mixes eigenvalues of both signs and under-estimates ||H||).
    """
    B = u.shape[0]
    dev = u.device
    f64 = dict(device=dev, dtype=torch.float64)
    norm = torch.zeros(B, **f64)
    resid = torch.zeros(B, **f64)
    its = torch.zeros(B, dtype=torch.long, device=dev)
    conv = torch.zeros(B, dtype=torch.bool, device=dev)
    active = torch.ones(B, dtype=torch.bool, device=dev)
    tiny = torch.finfo(torch.float64).tiny
    hvps = 0
    for k in range(iters):
        w = hvp(u)
        hvps += 1
        rayleigh = (u * w).sum(1).double()
        wnorm = w.norm(dim=1).double()
        if readout == "norm":
            est = wnorm
            theta = torch.where(rayleigh < 0, -wnorm, wnorm)  # signed value for the residual
        else:
            est = rayleigh.abs()
            theta = rayleigh
        res = (w.double() - theta[:, None] * u.double()).norm(dim=1) / est.clamp_min(tiny)
        settled = ((est - norm).abs() <= tol * est) if (readout == "norm" and k > 0) \
            else torch.zeros_like(active)
        if readout == "norm":
            settled |= wnorm == 0  # H u = 0: nothing more to learn from this start vector
        norm = torch.where(active, est, norm)
        resid = torch.where(active, res, resid)
        its = torch.where(active, torch.full_like(its, k + 1), its)
        conv |= active & settled
        active &= ~settled
        if not active.any():
            break
        safe = torch.where(wnorm > 0, wnorm, torch.ones_like(wnorm)).to(u.dtype)
        u = torch.where((wnorm > 0)[:, None], w / safe[:, None], u)
    return norm, its, resid, conv, hvps


def input_hessian_norm(model, x, y, method="lanczos", iters=None, tol=DEFAULT_TOL, seed=0,
                       output="loss", start=None):
    """Per-sample spectral norm ||hess_x f(x_i)||_2 = max_j |lambda_j| for a whole batch.

    All samples advance together on batched Hessian-vector products of sum_i f(x_i)
    (block-diagonal Hessian in eval mode; see the module docstring); each sample has
    its own scalars and stopping rule.

    method:
      "lanczos"   (default) Lanczos with full reorthogonalisation; estimate max |Ritz
                  value| of the per-sample tridiagonal matrix; a sample stops when that
                  value changes by <= tol relatively. iters=None -> 30 steps at most.
      "power"     power iteration with the ||H u|| readout, same stopping rule; 30 max.
      "reference" the reference code's readout |u^T H u| after 10 power iterations;
                  a lower bound that under-estimates indefinite Hessians (STUDY.md §2).
    All three return values <= ||H|| (up to rounding). tol defaults to 1e-5 (see
    DEFAULT_TOL: with 1e-4 the Lanczos value can stall for a step on clustered spectra).

    Start vectors: ``start`` (shape of x) if given, else N(0, I) draws from a CPU
    torch.Generator seeded with ``seed`` (sample i of the batch gets the i-th draw).
    Works in the dtype of x and the model (float32 or float64; the tridiagonal
    eigenproblems are solved in float64). Returns a ``HessianNorm``.
    """
    if method not in HESSIAN_METHODS:
        raise ValueError(f"unknown method {method!r}; allowed: {', '.join(HESSIAN_METHODS)}")
    iters = DEFAULT_ITERS[method] if iters is None else iters
    if not isinstance(iters, int) or iters < 1:
        raise ValueError(f"iters must be a positive integer, got {iters!r}")
    if not tol >= 0:
        raise ValueError(f"tol must be >= 0, got {tol}")
    _check_output(output)
    y = check_batch(x, y)
    with eval_mode(model):
        hvp, _ = _batched_hvp(model, x, y, output)
        v = _start_vectors(x, seed, start)
        if method == "lanczos":
            norm, its, resid, conv, hvps = _lanczos(hvp, v, min(iters, x[0].numel()), tol)
        else:
            readout = "norm" if method == "power" else "rayleigh"
            norm, its, resid, conv, hvps = _power(hvp, v, iters, tol, readout)
    return HessianNorm(norm=norm.to(x.dtype), iterations=its, residual=resid.to(x.dtype),
                       converged=conv, hvps=hvps, method=method)


# ---------------------------------------------------------------- normalised curvature
def normalized_curvature(grad_norm, hess_norm, eps=CURVATURE_EPS):
    """C_f(x_i) = ||hess f(x_i)||_2 / (||grad f(x_i)||_2 + eps) per sample (eps = 1e-6 as in
    the reference). ``hess_norm`` may be a Tensor[B] or a HessianNorm. The paper's table
    reports the mean over samples of this ratio (not a ratio of means)."""
    if isinstance(hess_norm, HessianNorm):
        hess_norm = hess_norm.norm
    grad_norm, hess_norm = torch.as_tensor(grad_norm), torch.as_tensor(hess_norm)
    if grad_norm.shape != hess_norm.shape:
        raise ValueError(f"grad_norm and hess_norm shapes differ: {tuple(grad_norm.shape)} "
                         f"vs {tuple(hess_norm.shape)}")
    return hess_norm / (grad_norm + eps)


# ---------------------------------------------------------------- gradient robustness
def gradient_robustness(model, x, y, magnitudes=ROBUSTNESS_MAGNITUDES, n_draws=4, seed=0,
                        hessian=None, output="loss", eps=CURVATURE_EPS):
    """Relative change of the input gradient under random perturbations (paper Fig. 2).

    relative_change = ||grad f(x + delta) - grad f(x)||_2 / (||grad f(x)||_2 + eps), with
    delta = m u, u a per-sample uniformly random unit direction (N(0, I) normalised,
    CPU torch.Generator seeded with ``seed``); draw d uses the same direction for every
    magnitude m, so each draw traces one ray. x + delta is NOT clamped to [0, 1]: the
    perturbation is exactly of norm m, as the first-order argument assumes.

    first_order = m * C_f(x), with C_f from the converged Lanczos Hessian norm (pass a
    precomputed ``hessian`` HessianNorm of the same output to skip it). Since
    ||grad f(x + delta) - grad f(x)|| = ||H delta|| + O(m^2) <= m ||H||, the ratio
    relative_change / first_order stays <= 1 as m -> 0.

    Returns a tidy DataFrame with columns sample, magnitude, draw, relative_change,
    first_order (one row per sample, magnitude and draw; ``sample`` is the row in x).
    """
    y = check_batch(x, y)
    magnitudes = [float(m) for m in magnitudes]
    if not magnitudes or min(magnitudes) < 0:
        raise ValueError(f"magnitudes must be a non-empty list of values >= 0, got {magnitudes}")
    if not isinstance(n_draws, int) or n_draws < 1:
        raise ValueError(f"n_draws must be a positive integer, got {n_draws!r}")
    B, n = len(x), x[0].numel()
    with eval_mode(model):
        g0, _, _ = _input_gradient(model, x, y, output)
        g0 = _rows(g0)
        g0_norm = g0.norm(dim=1)
        if hessian is None:
            hessian = input_hessian_norm(model, x, y, seed=seed, output=output)
        elif hessian.norm.shape != (B,):
            raise ValueError(f"hessian holds {tuple(hessian.norm.shape)} norms for a batch of {B}")
        curvature = normalized_curvature(g0_norm, hessian.norm.to(g0_norm), eps)
        gen = torch.Generator().manual_seed(seed)
        frames = []
        for d in range(n_draws):
            u = torch.randn(B, n, generator=gen, dtype=torch.float64)
            u = (u / u.norm(dim=1, keepdim=True)).to(device=x.device, dtype=x.dtype)
            for m in magnitudes:
                g, _, _ = _input_gradient(model, x + m * u.reshape(x.shape), y, output)
                change = (_rows(g) - g0).norm(dim=1) / (g0_norm + eps)
                frames.append(pd.DataFrame({
                    "sample": np.arange(B), "magnitude": m, "draw": d,
                    "relative_change": change.detach().cpu().double().numpy(),
                    "first_order": (m * curvature).detach().cpu().double().numpy(),
                }))
    return pd.concat(frames, ignore_index=True)


# ---------------------------------------------------------------- table row
def model_device_dtype(model):
    """(device, dtype) of the model's first floating-point parameter or buffer, else (None, None)."""
    for t in list(model.parameters()) + list(model.buffers()):
        if t.is_floating_point():
            return t.device, t.dtype
    return None, None


def sample_batches(model, batches, max_samples=None, desc="", progress=True):
    """Yield checked (x, y) batches on the model's device and dtype, at most ``max_samples``
    samples in all, with a tqdm bar; ValueError if there is no sample at all."""
    if max_samples is not None and (not isinstance(max_samples, int) or max_samples < 1):
        raise ValueError(f"max_samples must be a positive integer or None, got {max_samples!r}")
    device, dtype = model_device_dtype(model)
    seen = 0
    with tqdm(total=max_samples, disable=not progress, unit="img", desc=desc) as bar:
        for x, y in batches:
            if max_samples is not None:
                x, y = x[:max_samples - seen], y[:max_samples - seen]
            y = check_batch(x, y)
            if device is not None:
                x, y = x.to(device=device, dtype=dtype), y.to(device)
            yield x, y
            seen += len(x)
            bar.update(len(x))
            if max_samples is not None and seen >= max_samples:
                break
    if seen == 0:
        raise ValueError("no samples: batches is empty")


def evaluate_geometry(model, batches, max_samples=None, hessian_methods=("lanczos", "reference"),
                      progress=True, return_samples=False, output="loss", iters=None, tol=DEFAULT_TOL,
                      seed=0, eps=CURVATURE_EPS):
    """The paper's Table 1 row over a data set: mean and std over samples of
    ||grad f||, ||hess f|| and C_f (one column pair per Hessian method), and accuracy.

    batches: any iterable of (x, y) with x float in [0, 1] (B x C x H x W) and y int64;
    x is moved to the model's device and dtype. max_samples: stop after this many
    samples (the last batch is truncated). Batch i uses start-vector seed ``seed + i``.
    Stds are over samples with ddof=0 (a spread over samples, not over runs).

    Returns a dict with n_samples, accuracy (%), grad_norm_mean / _std, and for each
    method m: hess_norm_{m}_mean / _std, curvature_{m}_mean / _std (mean of the per-sample
    ratio C_f), iterations_{m}_mean, hvps_{m}; plus output (all JSON-serialisable). With
    return_samples=True, returns (dict, samples): samples is a DataFrame with one row per
    sample (sample, label, correct, grad_norm, hess_norm_{m}, curvature_{m}, iterations_{m}).
    """
    methods = tuple(hessian_methods)
    for m in methods:
        if m not in HESSIAN_METHODS:
            raise ValueError(f"unknown method {m!r}; allowed: {', '.join(HESSIAN_METHODS)}")
    _check_output(output)
    cols = {k: [] for k in ["label", "correct", "grad_norm"]
            + [f"{p}_{m}" for m in methods for p in ("hess_norm", "curvature", "iterations")]}
    hvps = dict.fromkeys(methods, 0)
    seen = 0
    with eval_mode(model):
        for i, (x, y) in enumerate(sample_batches(model, batches, max_samples, "geometry", progress)):
            grad, logits, _ = _input_gradient(model, x, y, output)
            gnorm = _rows(grad).norm(dim=1)
            cols["label"].append(y.cpu().numpy())
            cols["correct"].append((logits.argmax(1) == y).cpu().numpy())
            cols["grad_norm"].append(gnorm.double().cpu().numpy())
            for m in methods:
                h = input_hessian_norm(model, x, y, method=m, iters=iters, tol=tol,
                                       seed=seed + i, output=output)
                hvps[m] += h.hvps
                cols[f"hess_norm_{m}"].append(h.norm.double().cpu().numpy())
                cols[f"curvature_{m}"].append(
                    normalized_curvature(gnorm, h.norm, eps).double().cpu().numpy())
                cols[f"iterations_{m}"].append(h.iterations.cpu().numpy())
            seen += len(x)
    samples = pd.DataFrame({k: np.concatenate(v) for k, v in cols.items()})
    samples.insert(0, "sample", np.arange(seen))
    row = {"n_samples": seen, "accuracy": 100.0 * float(samples["correct"].mean()), "output": output,
           "grad_norm_mean": samples["grad_norm"].mean(), "grad_norm_std": samples["grad_norm"].std(ddof=0)}
    for m in methods:
        for p in ("hess_norm", "curvature"):
            row[f"{p}_{m}_mean"] = samples[f"{p}_{m}"].mean()
            row[f"{p}_{m}_std"] = samples[f"{p}_{m}"].std(ddof=0)
        row[f"iterations_{m}_mean"] = samples[f"iterations_{m}"].mean()
        row[f"hvps_{m}"] = hvps[m]
    row = {k: (float(v) if isinstance(v, (np.floating, float)) else v) for k, v in row.items()}
    return (row, samples) if return_samples else row
