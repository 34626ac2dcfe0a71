"""Evaluate a finished run: the paper's table row, gradient robustness, PGD accuracy,
the provable bound and the paper's proxy; publish the small files to ``results/``.

Writes into the run directory (and copies to ``results/<preset>/<run>/``):

    geometry.json     E||grad f||, E||hess f|| and E C_f (both Hessian readouts), accuracy,
                      the bound, the proxy, the scale and provenance of the evaluation
    samples.csv       the same per test image
    robustness.csv    relative gradient change per noise magnitude (mean, std, m * E C_f)
    pgd.json          L2 PGD accuracy per eps with the attack settings
"""
import contextlib
import shutil
import time
from pathlib import Path

import torch

from .atomic import write_json
from .attacks import robust_accuracy
from .bound import loss_bound, paper_proxy
from .data import Loader, stratified_indices
from .metrics import evaluate_geometry, gradient_robustness, input_hessian_norm
from .provenance import provenance
from .train import is_finished, load_run

PUBLISHED = ("config.yaml", "history.csv", "provenance.json", "geometry.json", "samples.csv",
             "robustness.csv", "pgd.json")


def _eval_batches(data, n, batch_size):
    idx = stratified_indices(data.y_test.cpu(), min(n, len(data.y_test)), data.num_classes, seed=0)
    idx = torch.as_tensor(idx, device=data.x_test.device)
    return list(Loader(data.x_test[idx], data.y_test[idx], batch_size))


@contextlib.contextmanager
def full_precision():
    """TF32 off for matrix products and convolutions (restored afterwards): the small-m points of
    gradient robustness and the Hessian norms are differences of nearly equal float32 numbers,
    which TF32's 10-bit mantissa would floor."""
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


def evaluate_run(run_dir, device="cpu", progress=True):
    """Evaluate a finished run in place (float32, TF32 off); returns the geometry dict."""
    with full_precision():
        return _evaluate_run(run_dir, device, progress)


def _evaluate_run(run_dir, device, progress):
    t0 = time.perf_counter()
    run_dir = Path(run_dir)
    model, cfg, data = load_run(run_dir, device)
    batches = _eval_batches(data, cfg["eval_samples"], cfg["eval_batch_size"])
    geometry, samples = evaluate_geometry(model, batches, progress=progress, return_samples=True)
    samples.to_csv(run_dir / "samples.csv", index=False)

    frames = []
    for i, (x, y) in enumerate(batches):
        hess = input_hessian_norm(model, x, y)
        df = gradient_robustness(model, x, y, hessian=hess)
        df["sample"] += i * cfg["eval_batch_size"]
        frames.append(df)
    import pandas as pd
    rob = pd.concat(frames)
    summary = rob.groupby("magnitude").agg(relative_change_mean=("relative_change", "mean"),
                                           relative_change_std=("relative_change", "std"),
                                           relative_change_median=("relative_change", "median"),
                                           first_order_mean=("first_order", "mean")).reset_index()
    summary.to_csv(run_dir / "robustness.csv", index=False)

    pgd_batches = _eval_batches(data, cfg["eval_pgd_samples"], cfg["eval_batch_size"])
    pgd = robust_accuracy(model, pgd_batches, eps_list=tuple(cfg["eval_pgd_eps"]),
                          steps=cfg["eval_pgd_steps"], progress=progress)
    grad_bound, hess_bound = loss_bound(model, tuple(data.x_test.shape[1:]))
    scale = dict(dataset=cfg["dataset"], n_train=len(data.y_train), arch=cfg["arch"], width=cfg["width"],
                 epochs=cfg["epochs"], seed=cfg["seed"], eval_samples=len(samples),
                 pgd_samples=sum(len(y) for _, y in pgd_batches))
    geometry.update(bound_grad=grad_bound, bound_hessian=hess_bound, proxy=paper_proxy(model), scale=scale,
                    variant=cfg["variant"], provenance=provenance(device, eval_wall_time_s=None, tf32=False))
    pgd.update(scale=scale, variant=cfg["variant"])
    write_json(pgd, run_dir / "pgd.json")
    geometry["provenance"]["eval_wall_time_s"] = round(time.perf_counter() - t0, 2)
    write_json(geometry, run_dir / "geometry.json")
    return geometry


def publish(run_dir, results_root="results"):
    """Copy the run's small files (no weights) to results/<preset>/<run>/."""
    run_dir = Path(run_dir)
    if not is_finished(run_dir):
        raise ValueError(f"{run_dir} is not finished; nothing published")
    dest = Path(results_root) / run_dir.parent.name / run_dir.name
    dest.mkdir(parents=True, exist_ok=True)
    for name in PUBLISHED:
        if (run_dir / name).exists():
            shutil.copy2(run_dir / name, dest / name)
    return dest
