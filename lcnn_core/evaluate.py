"""Evaluate a finished run: the paper's table row, gradient robustness, PGD accuracy,
the provable bound and the paper's proxy; publish the small files to ``results/``.

Writes into the run directory (and copies to ``results/<preset>/<run>/``):

    geometry.json     E||grad f||, E||hess f|| and E C_f (both Hessian readouts) of the loss,
                      accuracy, the bound, the proxy, the scale and provenance of the evaluation;
                      ``by_output``: grad, Hessian (Lanczos) and C_f of f = the loss, the
                      true-class logit z_y and the margin z_y - max_{j != y} z_j (also flat as
                      curvature_{output}_mean / _std), since the loss's C_f follows the logit scale
    samples.csv       the same per test image (the logit / margin columns end in _logit / _margin)
    robustness.csv    relative gradient change per noise magnitude (mean, std, m * E C_f)
    pgd.json          L2 PGD accuracy per eps with the attack settings
    attacks.csv       with eval_apgd_samples set: robust accuracy (%) per eps under our PGD,
                      APGD-CE, APGD-CE + APGD-T and the strongest per image (lcnn_core.apgd)
    attacks.json      the same with the settings, the flags and the more-effort check
"""
import contextlib
import shutil
import time
from pathlib import Path

import pandas as pd
import torch

from .apgd import attack_flags, more_effort_check, strong_robustness
from .atomic import write_json
from .attacks import robust_accuracy
from .bound import loss_bound, paper_proxy
from .data import Loader, stratified_indices
from .metrics import evaluate_geometry, gradient_robustness, input_hessian_norm
from .provenance import provenance
from .train import is_finished, load_run

PUBLISHED = ("config.yaml", "history.csv", "provenance.json", "geometry.json", "samples.csv",
             "robustness.csv", "pgd.json", "attacks.csv", "attacks.json")
CURVATURE_OUTPUTS = ("loss", "logit", "margin")


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
    marks = {}  # seconds into the evaluation at the end of each phase (what a GPU call waits on)

    def mark(phase):
        marks[phase] = round(time.perf_counter() - t0, 2)
    run_dir = Path(run_dir)
    model, cfg, data = load_run(run_dir, device)  # includes the switch to eval: Lanczos per SN conv
    mark("load_s")
    batches = _eval_batches(data, cfg["eval_samples"], cfg["eval_batch_size"])
    geometry, samples = evaluate_geometry(model, batches, progress=progress, return_samples=True)
    geometry["by_output"] = {"loss": _output_summary(geometry)}
    for output in CURVATURE_OUTPUTS[1:]:
        row, per = evaluate_geometry(model, batches, hessian_methods=("lanczos",), progress=progress,
                                     return_samples=True, output=output)
        geometry["by_output"][output] = _output_summary(row)
        for col in ("grad_norm", "hess_norm_lanczos", "curvature_lanczos"):
            samples[f"{col}_{output}"] = per[col].to_numpy()
    for output, summary in geometry["by_output"].items():
        geometry[f"curvature_{output}_mean"] = summary["curvature_mean"]
        geometry[f"curvature_{output}_std"] = summary["curvature_std"]
    samples.to_csv(run_dir / "samples.csv", index=False)
    mark("geometry_s")

    frames = []
    for i, (x, y) in enumerate(batches):
        hess = input_hessian_norm(model, x, y)
        df = gradient_robustness(model, x, y, hessian=hess)
        df["sample"] += i * cfg["eval_batch_size"]
        frames.append(df)
    rob = pd.concat(frames)
    summary = rob.groupby("magnitude").agg(relative_change_mean=("relative_change", "mean"),
                                           relative_change_std=("relative_change", "std"),
                                           relative_change_median=("relative_change", "median"),
                                           first_order_mean=("first_order", "mean")).reset_index()
    summary.to_csv(run_dir / "robustness.csv", index=False)
    mark("robustness_s")

    pgd_batches = _eval_batches(data, cfg["eval_pgd_samples"], cfg["eval_batch_size"])
    pgd = robust_accuracy(model, pgd_batches, eps_list=tuple(cfg["eval_pgd_eps"]),
                          steps=cfg["eval_pgd_steps"], progress=progress)
    mark("pgd_s")
    grad_bound, hess_bound = loss_bound(model, tuple(data.x_test.shape[1:]))
    mark("bound_s")
    scale = dict(dataset=cfg["dataset"], n_train=len(data.y_train), arch=cfg["arch"], width=cfg["width"],
                 epochs=cfg["epochs"], seed=cfg["seed"], eval_samples=len(samples),
                 pgd_samples=sum(len(y) for _, y in pgd_batches))
    geometry.update(bound_grad=grad_bound, bound_hessian=hess_bound, proxy=paper_proxy(model), scale=scale,
                    variant=cfg["variant"], provenance=provenance(device, eval_wall_time_s=None, tf32=False))
    pgd.update(scale=scale, variant=cfg["variant"])
    write_json(pgd, run_dir / "pgd.json")
    if cfg["eval_apgd_samples"]:
        strong = strong_attack(model, data, cfg, progress)
        strong.update(scale=dict(scale, apgd_samples=strong["n_samples"]), variant=cfg["variant"])
        pd.DataFrame(strong["table"]).to_csv(run_dir / "attacks.csv", index=False)
        write_json(strong, run_dir / "attacks.json")
        mark("apgd_s")
    else:  # never publish a table left from an earlier evaluation
        for name in ("attacks.csv", "attacks.json"):
            (run_dir / name).unlink(missing_ok=True)
    geometry["provenance"]["eval_wall_time_s"] = round(time.perf_counter() - t0, 2)
    geometry["provenance"]["eval_time_s"] = geometry["provenance"]["eval_wall_time_s"]
    geometry["provenance"]["eval_phases"] = marks
    write_json(geometry, run_dir / "geometry.json")
    return geometry


def _output_summary(row):
    """grad / Hessian (Lanczos) / C_f means and stds of one evaluate_geometry row."""
    keys = dict(grad_norm="grad_norm", hess_norm="hess_norm_lanczos", curvature="curvature_lanczos")
    return {f"{k}_{stat}": row[f"{v}_{stat}"] for k, v in keys.items() for stat in ("mean", "std")}


def strong_attack(model, data, cfg, progress=True):
    """The robust-accuracy table of lcnn_core.apgd on the run's fixed APGD subset, with flags
    and (eval_attack_check) the more-effort check at the middle eps; per-image results dropped."""
    t0 = time.perf_counter()
    batches = _eval_batches(data, cfg["eval_apgd_samples"], cfg["eval_batch_size"])
    eps_list = cfg["eval_apgd_eps"] or cfg["eval_pgd_eps"]
    settings = dict(pgd_steps=cfg["eval_pgd_steps"], pgd_restarts=cfg["eval_pgd_restarts"],
                    apgd_steps=cfg["eval_apgd_steps"], apgd_restarts=cfg["eval_apgd_restarts"],
                    apgd_targets=cfg["eval_apgd_targets"])
    out = strong_robustness(model, batches, eps_list, progress=progress, **settings)
    out.pop("per_image")
    out["flags"] = attack_flags(out)
    out["check"] = None
    if cfg["eval_attack_check"]:
        row = sorted(out["table"], key=lambda r: r["eps"])[len(eps_list) // 2]
        out["check"] = more_effort_check(model, batches, row["eps"], row["strongest"], progress=progress,
                                         **settings)
    out["wall_time_s"] = round(time.perf_counter() - t0, 2)
    return out


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
