"""The project's linear algebra: eigenvalue iterations on symmetric operators given as
matrix-vector products, and seeded random directions.

* ``lanczos``: Lanczos with full reorthogonalisation from one start vector, returning the
  tridiagonal coefficients; used by ``layers.conv_operator_norm`` (top eigenpair of A^T A)
  and ``hessian.ParamHessian.density`` (stochastic Lanczos quadrature); ``tridiagonal``
  builds T from them.
* ``batched_lanczos`` / ``batched_power``: B independent symmetric operators advanced
  together by one batched matvec (B x n -> B x n), each with its own scalars and stopping
  rule, estimating max |eigenvalue| per row; used by ``metrics.input_hessian_norm`` on
  per-sample input Hessians. The batched Lanczos keeps the whole recurrence per row and
  solves every T_k (its stopping rule reads the Ritz values at every step), so it is a
  loop of its own rather than B calls of ``lanczos``.
* ``random_unit_rows``: N(0, I) draws normalised per row, from a CPU generator in float64,
  so a seed gives the same directions on every device.
"""
import torch


def random_unit_rows(shape, generator, like=None):
    """Tensor of ``shape`` (B x ...) whose rows (flattened per leading index) are unit-norm
    N(0, I) directions: drawn in float64 from ``generator`` (a CPU torch.Generator; row i is the
    i-th draw), normalised, then cast to ``like``'s device and dtype if given."""
    v = torch.randn(shape, generator=generator, dtype=torch.float64)
    norms = v.flatten(1).norm(dim=1)
    v = v / norms.view(-1, *([1] * (v.dim() - 1)))
    return v if like is None else v.to(device=like.device, dtype=like.dtype)


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


def batched_lanczos(matvec, v, iters, tol):
    """Lanczos with full reorthogonalisation on B operators at once, one tridiagonal T_k per row.

    ``matvec``: B x n -> B x n, row i the product with operator i (a batch of input-Hessian
    HVPs); ``v``: B x n unit start rows. Returns (norm, iterations, residual, converged, matvecs):
    per row the estimate of max |eigenvalue| (float64), the steps spent, the Ritz residual
    ||M y - theta y|| / |theta|, whether it stopped before the budget, and the batched calls made.


    Step k: w = H q_k; alpha_k = q_k.w; w -= alpha_k q_k + beta_{k-1} q_{k-1}, then w is
    orthogonalised twice against all previous q (cheap for k <= 30); beta_k = ||w||;
    q_{k+1} = w / beta_k. The estimate is max |Ritz value| = max |eig(T_k)| (Ritz
    values interlace, so it never decreases and never exceeds ||H||). A row's answer
    freezes once that value changes by at most tol relatively between two steps, or at
    an invariant subspace (beta_k ~ 0, the Ritz values are then exact); frozen rows
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
    calls = 0
    for k in range(iters):
        Q[:, k] = q
        w = matvec(q)
        calls += 1
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
    return norm, its, resid, conv, calls


def batched_power(matvec, u, iters, tol, readout):
    """Power iteration u <- M u / ||M u|| on B operators at once (``matvec`` and the returned
    tuple as in ``batched_lanczos``; H below is each row's operator).

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
    calls = 0
    for k in range(iters):
        w = matvec(u)
        calls += 1
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
    return norm, its, resid, conv, calls
