"""Input checks and model-state helpers shared by every measurement (metrics, attacks,
tightness, hessian) and the one per-sample input gradient they, training and the
regularisers all use.

* ``check_batch`` / ``check_labels``: one-line ValueErrors for bad (x, y) batches;
* ``eval_mode``: measure in eval mode, restore every module's flag afterwards;
* ``model_device_dtype`` / ``sample_batches``: move checked batches to the model;
* ``per_sample_output`` / ``input_gradients``: f(x_i) and grad_x f(x_i) for a whole batch.
"""
import contextlib
import warnings

import torch
import torch.nn.functional as F
from tqdm import tqdm  # text bars: they render in terminals, papermill logs and built books alike

OUTPUTS = ("loss", "logit", "margin")


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


def check_output(output):
    if output not in OUTPUTS:
        raise ValueError(f"unknown output {output!r}; allowed: {', '.join(OUTPUTS)}")


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


def per_sample_output(model, x, y, output="loss", check=True):
    """f(x_i) for every sample (Tensor[B]) and the logits (B x K).
    output="loss": cross-entropy at the true label; "logit": the true-class logit; "margin":
    z_y - max_{j != y} z_j (negative where the sample is misclassified; smooth wherever the
    runner-up class is unique, which holds almost everywhere).
    Half-precision logits (autocast) are promoted to float32 first, as the training loss does.
    ``check=False`` skips the label-range check (a device sync; training's hot loop)."""
    check_output(output)
    logits = model(x)
    if logits.dim() != 2:
        raise ValueError(f"model must return B x K logits, got shape {tuple(logits.shape)}")
    if check:
        check_labels(y, logits)
    if output == "loss":
        z = logits.float() if logits.dtype in (torch.float16, torch.bfloat16) else logits
        return F.cross_entropy(z, y, reduction="none"), logits
    true = logits.gather(1, y[:, None]).squeeze(1)
    if output == "margin":
        return true - logits.scatter(1, y[:, None], float("-inf")).amax(1), logits
    return true, logits


def input_gradients(model, x, y, output="loss", create_graph=False, check=True, scale=None):
    """Per-sample input gradients in one backward of sum_i f(x_i).

    Returns (grad, f, logits, x_req): grad_x f(x_i) for every i (B x ..., zeros where f does
    not depend on x), the per-sample f (Tensor[B]), the logits and the input leaf they were
    taken at. Row i is grad f(x_i) because f(x_i) depends on x_i only: exact in eval mode;
    in train mode batch norm mixes the samples slightly (the reference ignores this, and so
    do GradReg and CURE here). ``create_graph=True`` keeps the graph for a second derivative
    (regularisers, Hessian-vector products). ``scale`` (a 0-d tensor, fp16 training's loss
    scale): the backward runs on scale * sum_i f(x_i), so that fp16 gradients do not flush to
    zero, and the result is divided by it again: the same gradients, unscaled."""
    x = x.detach().requires_grad_(True)
    with torch.enable_grad():
        f, logits = per_sample_output(model, x, y, output, check=check)
        total = f.sum() if scale is None else f.sum() * scale
        (grad,) = torch.autograd.grad(total, x, create_graph=create_graph, allow_unused=True)
    if grad is None:  # f does not depend on x
        grad = torch.zeros_like(x)
    elif scale is not None:
        grad = grad / scale
    return grad, f, logits, x
