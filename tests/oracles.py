"""Independent oracles shared by the tests: dense matrices of linear layers,
exact input Hessians of the per-sample loss."""
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
