"""Input-space geometry of a trained classifier (STUDY.md §2; paper §5, Table 1, Fig. 2).

For one sample (x, y), with the model in eval mode and pixels in [0, 1],
``f(x)`` is the per-sample cross-entropy at the true label,
``f(x) = -log softmax(model(x))_y`` (``output="loss"``), or the true-class logit
``f(x) = model(x)_y`` (``output="logit"``). The metrics are

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
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from .checks import check_batch, check_output, eval_mode, input_gradients, sample_batches
from .linalg import batched_lanczos, batched_power, random_unit_rows

HESSIAN_METHODS = ("lanczos", "power", "reference")
DEFAULT_ITERS = {"lanczos": 30, "power": 30, "reference": 10}
ROBUSTNESS_MAGNITUDES = (1e-3, 2.5e-3, 5e-3, 1e-2, 2.5e-2, 5e-2, 1e-1)
CURVATURE_EPS = 1e-6  # the reference's epsilon in C_f
# Relative-change stopping tolerance. 1e-4 stopped some samples early on the clustered
# spectra of LCNN models (a Ritz value stalls near the second eigenvalue for a few steps:
# worst 96-98 % of the dense norm on MNIST); 1e-5 gave >= 99.98 % at ~4 more HVPs/sample.
DEFAULT_TOL = 1e-5


def _rows(t):
    return t.flatten(1)


# ---------------------------------------------------------------- gradient
def input_gradient_norm(model, x, y, output="loss"):
    """||grad_x f(x_i)||_2 per sample (Tensor[B], same dtype as x), eval mode.

    One batched backward of sum_i f(x_i); by the block-diagonal argument row i of the
    result is grad f(x_i)."""
    y = check_batch(x, y)
    with eval_mode(model):
        grad, *_ = input_gradients(model, x, y, output)
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
    grad, _, logits, x_req = input_gradients(model, x, y, output, create_graph=True)

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
    torch.Generator seeded with ``seed`` (row i is the i-th draw; linalg.random_unit_rows),
    so results do not depend on the device."""
    n = x[0].numel()
    if start is None:
        return random_unit_rows((len(x), n), torch.Generator().manual_seed(seed), like=x)
    if start.shape != x.shape:
        raise ValueError(f"start must have the shape of x {tuple(x.shape)}, got {tuple(start.shape)}")
    v = _rows(start).to(torch.float64)
    norms = v.norm(dim=1, keepdim=True)
    if (norms == 0).any():
        raise ValueError("start vectors must be non-zero")
    return (v / norms).to(device=x.device, dtype=x.dtype)


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
    check_output(output)
    y = check_batch(x, y)
    with eval_mode(model):
        hvp, _ = _batched_hvp(model, x, y, output)
        v = _start_vectors(x, seed, start)
        if method == "lanczos":
            norm, its, resid, conv, hvps = batched_lanczos(hvp, v, min(iters, x[0].numel()), tol)
        else:
            readout = "norm" if method == "power" else "rayleigh"
            norm, its, resid, conv, hvps = batched_power(hvp, v, iters, tol, readout)
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
        g0, *_ = input_gradients(model, x, y, output)
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
            u = random_unit_rows((B, n), gen, like=x)
            for m in magnitudes:
                g, *_ = input_gradients(model, x + m * u.reshape(x.shape), y, output)
                change = (_rows(g) - g0).norm(dim=1) / (g0_norm + eps)
                frames.append(pd.DataFrame({
                    "sample": np.arange(B), "magnitude": m, "draw": d,
                    "relative_change": change.detach().cpu().double().numpy(),
                    "first_order": (m * curvature).detach().cpu().double().numpy(),
                }))
    return pd.concat(frames, ignore_index=True)


# ---------------------------------------------------------------- table row
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
    check_output(output)
    cols = {k: [] for k in ["label", "correct", "grad_norm"]
            + [f"{p}_{m}" for m in methods for p in ("hess_norm", "curvature", "iterations")]}
    hvps = dict.fromkeys(methods, 0)
    seen = 0
    with eval_mode(model):
        for i, (x, y) in enumerate(sample_batches(model, batches, max_samples, "geometry", progress)):
            grad, _, logits, _ = input_gradients(model, x, y, output)
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
