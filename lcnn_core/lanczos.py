"""Lanczos with full reorthogonalisation on a symmetric operator M, one start vector.

Shared by ``layers.conv_operator_norm`` (top eigenpair of A^T A) and
``hessian.ParamHessian.density`` (stochastic Lanczos quadrature). The batched
per-sample version for input Hessians is ``metrics._lanczos``.
"""
import torch


def lanczos(matvec, q, steps, stop=None, basis=None):
    """Up to ``steps`` Lanczos steps from the unit vector q (flat, length n).

    Step k: w = M q_k, alpha_k = q_k . w (in float64), w -= alpha_k q_k + beta_{k-1} q_{k-1},
    then w is orthogonalised twice against every q so far ("twice is enough"),
    beta_k = ||w|| and q_{k+1} = w / beta_k. After each step ``stop(alphas, betas)``
    may end the run; it also ends at an exact invariant subspace (beta_k = 0).

    Returns (alphas, betas, basis): two lists of m floats (betas[-1] is the last
    step's beta, the residual coefficient) and the m x n tensor of q_0 .. q_{m-1}.
    ``basis``: an optional preallocated (>= steps) x n buffer, reused between calls.
    """
    if basis is None:
        basis = torch.empty(steps, q.numel(), dtype=q.dtype, device=q.device)
    alphas, betas = [], []
    for k in range(steps):
        basis[k] = q
        w = matvec(q)
        alphas.append(float(q.double() @ w.double()))
        w = w - alphas[-1] * q - (betas[-1] * basis[k - 1] if k else 0)
        for _ in range(2):
            w = w - basis[: k + 1].T @ (basis[: k + 1] @ w)
        betas.append(float(w.norm()))
        if k + 1 == steps or betas[-1] == 0 or (stop is not None and stop(alphas, betas)):
            break
        q = w / betas[-1]
    return alphas, betas, basis[: len(alphas)]


def tridiagonal(alphas, betas):
    """The m x m Lanczos matrix T (float64): diagonal alphas, off-diagonals betas[:m-1]."""
    m = len(alphas)
    tri = torch.diag(torch.tensor(alphas, dtype=torch.float64))
    if m > 1:
        off = torch.tensor(betas[: m - 1], dtype=torch.float64)
        tri += torch.diag(off, 1) + torch.diag(off, -1)
    return tri
