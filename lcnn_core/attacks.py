"""Adversarial attacks in [0, 1] pixel space (STUDY.md §2 and §5).

All attacks maximise the per-sample cross-entropy CE(model(x'), y) at the TRUE label,
with the model in eval mode (a model found in train mode is switched with a warning
and restored afterwards), and return x' of the shape of x.

* ``pgd_l2``: L2 projected gradient ascent (the paper's robustness table), constraint
  set {x' : ||x' - x||_2 <= eps, 0 <= x' <= 1}.
* ``fgsm``: one step of size eps along sign(g) (L_inf) or g / ||g||_2 (L2), clamped to [0, 1].
* ``iterative_fgsm``: the same step repeated, with projection onto the eps-ball and
  [0, 1] after each step (Kurakin et al.; used by Yao et al. 2018).
* ``robust_accuracy``: clean and per-eps accuracy (%) over batches, with the attack
  settings recorded for the tables.

Shapes: x is B x C x H x W (any B x ... works), y is B int64. Norms are over all
input coordinates of one sample; eps is in units of the [0, 1] pixel scale.
"""
import inspect

import torch
import torch.nn.functional as F

from .checks import check_batch, check_labels, eval_mode, input_gradients, sample_batches
from .linalg import random_unit_rows

NORMS = ("linf", "l2")
PGD_STEP_RULE = "2.5 * eps / steps"
IFGSM_STEP_RULE = "eps / steps"


# ---------------------------------------------------------------- helpers
def _view(t, x):
    """Per-sample scalars (B) broadcast against x (B x ...)."""
    return t.view(-1, *([1] * (x.dim() - 1)))


def _l2(t):
    return t.flatten(1).norm(dim=1)


def _loss_and_grad(model, x, y, check=True):
    """Per-sample CE losses (B) and their input gradients (B x ...), one backward
    (checks.input_gradients)."""
    grad, losses, _, _ = input_gradients(model, x, y, check=check)
    return losses.detach(), grad.detach()


def _losses(model, x, y, check=True):
    with torch.no_grad():
        logits = model(x)
    if check:
        check_labels(y, logits)
    return F.cross_entropy(logits, y, reduction="none")


def _check_attack(x, y, eps):
    y = check_batch(x, y)
    if not eps >= 0:
        raise ValueError(f"eps must be >= 0, got {eps}")
    lo, hi = float(x.min()), float(x.max())
    if lo < 0 or hi > 1:
        raise ValueError(f"x must lie in [0, 1] (pixel space), got range [{lo:.3g}, {hi:.3g}]")
    return y


def _check_steps(steps, step_size):
    if not isinstance(steps, int) or steps < 0:
        raise ValueError(f"steps must be an integer >= 0, got {steps!r}")
    if step_size is not None and not step_size > 0:
        raise ValueError(f"step_size must be positive, got {step_size}")


def _check_norm(norm):
    if norm not in NORMS:
        raise ValueError(f"unknown norm {norm!r}; allowed: {', '.join(NORMS)}")


def _unit_l2(g):
    """g / ||g||_2 per sample (0 where g = 0)."""
    n = _l2(g)
    return g / _view(torch.where(n > 0, n, torch.ones_like(n)), g)


def project_l2(x_adv, x, eps):
    """Project onto {||x' - x||_2 <= eps} (radial scaling) and then onto [0, 1]. Clamping
    moves every coordinate towards x (x is in [0, 1]), so the result stays in the ball."""
    delta = x_adv - x
    n = _l2(delta)
    scale = torch.where(n > eps, eps / n.clamp_min(torch.finfo(n.dtype).tiny), torch.ones_like(n))
    return (x + delta * _view(scale, x)).clamp(0, 1)


def project_linf(x_adv, x, eps):
    """Project onto {||x' - x||_inf <= eps} and [0, 1] (both coordinate-wise clamps)."""
    return torch.minimum(torch.maximum(x_adv, x - eps), x + eps).clamp(0, 1)


# ---------------------------------------------------------------- attacks
def pgd_l2(model, x, y, eps, steps=20, step_size=None, random_start=True, seed=0, check=True):
    """L2 PGD: maximise CE(model(x'), y) over ||x' - x||_2 <= eps, x' in [0, 1].

    Start: x, or with random_start a point uniform in the eps-ball (direction N(0, I)
    normalised, radius eps * U^(1/n); CPU torch.Generator seeded with ``seed``) projected
    onto [0, 1]. Step: x' <- P(x' + step_size * g / ||g||_2), g = grad_x' CE per sample,
    P = projection onto the ball then onto [0, 1] (``project_l2``).
    step_size=None -> 2.5 * eps / steps (enough to cross the ball diameter).

    Returned iterate: per sample, the iterate with the HIGHEST loss among the clean point,
    the start and every step (not simply the last one), so the returned loss is never
    below the clean loss. eps == 0 returns a copy of x. Eval mode.
    ``check=False`` skips the input checks (pixel range, labels), each a host-device sync:
    for training, whose batches were checked when the data loaded.
    """
    y = _check_attack(x, y, eps) if check else y
    _check_steps(steps, step_size)
    x = x.detach()
    if eps == 0:
        return x.clone()
    alpha = 2.5 * eps / max(steps, 1) if step_size is None else step_size
    with eval_mode(model):
        best, best_loss = x.clone(), _losses(model, x, y, check)
        x_adv = x
        if random_start:
            gen = torch.Generator().manual_seed(seed)
            n = x[0].numel()
            d = random_unit_rows(x.shape, gen)  # then a radius: uniform in the eps-ball
            r = eps * torch.rand(len(x), generator=gen, dtype=torch.float64) ** (1.0 / n)
            d = d * _view(r, d)
            x_adv = project_l2(x + d.to(device=x.device, dtype=x.dtype), x, eps)
        for _ in range(steps):
            loss, g = _loss_and_grad(model, x_adv, y, check)
            better = loss > best_loss
            best = torch.where(_view(better, x), x_adv, best)
            best_loss = torch.where(better, loss, best_loss)
            x_adv = project_l2(x_adv + alpha * _unit_l2(g), x, eps)
        loss = _losses(model, x_adv, y, check)
        better = loss > best_loss
        best = torch.where(_view(better, x), x_adv, best)
    return best.detach()


def _sign_step(g, norm):
    return g.sign() if norm == "linf" else _unit_l2(g)


def fgsm(model, x, y, eps, norm="linf"):
    """Fast gradient (sign) method: x' = clamp(x + eps * s, 0, 1) with s = sign(g) for
    norm="linf" (Goodfellow et al.) or s = g / ||g||_2 for norm="l2", g = grad_x CE. Eval mode."""
    _check_norm(norm)
    y = _check_attack(x, y, eps)
    x = x.detach()
    if eps == 0:
        return x.clone()
    with eval_mode(model):
        _, g = _loss_and_grad(model, x, y)
    return (x + eps * _sign_step(g, norm)).clamp(0, 1)


def iterative_fgsm(model, x, y, eps, steps=10, step_size=None, norm="linf"):
    """Iterative FGSM (Kurakin et al. 2017, as used by Yao et al. 2018): from x, ``steps``
    FGSM steps of size step_size (None -> eps / steps), each followed by projection onto
    the eps-ball of ``norm`` around x and onto [0, 1]. Returns the last iterate. Eval mode."""
    _check_norm(norm)
    y = _check_attack(x, y, eps)
    _check_steps(steps, step_size)
    x = x.detach()
    if eps == 0:
        return x.clone()
    alpha = eps / max(steps, 1) if step_size is None else step_size
    project = project_linf if norm == "linf" else project_l2
    x_adv = x
    with eval_mode(model):
        for _ in range(steps):
            _, g = _loss_and_grad(model, x_adv, y)
            x_adv = project(x_adv + alpha * _sign_step(g, norm), x, eps)
    return x_adv.detach()


ATTACKS = {"pgd_l2": pgd_l2, "fgsm": fgsm, "iterative_fgsm": iterative_fgsm}
STEP_RULES = {"pgd_l2": PGD_STEP_RULE, "iterative_fgsm": IFGSM_STEP_RULE}


# ---------------------------------------------------------------- robust accuracy
def attack_settings(attack, **attack_kwargs):
    """The full settings of ``attack`` (its defaults overridden by attack_kwargs), with a
    step_size of None written as its rule, e.g. "2.5 * eps / steps"."""
    if attack not in ATTACKS:
        raise ValueError(f"unknown attack {attack!r}; allowed: {', '.join(ATTACKS)}")
    params = inspect.signature(ATTACKS[attack]).parameters
    allowed = [k for k in params if k not in ("model", "x", "y", "eps")]
    unknown = sorted(set(attack_kwargs) - set(allowed))
    if unknown:
        raise ValueError(f"unknown settings for {attack}: {', '.join(unknown)}; allowed: {', '.join(allowed)}")
    settings = {k: attack_kwargs.get(k, params[k].default) for k in allowed}
    if settings.get("step_size", 0) is None:
        settings["step_size"] = STEP_RULES[attack]
    if attack == "pgd_l2":
        settings["norm"] = "l2"
        settings["returned_iterate"] = "highest loss (clean point included)"
    settings["projection"] = "eps-ball then [0, 1]"
    return settings


def robust_accuracy(model, batches, eps_list=(0.05, 0.1, 0.15, 0.2), attack="pgd_l2",
                    max_samples=None, progress=True, **attack_kwargs):
    """Clean accuracy and accuracy under ``attack`` at each eps, in %, over batches.

    batches: any iterable of (x, y), x float in [0, 1] (moved to the model's device and
    dtype), y int64. A sample counts as robust at eps only if it is classified correctly
    both at x and at the attack's x' (so robust accuracy <= clean accuracy; the usual
    convention that a misclassified clean point is already an adversarial example).
    attack_kwargs go to the attack (e.g. steps=20, step_size=None, random_start=True).

    Returns {"attack", "settings" (every attack argument, step-size rule included),
    "eps_list", "n_samples", "clean_accuracy", "robust_accuracy": {eps: %}}.
    """
    settings = attack_settings(attack, **attack_kwargs)
    eps_list = [float(e) for e in eps_list]
    if any(not e >= 0 for e in eps_list):
        raise ValueError(f"every eps must be >= 0, got {eps_list}")
    fn = ATTACKS[attack]
    clean_correct, robust_correct, seen = 0, [0] * len(eps_list), 0
    with eval_mode(model):
        for x, y in sample_batches(model, batches, max_samples, attack, progress):
            with torch.no_grad():
                logits = model(x)
            check_labels(y, logits)
            correct = logits.argmax(1) == y
            clean_correct += int(correct.sum())
            for j, eps in enumerate(eps_list):
                x_adv = fn(model, x, y, eps, **attack_kwargs)
                with torch.no_grad():
                    adv_correct = model(x_adv).argmax(1) == y
                robust_correct[j] += int((correct & adv_correct).sum())
            seen += len(x)
    return {
        "attack": attack,
        "settings": settings,
        "eps_list": eps_list,
        "n_samples": seen,
        "clean_accuracy": 100.0 * clean_correct / seen,
        "robust_accuracy": {eps: 100.0 * c / seen for eps, c in zip(eps_list, robust_correct)},
    }
