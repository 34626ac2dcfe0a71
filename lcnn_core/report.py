"""Read committed results (``results/<preset>/<run>/``) into tidy tables for the book.

Pandas only (no torch), so the book's pages execute in seconds. The verdict rule is
stated once here and printed in the book: our runs are smaller than the paper's and
on other data, so values are not expected to match; we judge the *direction* of each
effect relative to Standard, as the paper's claims are stated.
"""
import json
from pathlib import Path  # noqa: F401  (re-exported for notebooks)

import pandas as pd
import yaml

from .config import TRAINING_VARIANTS, VARIANT_LABELS
from .reference import PAPER, PAPER_CIFAR10_CF, TEAM

ACC_TOLERANCE = 2.0  # points of accuracy that count as "roughly unchanged"


def results_root(start=None):
    """The repository's results/ folder, found from the working directory upwards."""
    here = Path(start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / "results").is_dir() and (folder / "lcnn_core").is_dir():
            return folder / "results"
    raise FileNotFoundError("no results/ folder found above the working directory")


def load_runs(preset, root=None):
    """One row per finished, evaluated run of a preset: scale, accuracy, geometry, bound, proxy."""
    root = Path(root) if root else results_root()
    rows = [run_row(run.parent) for run in sorted((root / preset).glob("*/geometry.json"))]
    for row in rows:
        row["preset"] = preset
    return pd.DataFrame(rows)


def run_row(d):
    """The row of one evaluated run folder (results/<preset>/<run>/ or runs/<preset>/<run>/):
    geometry.json, config.yaml, provenance.json and history.csv read into one dict."""
    d = Path(d)
    geo = json.loads((d / "geometry.json").read_text())
    cfg = yaml.safe_load((d / "config.yaml").read_text())
    prov = json.loads((d / "provenance.json").read_text())
    hist = pd.read_csv(d / "history.csv")
    return dict(
        preset=d.parent.name, run=d.name, variant=cfg["variant"], label=VARIANT_LABELS[cfg["variant"]],
        seed=cfg["seed"], lam=cfg["lam_beta"], epochs=cfg["epochs"], dataset=cfg["dataset"],
        n_train=geo["scale"]["n_train"], width=cfg["width"], arch=cfg["arch"],
        accuracy=hist["test_acc"].iloc[-1], grad=geo["grad_norm_mean"],
        hess=geo["hess_norm_lanczos_mean"], hess_ref=geo["hess_norm_reference_mean"],
        cf=geo["curvature_lanczos_mean"], cf_ref=geo["curvature_reference_mean"],
        eval_samples=geo["n_samples"], bound_hessian=geo["bound_hessian"], bound_grad=geo["bound_grad"],
        mean_beta=geo["proxy"]["mean_beta"], sum_abs_log_gamma=geo["proxy"]["sum_abs_log_gamma"],
        hardware=prov["hardware"], wall_time_s=prov["wall_time_s"], git_sha=prov.get("git_sha"),
    )


def summarise(runs, by=("variant", "lam", "epochs")):
    """Mean and std over seeds of every metric, one row per group (std NaN for one seed)."""
    metrics = ["accuracy", "grad", "hess", "hess_ref", "cf", "cf_ref", "bound_hessian", "mean_beta",
               "sum_abs_log_gamma", "wall_time_s"]
    g = runs.groupby(list(by), sort=False)
    out = g[metrics].agg(["mean", "std"])
    out.columns = [f"{m}_{s}" for m, s in out.columns]
    out["seeds"] = g["seed"].nunique()
    out["label"] = g["label"].first()
    out = out.reset_index()
    order = {v: i for i, v in enumerate(TRAINING_VARIANTS)}
    return out.sort_values(by="variant", key=lambda c: c.map(order), kind="stable").reset_index(drop=True)


def select_lambda(summary, lam):
    """Rows for one LCNN lambda: every variant without the LCNN penalty, and the LCNN
    variants trained with ``lam``."""
    keep = ~summary["variant"].isin(["lcnn", "lcnn_gradreg"]) | (summary["lam"] == lam)
    return summary[keep].reset_index(drop=True)


def fmt(mean, std=None, digits=2):
    if std is None or std != std:
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} ± {std:.{digits}f}"


def verdict(ours_ratio, paper_ratio):
    """Direction of an effect relative to Standard: both below 1 or both above 1."""
    if ours_ratio != ours_ratio or paper_ratio != paper_ratio:
        return "n/a"
    return "ordering reproduced" if (ours_ratio < 1) == (paper_ratio < 1) else "not reproduced"


def comparison(summary, metric="cf"):
    """Paper | team | ours for one metric (grad, hess, cf) per variant, with ours / Standard,
    the paper's / Standard, and the verdict on the direction."""
    s = summary.set_index("variant")
    base = s.loc["standard", f"{metric}_mean"] if "standard" in s.index else float("nan")
    rows = []
    for v, r in s.iterrows():
        paper = PAPER.get(v, {}).get(metric)
        team = TEAM.get(v, {}).get(metric)
        ours_ratio = r[f"{metric}_mean"] / base
        paper_ratio = paper[0] / PAPER["standard"][metric][0] if paper else float("nan")
        rows.append({
            "model": r["label"],
            "paper (CIFAR-100)": fmt(*paper) if paper else "–",
            "team (CIFAR-10)": fmt(team) if team is not None else "–",
            "ours": fmt(r[f"{metric}_mean"], r[f"{metric}_std"]),
            "ours / Standard": f"{ours_ratio:.2f}",
            "paper / Standard": f"{paper_ratio:.2f}" if paper else "–",
            "verdict": "baseline" if v == "standard" else verdict(ours_ratio, paper_ratio),
        })
    return pd.DataFrame(rows)


def accuracy_comparison(summary):
    """Accuracy per variant beside the paper's and team's, verdict: within ACC_TOLERANCE of Standard."""
    s = summary.set_index("variant")
    base = s.loc["standard", "accuracy_mean"]
    rows = []
    for v, r in s.iterrows():
        drop = r["accuracy_mean"] - base
        paper, team = PAPER.get(v, {}).get("acc"), TEAM.get(v, {}).get("acc")
        rows.append({
            "model": r["label"], "paper (CIFAR-100)": fmt(*paper) if paper else "–",
            "team (CIFAR-10)": fmt(team, digits=0) if team is not None else "–",
            "ours %": fmt(r["accuracy_mean"], r["accuracy_std"], 1), "ours − Standard": f"{drop:+.1f}",
            "verdict": "baseline" if v == "standard" else
            ("reproduced (within 2 points)" if abs(drop) <= ACC_TOLERANCE else "not reproduced"),
        })
    return pd.DataFrame(rows)


def ordering(summary, metric="cf", order=("standard", "lcnn", "lcnn_gradreg")):
    """True if metric strictly decreases along ``order`` (the paper's E C_f ordering),
    None if a model of ``order`` is missing."""
    s = summary.set_index("variant")[f"{metric}_mean"]
    if any(v not in s.index for v in order):
        return None
    vals = [s[v] for v in order]
    return all(a > b for a, b in zip(vals, vals[1:]))


def _per_run_csv(preset, root, filename, columns):
    """One `filename` per run of a preset, concatenated, with columns(cfg, run_name) added."""
    root = Path(root) if root else results_root()
    frames = []
    for f in sorted((root / preset).glob(f"*/{filename}")):
        cfg = yaml.safe_load((f.parent / "config.yaml").read_text())
        frames.append(pd.read_csv(f).assign(**columns(cfg, f.parent.name)))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def robustness(preset, root=None):
    """Concatenated robustness.csv of a preset's runs with variant/seed columns."""
    return _per_run_csv(preset, root, "robustness.csv", lambda cfg, run: dict(
        variant=cfg["variant"], label=VARIANT_LABELS[cfg["variant"]], seed=cfg["seed"], run=run))


def pgd(preset, root=None):
    """PGD accuracy per run and eps (long format) and the attack settings of the first run."""
    root = Path(root) if root else results_root()
    rows, settings = [], None
    for f in sorted((root / preset).glob("*/pgd.json")):
        d = json.loads(f.read_text())
        cfg = yaml.safe_load((f.parent / "config.yaml").read_text())
        settings = settings or d.get("settings")
        rows.append(dict(variant=cfg["variant"], label=VARIANT_LABELS[cfg["variant"]], seed=cfg["seed"],
                         run=f.parent.name, eps=0.0, accuracy=d["clean_accuracy"]))
        for eps, acc in d["robust_accuracy"].items():
            rows.append(dict(variant=cfg["variant"], label=VARIANT_LABELS[cfg["variant"]], seed=cfg["seed"],
                             run=f.parent.name, eps=float(eps), accuracy=acc))
    return pd.DataFrame(rows), settings


def history(preset, root=None):
    """Concatenated history.csv of a preset's runs with run / lambda / epochs columns."""
    return _per_run_csv(preset, root, "history.csv", lambda cfg, run: dict(
        run=run, variant=cfg["variant"], lam=cfg["lam_beta"], budget=cfg["epochs"]))


def scale_line(runs):
    """One sentence of scale for a figure caption."""
    r = runs.iloc[0]
    seeds = runs["seed"].nunique()
    return (f"{r['dataset']}, {r['n_train']:,} training images, {r['arch']} width {r['width']}, "
            f"{r['epochs']} epochs, {seeds} seed{'s' if seeds > 1 else ''}, {r['eval_samples']} test images "
            f"for the geometry, {r['hardware']}")


def linear_baseline(dataset, root=None):
    """Test accuracy (%) of softmax regression on the pixels (python -m lcnn_core linear-baseline), or NaN."""
    f = (Path(root) if root else results_root()) / "linear-baseline" / f"{dataset}.json"
    return float(json.loads(f.read_text())["accuracy"]) if f.exists() else float("nan")


def styled(table, digits=2):
    """A table for the book: no positional index, `digits` decimals."""
    return table.style.hide(axis="index").format(precision=digits)
