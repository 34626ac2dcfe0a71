"""The strong attack: AutoAttack's APGD-CE and APGD-T (L2), beside our PGD, worst case per image.

Library: ``pyautoattack`` (0.2.0, PyPI), Croce and Hein's own AutoAttack package (MIT, no
dependencies, imported as ``pyautoattack``); only ``APGDAttack`` and ``APGDAttack_targeted``
from ``pyautoattack.autopgd_base`` are used, a module that imports nothing beyond torch.
``torchattacks`` has both attacks too, but pins an old ``requests`` that clashes with the
book's dependencies, so it is not used.

For one image (x, y) and radius eps (L2, pixels in [0, 1], the paper's norm):

* ``pgd``:      our L2 PGD (``attacks.pgd_l2``), ``restarts`` random starts (seeds
                seed .. seed + restarts - 1); robust only if robust under every start;
* ``apgd_ce``:  APGD on the cross-entropy, AutoAttack's L2 "standard" settings (100 steps,
                1 restart, rho = 0.75, step size adapted from 2 eps);
* ``apgd_t``:   APGD-CE followed by APGD-T (targeted DLR loss, 100 steps per target, the
                ``targets`` most likely wrong classes) on the images APGD-CE left robust,
                as AutoAttack runs them: robust under APGD-CE *and* APGD-T;
* ``strongest``: robust under all of the above (the per-image minimum over attacks).

An image counts as robust only if it is also classified correctly at x. Accuracies are in %.
The sanity checks (``more_effort_check``, ``attack_flags``) follow the usual tests for a
trustworthy robustness number (Athalye et al. 2018; Carlini et al. 2019): more steps and
restarts must not lower it further, accuracy must fall to about 0 at large eps, and a curve
that stays flat, or PGD far above APGD, flags gradient masking.
"""
import torch

from .attacks import pgd_l2
from .checks import check_batch, check_labels, eval_mode, sample_batches

APGD_SETTINGS = dict(norm="L2", steps=100, restarts=1, rho=0.75, targets=9,
                     apgd_t_loss="targeted DLR", returned="an adversarial point if one was found")
NEAR_ZERO = 5.0     # % at the largest eps: the grid reaches "about 0"
FLAT_DROP = 10.0    # points: a strongest curve that drops less than this from clean is flat
PGD_GAP = 10.0      # points: PGD this far above the strongest attack at some eps is suspicious


def _predict_correct(model, x, y):
    with torch.no_grad():
        logits = model(x)
    check_labels(y, logits)
    return logits.argmax(1) == y


def _check_in_ball(x_adv, x, eps, name):
    """The library's points must satisfy the threat model (L2 ball and [0, 1]) we report."""
    dist = (x_adv - x).flatten(1).norm(dim=1)
    if (dist > eps * (1 + 1e-4) + 1e-6).any() or x_adv.min() < 0 or x_adv.max() > 1:
        raise RuntimeError(f"{name} returned a point outside the L2 ball of radius {eps} or [0, 1]")


def pgd_correct(model, x, y, eps, steps=20, restarts=1, seed=0):
    """Bool[B]: correct at x and at our PGD's point for each of ``restarts`` random starts."""
    y = check_batch(x, y)
    with eval_mode(model):
        ok = _predict_correct(model, x, y)
        for r in range(restarts):
            if eps > 0 and ok.any():
                x_adv = pgd_l2(model, x, y, eps, steps=steps, random_start=True, seed=seed + r)
                ok &= _predict_correct(model, x_adv, y)
    return ok


def apgd_correct(model, x, y, eps, steps=100, restarts=1, targets=9, seed=0):
    """(after APGD-CE, after APGD-CE then APGD-T): two Bool[B], correct at x and at the points found.

    x float in [0, 1] (B x C x H x W, float32: the library computes in float32), y int64.
    ``targets`` is capped at K - 1 classes. The library seeds torch's global generator; this
    function restores the caller's RNG state afterwards.
    """
    from pyautoattack.autopgd_base import APGDAttack, APGDAttack_targeted

    y = check_batch(x, y)
    x = x.detach()
    with eval_mode(model):
        ok = _predict_correct(model, x, y)
        if eps == 0 or not ok.any():
            return ok, ok.clone()
        n_classes = model(x[:1]).shape[1]
        devices = []
        if x.device.type == "cuda":  # fork_rng takes CUDA device indices
            devices = [x.device.index if x.device.index is not None else torch.cuda.current_device()]
        with torch.random.fork_rng(devices=devices):
            ce = APGDAttack(model, n_iter=steps, norm="L2", n_restarts=restarts, eps=eps, seed=seed,
                            loss="ce", rho=APGD_SETTINGS["rho"], device=x.device)
            idx = ok.nonzero().squeeze(1)
            adv = ce.perturb(x[idx], y[idx])
            _check_in_ball(adv, x[idx], eps, "APGD-CE")
            after_ce = ok.clone()
            after_ce[idx] = _predict_correct(model, adv, y[idx])
            after_t = after_ce.clone()
            idx = after_ce.nonzero().squeeze(1)
            if len(idx) and n_classes > 2:
                tgt = APGDAttack_targeted(model, n_iter=steps, norm="L2", n_restarts=restarts, eps=eps,
                                          seed=seed, rho=APGD_SETTINGS["rho"],
                                          n_target_classes=min(targets, n_classes - 1), device=x.device)
                # the targeted DLR loss reads the 4th-largest logit: K >= 4 (every dataset here)
                adv = tgt.perturb(x[idx], y[idx])
                _check_in_ball(adv, x[idx], eps, "APGD-T")
                after_t[idx] = _predict_correct(model, adv, y[idx])
    return after_ce, after_t


def strong_robustness(model, batches, eps_list, pgd_steps=20, pgd_restarts=1, apgd_steps=100,
                      apgd_restarts=1, apgd_targets=9, seed=0, max_samples=None, progress=True):
    """Robust accuracy (%) per eps under PGD, APGD-CE, APGD-CE + APGD-T and the strongest of them.

    batches: iterable of (x, y) (moved to the model's device and dtype). Returns
    {"settings", "n_samples", "clean_accuracy", "table": [{eps, pgd, apgd_ce, apgd_t,
    strongest}, ...], "per_image": {eps: Bool[N] strongest robust correctness}}.
    """
    eps_list = [float(e) for e in eps_list]
    if not eps_list or any(not e >= 0 for e in eps_list):
        raise ValueError(f"eps_list must be a non-empty list of values >= 0, got {eps_list}")
    names = ("pgd", "apgd_ce", "apgd_t", "strongest")
    per = {e: {k: [] for k in names} for e in eps_list}
    clean, n = 0, 0
    for x, y in sample_batches(model, batches, max_samples, "APGD", progress):
        with eval_mode(model):
            clean += int(_predict_correct(model, x, y).sum())
        for e in eps_list:
            p = pgd_correct(model, x, y, e, steps=pgd_steps, restarts=pgd_restarts, seed=seed)
            ce, t = apgd_correct(model, x, y, e, steps=apgd_steps, restarts=apgd_restarts,
                                 targets=apgd_targets, seed=seed)
            for k, v in zip(names, (p, ce, t, p & ce & t)):
                per[e][k].append(v.cpu())
        n += len(x)
    table = []
    for e in eps_list:
        row = {"eps": e}
        for k in names:
            row[k] = 100.0 * float(torch.cat(per[e][k]).double().mean())
        table.append(row)
    settings = dict(pgd=dict(steps=pgd_steps, restarts=pgd_restarts, step_size="2.5 * eps / steps",
                             random_start=True, norm="l2"),
                    apgd=dict(APGD_SETTINGS, steps=apgd_steps, restarts=apgd_restarts, targets=apgd_targets,
                              library="pyautoattack"),
                    seed=seed, robust="correct at x and at every attack's point")
    return {"settings": settings, "n_samples": n, "clean_accuracy": 100.0 * clean / n, "table": table,
            "per_image": {e: torch.cat(per[e]["strongest"]) for e in eps_list}}


def more_effort_check(model, batches, eps, base_accuracy, factor=2, tolerance=None, seed=1, progress=False,
                      pgd_steps=20, pgd_restarts=1, apgd_steps=100, apgd_restarts=1, apgd_targets=9):
    """Rerun the strongest attack at one eps with ``factor`` x the steps and restarts of the
    base settings (the other arguments) and a new seed; a trustworthy number does not fall
    further. tolerance: the points it may fall by (None: one image of the subset).
    Returns {eps, base, stronger, lowered_by, tolerance, ok, settings}."""
    out = strong_robustness(model, batches, [eps], pgd_steps=pgd_steps * factor,
                            pgd_restarts=pgd_restarts * factor, apgd_steps=apgd_steps * factor,
                            apgd_restarts=apgd_restarts * factor, apgd_targets=apgd_targets, seed=seed,
                            progress=progress)
    stronger = out["table"][0]["strongest"]
    tol = 100.0 / out["n_samples"] if tolerance is None else tolerance
    lowered = base_accuracy - stronger
    return dict(eps=float(eps), base=base_accuracy, stronger=stronger, lowered_by=lowered, tolerance=tol,
                ok=bool(lowered <= tol + 1e-9), settings=out["settings"])


def attack_flags(result, near_zero=NEAR_ZERO, flat_drop=FLAT_DROP, pgd_gap=PGD_GAP):
    """Flags on a ``strong_robustness`` result (all bool unless noted):

    reaches_near_zero: strongest accuracy at the largest eps <= near_zero %;
    flat_curve:        clean - strongest at the largest eps < flat_drop points;
    monotone:          strongest accuracy never rises with eps (by more than one image);
    pgd_gap (float):   max over eps of pgd - strongest, in points; pgd_weak if >= pgd_gap;
    masking_suspected: flat_curve or not monotone (a grid that stops short of zero is a
                       grid problem, reported by reaches_near_zero, not a masking sign).
    """
    rows = sorted(result["table"], key=lambda r: r["eps"])
    strongest = [r["strongest"] for r in rows]
    one = 100.0 / result["n_samples"]
    gap = max(r["pgd"] - r["strongest"] for r in rows)
    flags = dict(
        reaches_near_zero=bool(strongest[-1] <= near_zero),
        flat_curve=bool(result["clean_accuracy"] - strongest[-1] < flat_drop),
        monotone=bool(all(b <= a + one + 1e-9 for a, b in zip(strongest, strongest[1:]))),
        pgd_gap=float(gap), pgd_weak=bool(gap >= pgd_gap),
        thresholds=dict(near_zero=near_zero, flat_drop=flat_drop, pgd_gap=pgd_gap),
    )
    flags["masking_suspected"] = bool(flags["flat_curve"] or not flags["monotone"])
    return flags
