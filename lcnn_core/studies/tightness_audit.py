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
prefix) and provenance.json; the settings are the preset's (lcnn_core/presets/tightness.yaml):

    python -m lcnn_core tightness [--runs runs] [--results results] [--only PRESET/RUN] [--set samples=64]
"""
import math
import time
from pathlib import Path

import pandas as pd
import torch

from .. import report
from ..atomic import atomic_path, write_json
from ..bound import bound_profile, paper_proxy
from ..config import ConfigError
from ..data import stratified_indices
from ..layers import CenteredSoftplus, ClippedBatchNorm2d, Softplus, batchnorm_lipschitz
from ..provenance import provenance
from ..tightness import depth_audit, tightness_table

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
    for name, table in (("summary.csv", pd.DataFrame(rows)), ("depth.csv", pd.concat(depths, ignore_index=True))):
        with atomic_path(out / name) as tmp:
            table.to_csv(tmp, index=False)
    prov = provenance("cpu", script="lcnn_core/studies/tightness_audit.py", settings=settings, runs=list(runs))
    write_json(prov, out / "provenance.json", default=str)


# ---------------------------------------------------------------- runs
def finished_runs(runs_root):
    return sorted(d for d in Path(runs_root).glob("*/*")
                  if (d / "model.pt").exists() and (d / "provenance.json").exists())


def run_meta(run_dir, results_root):
    """Scale and measured geometry of a run: report.run_row of results/<preset>/<run>/, or of
    the run folder itself where nothing was published."""
    published = Path(results_root) / run_dir.parent.name / run_dir.name
    r = report.run_row(published if (published / "geometry.json").exists() else run_dir)
    return dict(preset=run_dir.parent.name, run=run_dir.name, variant=r["variant"], lam=r["lam"],
                epochs=r["epochs"], seed=r["seed"], dataset=r["dataset"], n_train=r["n_train"],
                arch=r["arch"], width=r["width"], accuracy=float(r["accuracy"]), cf_mean=r["cf"],
                hess_mean=r["hess"], grad_mean=r["grad"], geometry_samples=r["eval_samples"])


def run(settings, runs="runs", results="results", out="results/tightness", only="", log=print):
    """Audit the preset's runs (``settings["runs"]``; None: every finished run under ``runs``),
    those whose <preset>/<run> contains ``only``, with a tightness study preset's ``settings``;
    rewrites ``out`` after each run. Returns the runs audited."""
    from ..train import load_run
    torch.set_num_threads(settings["threads"])
    keys = ("samples", "depth_samples", "n_ascent", "n_ascent_hessian", "steps", "step_size", "depth_iters",
            "hessian", "ascent", "samples_from")
    recorded = {k: settings[k] for k in keys}  # provenance: what the committed file records
    rows, depths, done = [], [], []
    t0 = time.perf_counter()
    found = {f"{d.parent.name}/{d.name}": d for d in finished_runs(runs)}
    chosen = [k for k in (settings["runs"] if settings["runs"] is not None else sorted(found)) if only in k]
    missing = [k for k in chosen if k not in found]
    if missing:
        raise ConfigError(f"{len(missing)} run(s) of the preset not finished under {runs}: {', '.join(missing)}")
    if not chosen:
        raise ConfigError(f"no finished runs under {runs}")
    for key in chosen:
        run_dir = found[key]
        model, cfg, data = load_run(run_dir, "cpu")
        idx = stratified_indices(data.y_test, min(settings["samples"], len(data.y_test)), data.num_classes, seed=0)
        idx = torch.as_tensor(idx)
        x, y = data.x_test[idx].float() / 255.0, data.y_test[idx]  # uint8 -> [0, 1], as Loader
        meta = run_meta(run_dir, results)
        row, depth = audit(model, x, y, meta, settings["depth_samples"], settings["n_ascent"],
                           settings["n_ascent_hessian"], settings["steps"], settings["step_size"],
                           settings["depth_iters"])
        rows.append(row)
        depths.append(depth)
        done.append(f"{meta['preset']}/{meta['run']}")
        write_outputs(rows, depths, out, dict(recorded, wall_time_s=round(time.perf_counter() - t0, 1)), done)
        log(f"{done[-1]}: Lipschitz {row['lipschitz_upper']:.3g} / {row['lipschitz_lower']:.3g}, "
            f"Hessian {row['hessian_upper']:.3g} / {row['hessian_lower']:.3g} ({row['wall_time_s']} s)")
    return done
