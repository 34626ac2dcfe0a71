"""The shared Lanczos core against a dense eigendecomposition."""
import torch

from lcnn_core.linalg import lanczos, tridiagonal


def _symmetric(n, seed):
    a = torch.randn(n, n, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    return a + a.T


def test_full_run_reproduces_the_spectrum_with_an_orthonormal_basis():
    m = _symmetric(12, 0)
    q = torch.ones(12, dtype=torch.float64) / 12 ** 0.5
    alphas, betas, basis = lanczos(lambda v: m @ v, q, 12)
    assert len(alphas) == len(betas) == len(basis) == 12
    assert torch.allclose(basis @ basis.T, torch.eye(12, dtype=torch.float64), atol=1e-12)
    assert torch.allclose(torch.linalg.eigvalsh(tridiagonal(alphas, betas)), torch.linalg.eigvalsh(m), atol=1e-10)
    assert torch.allclose(basis @ m @ basis.T, tridiagonal(alphas, betas), atol=1e-10)


def test_stops_at_an_exact_invariant_subspace_and_on_request():
    m = torch.diag(torch.tensor([3.0, 2.0, 1.0, 0.5], dtype=torch.float64))
    alphas, betas, _ = lanczos(lambda v: m @ v, torch.tensor([1.0, 0, 0, 0], dtype=torch.float64), 4)
    assert alphas == [3.0] and betas == [0.0]  # an eigenvector: no division by beta = 0
    q = torch.tensor([1.0, 1.0, 0.0, 0.0], dtype=torch.float64) / 2 ** 0.5  # spans a 2-d invariant subspace
    tiny = lambda a, b: b[-1] <= 1e-10 * max(map(abs, a))  # noqa: E731
    alphas, betas, basis = lanczos(lambda v: m @ v, q, 4, stop=tiny)
    assert len(alphas) == 2 and basis.shape == (2, 4)
    assert torch.allclose(torch.linalg.eigvalsh(tridiagonal(alphas, betas)), torch.tensor([2.0, 3.0], dtype=torch.float64))


def test_random_unit_rows_are_unit_seeded_and_device_independent():
    import torch as t
    from lcnn_core.linalg import random_unit_rows
    a = random_unit_rows((5, 2, 3), t.Generator().manual_seed(4))
    b = random_unit_rows((5, 2, 3), t.Generator().manual_seed(4), like=t.zeros(1, dtype=t.float32))
    assert a.dtype == t.float64 and b.dtype == t.float32
    t.testing.assert_close(a.flatten(1).norm(dim=1), t.ones(5, dtype=t.float64))
    t.testing.assert_close(a.float(), b)
    assert not t.equal(a, random_unit_rows((5, 2, 3), t.Generator().manual_seed(5)))
