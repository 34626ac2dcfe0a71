"""Why does an LCNN fit its training set in training mode and fail in eval mode? (team_drop.md)

At the team's lambda = 1e-2, the 5-epoch MNIST ablation run fits the training set in training mode
(the history's ``train_acc``) while its eval-mode test loss is that of a uniform guess. Batch norm
is the layer that differs most between the modes: in training it normalises each channel by the
batch's own mean and variance, in eval mode by running averages of them (momentum 0.1), and the
LCNN's clip factor min(1, gamma * min_c sqrt(running_var_c + eps)) reads the running variance in
both. For each run of the study (trained here, with the training preset's config and grid names)
this measures test accuracy four ways on the same weights:

* ``eval``:        eval mode, as the evaluation reports it (running statistics, converged sigma);
* ``batch_stats``: every batch-norm layer on the statistics of the test batch itself (``batch_size``
                   images, a copy of the model: its running statistics are left alone), the rest in
                   eval mode;
* ``recalibrated``: eval mode after recomputing every batch-norm layer's running mean and variance
                   as a plain average over one pass of the training set (``recalibrate``);
* ``train_eval``:  eval mode on the training set (is the eval-mode network bad on the data it fit?).

beside the history's last training-mode accuracy on the training set (``train_mode_train``). If
``batch_stats`` and ``recalibrated`` recover what ``eval`` loses, the running statistics are the gap.

    python -m lcnn_core mode-gap [--runs runs] [--set runs=[lcnn-lam1e-2-e5-s0]]

Writes results/mode-gap/summary.csv (one row per run, rewritten after each) and provenance.json.
"""
import copy
import json
import time
from pathlib import Path

import pandas as pd
import torch
from torch import nn

from ..atomic import atomic_path, write_json
from ..config import ConfigError, load_preset, preset_runs, resolve
from ..data import Loader
from ..provenance import provenance
from ..train import load_run, test_accuracy, train


def batchnorms(model):
    """The model's batch-norm layers (plain and clipped)."""
    return [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]


def accuracy(model, x, y, batch_size):
    """Accuracy (%) of ``model`` as it stands (its modules' modes untouched) on uint8 images x."""
    correct = 0
    with torch.no_grad():
        for xb, yb in Loader(x, y, batch_size):
            correct += (model(xb).argmax(1) == yb).sum().item()
    return 100.0 * correct / len(y)


def batch_stats_accuracy(model, x, y, batch_size):
    """Accuracy (%) with every batch-norm layer on its batch's own statistics (momentum 0, on a copy,
    so the model's running statistics stay as they are) and every other layer in eval mode."""
    model = copy.deepcopy(model).eval()
    for bn in batchnorms(model):
        bn.train()
        bn.momentum = 0.0
    return accuracy(model, x, y, batch_size)


def recalibrate(model, x, batch_size):
    """A copy of ``model`` whose batch-norm running mean and variance are the plain average over the
    batches of one pass over x (momentum None), every other layer in eval mode; returned in eval mode.

    The averages start from the layer's own running statistics, not from reset ones: the LCNN's clip
    reads the running variance inside the same forward pass, so after a reset (variance 1) the first
    batch would pass with a clip factor of min(1, gamma), hundreds of times the trained one at a large
    lambda, and its inflated activations would dominate every later layer's average. The first batch's
    update replaces the starting values (momentum 1 / 1), so they weigh nothing in the result."""
    model = copy.deepcopy(model).eval()
    for bn in batchnorms(model):
        bn.num_batches_tracked.zero_()
        bn.momentum = None
        bn.train()
    with torch.no_grad():
        for xb, _ in Loader(x, torch.zeros(len(x), dtype=torch.long, device=x.device), batch_size):
            model(xb)
    return model.eval()


def measure(run_dir, batch_size):
    """One row: the four accuracies of a finished run and its history's last training-mode accuracy."""
    model, cfg, data = load_run(run_dir)
    hist = pd.read_csv(Path(run_dir) / "history.csv").iloc[-1]
    trained = json.loads((Path(run_dir) / "provenance.json").read_text())  # a reused run keeps its own
    _, eval_acc = test_accuracy(model, data, batch_size)
    recal = recalibrate(model, data.x_train, cfg["batch_size"])
    return dict(trained_sha=(trained.get("git_sha") or "")[:7], trained_dirty=trained.get("git_dirty"),
                trained_fingerprint=trained.get("code_fingerprint"), lam_beta=cfg["lam_beta"], lam_gamma=cfg["lam_gamma"], epochs=cfg["epochs"],
                train_mode_train=round(float(hist.train_acc), 2),
                train_eval=round(accuracy(model.eval(), data.x_train, data.y_train, batch_size), 2),
                eval=round(eval_acc, 2),
                batch_stats=round(batch_stats_accuracy(model, data.x_test, data.y_test, batch_size), 2),
                recalibrated=round(accuracy(recal, data.x_test, data.y_test, batch_size), 2),
                test_loss_eval=round(float(hist.test_loss), 4),
                min_bn_scale=round(min(float(bn.scale()) for bn in batchnorms(model) if hasattr(bn, "scale")), 6)
                if any(hasattr(bn, "scale") for bn in batchnorms(model)) else float("nan"))


def run(settings, runs="runs", out="results/mode-gap", log=print):
    """Train (or reuse) every run of ``settings["runs"]`` from the training preset ``settings["preset"]``
    under ``runs``, measure each and write ``out``/summary.csv and provenance.json."""
    preset = load_preset(settings["preset"])
    grid = dict(preset_runs(preset))
    missing = [r for r in settings["runs"] if r not in grid]
    if missing:
        raise ConfigError(f"preset {settings['preset']} has no run named {', '.join(missing)}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    t0, rows = time.time(), []
    for name in settings["runs"]:
        cfg = resolve(grid[name], base=preset["config"])
        run_dir = train(cfg, out=runs, preset=settings["preset"], name=name, progress=False, log=log)
        rows.append(dict(run=name, **measure(run_dir, settings["batch_size"])))
        with atomic_path(out / "summary.csv") as tmp:
            pd.DataFrame(rows).to_csv(tmp, index=False)
        r = rows[-1]
        log(f"{name}: test {r['eval']} % eval mode, {r['batch_stats']} % on batch statistics, "
            f"{r['recalibrated']} % recalibrated; train {r['train_eval']} % eval mode, {r['train_mode_train']} % training mode")
    write_json(provenance("cpu", script="lcnn_core/studies/mode_gap.py", settings=settings,
                          wall_time_s=round(time.time() - t0, 1)), out / "provenance.json")
    return pd.DataFrame(rows)
