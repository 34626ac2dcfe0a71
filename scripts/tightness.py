"""How loose are the bounds on the trained models? (issue 9; lcnn_core.tightness)

For every finished run under runs/<preset>/<run>/ (model.pt and provenance.json), on a
stratified sample of its test set (pixels in [0, 1], eval mode):

* the provable upper bounds (logit Lipschitz Gamma, sqrt(2) Gamma on ||grad_x l||, the
  Hessian bound) against measured lower bounds over the data, improved by projected
  sign-gradient ascent inside [0, 1]^n (``tightness_table``);
* the per-depth audit: the bound Gamma_k of every prefix against its measured largest
  Jacobian norm, on the first ``--depth-samples`` images plus the ascent's points;
* the paper's proxy (sum of beta, product of gamma) and the measured E C_f, E||hess f|| from
  the run's committed results/<preset>/<run>/geometry.json.

Writes results/tightness/summary.csv (one row per run), depth.csv (one row per run and
prefix) and provenance.json. Usage:

    python scripts/tightness.py [--runs runs] [--results results] [--samples 128] ...
"""
import argparse
import json
import math
import sys
import time
from pathlib import Path

import pandas as pd
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from lcnn_core.bound import bound_profile, paper_proxy  # noqa: E402
from lcnn_core.data import stratified_indices  # noqa: E402
from lcnn_core.layers import CenteredSoftplus, ClippedBatchNorm2d, Softplus, batchnorm_lipschitz  # noqa: E402
from lcnn_core.provenance import provenance  # noqa: E402
from lcnn_core.tightness import depth_audit, tightness_table  # noqa: E402

SHORT = dict(logit_lipschitz="lipschitz", loss_gradient="gradient", loss_hessian="hessian")


# ---------------------------------------------------------------- proxies
@torch.no_grad()
def proxies(model):
    """The paper's proxy (sum beta, log10 prod gamma over the LCNN layers) and the same
    quantities for any model: sum of every softplus beta (plain ones included) and log10 of
    the product of every batch norm's eval-mode Lipschitz constant."""
    p = paper_proxy(model)
    betas, norm_logs = [], []
    for m in model.modules():
        if isinstance(m, CenteredSoftplus):
            betas.append(float(m.b.detach()))
        elif isinstance(m, Softplus):
            betas.append(float(m.beta))
        if isinstance(m, ClippedBatchNorm2d):
            norm_logs.append(math.log10(m.lipschitz()))
        elif isinstance(m, torch.nn.BatchNorm2d):
            norm_logs.append(math.log10(batchnorm_lipschitz(m)))
    prod = p["prod_gamma"]
    return dict(sum_beta=p["sum_beta"], mean_beta=p["mean_beta"],
                log10_prod_gamma=math.log10(prod) if prod == prod else float("nan"),
                sum_abs_log_gamma=p["sum_abs_log_gamma"], sum_beta_all=sum(betas),
                log10_prod_norm_lipschitz=sum(norm_logs))


# ---------------------------------------------------------------- one model
def audit(model, x, y, meta, samples_depth=32, n_ascent=16, n_ascent_hessian=8, steps=10, step_size=0.02,
          depth_iters=30, hessian_iters=30):
    """(summary row, depth table) of one model on the samples x (B x C x H x W in [0, 1]), y.
    ``meta`` (preset, run, variant, ...) is copied into both."""
    t0 = time.perf_counter()
    profile = bound_profile(model, tuple(x.shape[1:]))  # the exact conv norms, computed once
    table, points = tightness_table(model, x, y, n_ascent=n_ascent, n_ascent_hessian=n_ascent_hessian,
                                    steps=steps, step_size=step_size, hessian_iters=hessian_iters,
                                    return_points=True, profile=profile)
    x_depth = torch.cat([x[:samples_depth], points["logit_lipschitz"]])
    depth = depth_audit(model, x_depth, iters=depth_iters, profile=profile)
    row = dict(meta, **proxies(model))
    for r in table.itertuples():
        name = SHORT[r.quantity]
        row.update({f"{name}_upper": r.upper, f"{name}_lower_data": r.lower_data, f"{name}_lower": r.lower,
                    f"{name}_looseness": r.looseness})
    first = table.iloc[0]
    row.update(n_samples=int(first.n_samples), n_ascent=int(first.n_ascent),
               n_ascent_hessian=int(table.iloc[-1].n_ascent), steps=int(first.steps), step_size=float(first.step_size),
               depth_samples=len(x_depth), depth_iters=depth_iters, wall_time_s=round(time.perf_counter() - t0, 1))
    keys = ["preset", "run", "variant", "lam", "epochs"]
    depth = pd.concat([pd.DataFrame({k: [meta[k]] * len(depth) for k in keys}), depth], axis=1)
    return row, depth


def write_outputs(rows, depths, out, settings, runs=()):
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows).to_csv(out / "summary.csv", index=False)
    pd.concat(depths, ignore_index=True).to_csv(out / "depth.csv", index=False)
    prov = provenance("cpu", script="scripts/tightness.py", settings=settings, runs=list(runs))
    (out / "provenance.json").write_text(json.dumps(prov, indent=2, default=str))


# ---------------------------------------------------------------- runs
def finished_runs(runs_root):
    return sorted(d for d in Path(runs_root).glob("*/*")
                  if (d / "model.pt").exists() and (d / "provenance.json").exists())


def run_meta(run_dir, cfg, data, results_root):
    """Scale and measured geometry of a run (geometry from results/<preset>/<run>/, else the run dir)."""
    geo_path = Path(results_root) / run_dir.parent.name / run_dir.name / "geometry.json"
    if not geo_path.exists():
        geo_path = run_dir / "geometry.json"
    geo = json.loads(geo_path.read_text()) if geo_path.exists() else {}
    hist = pd.read_csv(run_dir / "history.csv")
    return dict(preset=run_dir.parent.name, run=run_dir.name, variant=cfg["variant"], lam=cfg["lam_beta"],
                epochs=cfg["epochs"], seed=cfg["seed"], dataset=cfg["dataset"], n_train=len(data.y_train),
                arch=cfg["arch"], width=cfg["width"], accuracy=float(hist["test_acc"].iloc[-1]),
                cf_mean=geo.get("curvature_lanczos_mean", float("nan")),
                hess_mean=geo.get("hess_norm_lanczos_mean", float("nan")),
                grad_mean=geo.get("grad_norm_mean", float("nan")),
                geometry_samples=geo.get("n_samples", 0))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", default=str(ROOT / "runs"))
    ap.add_argument("--results", default=str(ROOT / "results"), help="where the runs' geometry.json are")
    ap.add_argument("--out", default=str(ROOT / "results" / "tightness"))
    ap.add_argument("--samples", type=int, default=128, help="test images (stratified) per model")
    ap.add_argument("--depth-samples", type=int, default=32, help="of those, used in the per-depth audit")
    ap.add_argument("--n-ascent", type=int, default=16, help="start points of the Jacobian / gradient ascent")
    ap.add_argument("--n-ascent-hessian", type=int, default=8, help="start points of the Hessian ascent")
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--step-size", type=float, default=0.02, help="L-infinity step in pixel units")
    ap.add_argument("--depth-iters", type=int, default=30, help="power iterations per prefix")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--only", default="", help="audit only runs whose <preset>/<run> contains this")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    from lcnn_core.train import load_run

    settings = dict(samples=args.samples, depth_samples=args.depth_samples, n_ascent=args.n_ascent,
                    n_ascent_hessian=args.n_ascent_hessian, steps=args.steps, step_size=args.step_size,
                    depth_iters=args.depth_iters, hessian="lanczos, 30 iterations, true labels",
                    ascent="projected sign-gradient ascent in [0, 1]", samples_from="test set, stratified, seed 0")
    rows, depths, done = [], [], []
    t0 = time.perf_counter()
    for run_dir in finished_runs(args.runs):
        if args.only not in f"{run_dir.parent.name}/{run_dir.name}":
            continue
        model, cfg, data = load_run(run_dir, "cpu")
        idx = stratified_indices(data.y_test, min(args.samples, len(data.y_test)), data.num_classes, seed=0)
        idx = torch.as_tensor(idx)
        x, y = data.x_test[idx].float() / 255.0, data.y_test[idx]  # uint8 -> [0, 1], as Loader
        meta = run_meta(run_dir, cfg, data, args.results)
        row, depth = audit(model, x, y, meta, args.depth_samples, args.n_ascent, args.n_ascent_hessian,
                           args.steps, args.step_size, args.depth_iters)
        rows.append(row)
        depths.append(depth)
        done.append(f"{meta['preset']}/{meta['run']}")
        write_outputs(rows, depths, args.out, dict(settings, wall_time_s=round(time.perf_counter() - t0, 1)), done)
        print(f"{done[-1]}: Lipschitz {row['lipschitz_upper']:.3g} / {row['lipschitz_lower']:.3g}, "
              f"Hessian {row['hessian_upper']:.3g} / {row['hessian_lower']:.3g} ({row['wall_time_s']} s)", flush=True)
    if not rows:
        raise SystemExit(f"no finished runs under {args.runs}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
