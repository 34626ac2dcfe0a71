"""Read committed results (``results/<preset>/<run>/``) into tidy tables for the book.

Pandas only (no torch), so the book's pages execute in seconds. Every verdict comes from
``lcnn_core.verdicts`` (one rule, stated there and printed in the book as ``verdicts.RULE``):
our runs are smaller than the paper's and on other data, so values are not expected to match;
each claim's effect relative to a baseline gets a confidence interval over seeds, and the
verdict asks whether it lies on the paper's side. ``ledger`` collects one row per claim and scale.
"""
import dataclasses
import functools
import json
import math
import re
from pathlib import Path  # noqa: F401  (re-exported for notebooks)

import numpy as np
import pandas as pd
import yaml

from . import verdicts
from .config import TRAINING_VARIANTS, VARIANT_LABELS, ConfigError, load_preset
from .reference import ACC_TOLERANCE, COST_TARGETS, PAPER, PAPER_CIFAR10_CF, PAPER_PGD, PAPER_PGD_EPS, TEAM  # noqa: F401

# Test-set sizes when a preset takes the whole test set (n_test: null); data.py's splits.
TEST_IMAGES = {"mnist5k": 1000, "cifar10": 10000, "cifar10-jpeg": 10000, "cifar100": 10000}


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
        seed=cfg["seed"], lam=cfg["lam_beta"], lam_gamma=cfg["lam_gamma"], epochs=cfg["epochs"], dataset=cfg["dataset"],
        n_train=geo["scale"]["n_train"], width=cfg["width"], arch=cfg["arch"],
        accuracy=hist["test_acc"].iloc[-1], grad=geo["grad_norm_mean"],
        hess=geo["hess_norm_lanczos_mean"], hess_ref=geo["hess_norm_reference_mean"],
        cf=geo["curvature_lanczos_mean"], cf_ref=geo["curvature_reference_mean"],
        # C_f of the true-class logit and of the margin (NaN for runs evaluated before they were measured)
        cf_logit=geo.get("curvature_logit_mean", np.nan), cf_margin=geo.get("curvature_margin_mean", np.nan),
        grad_logit=geo.get("by_output", {}).get("logit", {}).get("grad_norm_mean", np.nan),
        eval_samples=geo["n_samples"], pgd_samples=geo["scale"].get("pgd_samples"),
        test_images=cfg.get("n_test") or TEST_IMAGES.get(cfg["dataset"]),
        bound_hessian=geo["bound_hessian"], bound_grad=geo["bound_grad"], mean_beta=geo["proxy"]["mean_beta"], sum_abs_log_gamma=geo["proxy"]["sum_abs_log_gamma"],
        hardware=hardware_phrase(prov["hardware"]), wall_time_s=prov["wall_time_s"], git_sha=prov.get("git_sha"),
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


def fmt(mean, std=None, digits=2):
    if std is None or std != std:
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} ± {std:.{digits}f}"


def fmt_seeds(vals, digits=2):
    """Mean ± std over seeds of an array of per-seed values (the mean alone for one seed)."""
    return fmt(vals.mean(), vals.std(ddof=1) if len(vals) > 1 else None, digits)


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
        run=run, variant=cfg["variant"], lam=cfg["lam_beta"], lam_gamma=cfg["lam_gamma"], budget=cfg["epochs"]))


def hardware_phrase(hardware):
    """Provenance's hardware string for prose ('CPU x86_64, 1 threads' -> '..., 1 thread')."""
    return re.sub(r"\b1 threads\b", "1 thread", str(hardware))


def scale_line(runs):
    """One sentence of scale for a figure caption: the first run's data, model and schedule, the seeds
    per model (a range where models differ) and every distinct hardware the runs were made on."""
    r = runs.iloc[0]
    per_model = runs.groupby("variant")["seed"].nunique()
    lo, hi = int(per_model.min()), int(per_model.max())
    seeds = f"{lo} seed{'s' if lo > 1 else ''}" if lo == hi else f"{lo}–{hi} seeds per model"
    hardware = " and ".join(dict.fromkeys(runs["hardware"]))
    return (f"{r['dataset']}, {r['n_train']:,} training images, {r['arch']} width {r['width']}, "
            f"{r['epochs']} epochs, {seeds}, {r['eval_samples']} test images for the geometry, {hardware}")


def linear_baseline(dataset, root=None):
    """Test accuracy (%) of softmax regression on the pixels (python -m lcnn_core linear-baseline), or NaN."""
    f = (Path(root) if root else results_root()) / "linear-baseline" / f"{dataset}.json"
    return float(json.loads(f.read_text())["accuracy"]) if f.exists() else float("nan")


def styled(table, digits=2):
    """A table for the book: no positional index, `digits` decimals for the values, a missing cell
    as "–". A setting column (a radius ε, a penalty weight λ, a learning rate, a noise level m) is
    printed exactly ({:g}), never rounded to the values' digits: ε = 0.05 and 0.15 are not "0.1"."""
    def exact(x):
        if isinstance(x, (int, float, np.number)) and not isinstance(x, bool):
            return "–" if x != x else f"{x:g}"
        return "–" if x is None else str(x)
    settings = [c for c in table.columns if str(c) in ("ε", "eps", "λ", "lam", "lr", "m", "radius")]
    return table.style.hide(axis="index").format(precision=digits, na_rep="–").format(exact, subset=settings)


# ---------------------------------------------------------------------------------------------
# Verdicts: every claim's effect with its interval, from lcnn_core.verdicts.

GEOMETRY_COLUMNS = {"cf": "curvature_lanczos", "hess": "hess_norm_lanczos", "grad": "grad_norm",  # samples.csv
                    "cf_logit": "curvature_lanczos_logit", "cf_margin": "curvature_lanczos_margin"}
METRIC_NAMES = {"cf": "E C_f", "hess": "E‖∇²f‖", "grad": "E‖∇f‖", "accuracy": "test accuracy %",
                "cf_logit": "E C_f (true-class logit)", "cf_margin": "E C_f (margin)"}
# C_f of three outputs f (metrics.py): the loss, the true-class logit z_y, the margin z_y - max_{j≠y} z_j.
OUTPUTS = {"cf": "loss", "cf_logit": "logit", "cf_margin": "margin"}


def lambda_runs(runs, lam=None, epochs=None):
    """The runs of one LCNN lambda: every run without the LCNN penalty, and LCNN runs with
    lambda_beta = lambda_gamma = ``lam`` (an ablation run with the two apart is neither lambda's);
    with ``epochs``, only runs of that many epochs (a preset's longer runs are another table)."""
    if runs.empty:
        return runs
    if epochs is not None:
        runs = runs[runs.epochs == epochs]
    if lam is None:
        return runs
    return runs[~runs.variant.isin(["lcnn", "lcnn_gradreg"]) | ((runs.lam == lam) & (runs.lam_gamma == lam))]


def table_runs(preset, lam=None, root=None):
    """The runs of a preset's main table at one LCNN lambda: ``lambda_runs`` of its runs with the
    preset's own epochs, so that a grid's longer runs (h100-cifar10-jpeg's 50 epochs) stay out."""
    return lambda_runs(load_runs(preset, root), lam, epochs=_preset_epochs(preset))


def seed_values(runs, variant, column):
    """One value of ``column`` per seed of ``variant`` (sorted by seed)."""
    return runs[runs.variant == variant].sort_values("seed")[column].to_numpy(dtype=float)


def image_values(runs, variant, metric, baseline="standard", root=None):
    """(model, baseline) per-image values of a geometry metric on the shared test images, for a
    single-seed interval; None unless each model has exactly one run with the same images."""
    if metric not in GEOMETRY_COLUMNS:
        return None
    root = Path(root) if root else results_root()
    frames = []
    for v in (variant, baseline):
        r = runs[runs.variant == v]
        if len(r) != 1:
            return None
        f = root / r.iloc[0]["preset"] / r.iloc[0]["run"] / "samples.csv"
        if not f.exists():
            return None
        frames.append(pd.read_csv(f))
    a, b = frames
    if len(a) != len(b) or not (a["label"].to_numpy() == b["label"].to_numpy()).all():
        return None
    return a[GEOMETRY_COLUMNS[metric]].to_numpy(float), b[GEOMETRY_COLUMNS[metric]].to_numpy(float)


def paper_ratio(variant, metric, baseline="standard"):
    """The paper's (CIFAR-100) mean of ``metric`` for ``variant`` over the baseline's. The paper
    measures C_f on the loss only, so the logit and margin readouts are judged against its loss
    ratio; a variant the paper does not train (an LCNN component alone, LCNN at lambda = 0) is
    judged against the full LCNN's ratio: does it reproduce LCNN's effect?"""
    metric = "cf" if metric in OUTPUTS else metric
    variant = variant if variant in PAPER else "lcnn"
    return PAPER[variant][metric][0] / PAPER[baseline][metric][0]


def geometry_verdict(runs, variant, metric="cf", baseline="standard", root=None):
    """Ratio model / baseline of a geometry metric over seeds, judged against the paper's ratio."""
    return verdicts.compare(seed_values(runs, variant, metric), seed_values(runs, baseline, metric),
                            paper=paper_ratio(variant, metric, baseline), scale="ratio",
                            images=image_values(runs, variant, metric, baseline, root),
                            n_images=int(runs["eval_samples"].iloc[0]))


# "At the same accuracy" with the power to decide (book/accuracy_design.md): a preset's accuracy rows
# come from its accuracy design (all test images, more seeds) once both models of a row have
# ACCURACY_DESIGN_SEEDS seeds there, the number that page's power calculation chose before any run.
# Fewer seeds are an interim look, shown on that page but never judged: stopping at whichever seed
# count first gives a narrow interval would raise the chance of a false "reproduced".
ACCURACY_DESIGNS = {"cifar10-jpeg-cpu16": "cifar10-jpeg-cpu16-accuracy", "cpu-default": "cpu-default-accuracy"}
ACCURACY_DESIGN_SEEDS = 10


def _has_design_seeds(runs, variants):
    """Whether every model of ``variants`` has the design's ACCURACY_DESIGN_SEEDS seeds in ``runs``."""
    return not runs.empty and all((runs.variant == v).sum() >= ACCURACY_DESIGN_SEEDS for v in variants)


def accuracy_source(preset, runs, variant, baseline="standard", root=None):
    """(runs, preset) that the ledger's accuracy row ``variant`` − ``baseline`` of ``preset`` is
    judged on: the preset's accuracy design (``ACCURACY_DESIGNS``) once both models have
    ``ACCURACY_DESIGN_SEEDS`` seeds there, else ``runs``, the preset's own."""
    root = Path(root) if root else results_root()
    design = ACCURACY_DESIGNS.get(preset)
    if design and (root / design).is_dir():
        d = load_runs(design, root)
        if _has_design_seeds(d, (variant, baseline)):
            return d, design
    return runs, preset


def accuracy_interim(design, root=None):
    """The accuracy design's runs so far, per model: seeds, test images, mean accuracy and, against
    Standard, the difference with its 95 % Welch interval; ``judged`` says whether the model has
    the design's ``ACCURACY_DESIGN_SEEDS`` seeds (before that, a look, not a verdict). Empty without runs."""
    root = Path(root) if root else results_root()
    runs = load_runs(design, root) if (root / design).is_dir() else pd.DataFrame()
    rows = []
    for v in [v for v in TRAINING_VARIANTS if not runs.empty and v in set(runs.variant)]:
        vals = seed_values(runs, v, "accuracy")
        row = dict(model=VARIANT_LABELS[v], seeds=len(vals), test_images=int(runs[runs.variant == v].test_images.iloc[0]),
                   accuracy=fmt_seeds(vals, 2), difference="–", judged=_has_design_seeds(runs, (v,)))
        if v != "standard" and "standard" in set(runs.variant):
            ver = accuracy_verdict(runs, v)
            row.update(difference=ver.interval(2), seeds=ver.seeds(), judged=_has_design_seeds(runs, (v, "standard")))
        rows.append(row)
    return pd.DataFrame(rows)


def accuracy_verdict(runs, variant, baseline="standard"):
    """Accuracy difference model − baseline over seeds, judged for equivalence within ACC_TOLERANCE."""
    paper = PAPER.get(variant, PAPER["lcnn"])["acc"][0] - PAPER[baseline]["acc"][0]
    n = runs["test_images"].iloc[0]
    return verdicts.equivalent(seed_values(runs, variant, "accuracy"), seed_values(runs, baseline, "accuracy"),
                               paper=paper, n_images=int(n) if n == n and n is not None else None)


def _verdict_text(v):
    return f"{v.outcome} ({v.reason})"


def claim_table(runs, metric="cf", root=None):
    """Paper | team | ours per variant for one geometry metric, with ours / Standard and its
    95 % interval over seeds, the paper's / Standard, seeds, images, and the verdict."""
    rows = []
    for v in [v for v in TRAINING_VARIANTS if v in set(runs.variant)]:
        vals = seed_values(runs, v, metric)
        paper, team = PAPER.get(v, {}).get(metric), TEAM.get(v, {}).get(metric)
        row = {"model": VARIANT_LABELS[v], "paper (CIFAR-100)": fmt(*paper) if paper else "–",
               "team (CIFAR-10)": fmt(team) if team is not None else "–",
               "ours": fmt_seeds(vals)}
        if v == "standard" or "standard" not in set(runs.variant):
            row.update({"ours / Standard (95% CI)": "–", "paper / Standard": "–", "seeds": str(len(vals)),
                        "images": int(runs["eval_samples"].iloc[0]), "verdict": "baseline"})
        else:
            ver = geometry_verdict(runs, v, metric, root=root)
            row.update({"ours / Standard (95% CI)": ver.interval(), "paper / Standard": f"{ver.paper:.2f}",
                        "seeds": ver.seeds(), "images": ver.n_images, "verdict": _verdict_text(ver)})
        rows.append(row)
    return pd.DataFrame(rows)


def accuracy_table(runs, preset=None, root=None):
    """Accuracy per variant beside the paper's and team's; ours − Standard with its interval, and
    the equivalence verdict (within ± ACC_TOLERANCE points). With ``preset``, each difference is
    judged where the ledger judges it (``accuracy_source``: the scale's accuracy design once it has
    its seeds) and ``judged on`` names those runs; "ours %" and "ours seeds" stay the preset's own
    runs, "seeds judged" are the difference's (model / Standard where they differ)."""
    rows = []
    for v in [v for v in TRAINING_VARIANTS if v in set(runs.variant)]:
        vals = seed_values(runs, v, "accuracy")
        paper, team = PAPER.get(v, {}).get("acc"), TEAM.get(v, {}).get("acc")
        row = {"model": VARIANT_LABELS[v], "paper (CIFAR-100)": fmt(*paper) if paper else "–",
               "team (CIFAR-10)": fmt(team, digits=0) if team is not None else "–",
               "ours %": fmt_seeds(vals, 1), "ours seeds": str(len(vals))}
        if v == "standard" or "standard" not in set(runs.variant):
            row.update({"ours − Standard (95% CI)": "–", "seeds judged": "–", "verdict": "baseline"})
            if preset:
                row["judged on"] = "–"
        else:
            acc_runs, acc_preset = accuracy_source(preset, runs, v, root=root) if preset else (runs, None)
            ver = accuracy_verdict(acc_runs, v)
            row.update({"ours − Standard (95% CI)": ver.interval(1), "seeds judged": ver.seeds(),
                        "verdict": _verdict_text(ver)})
            if preset:
                row["judged on"] = f"{acc_preset}, {ver.n_images:,} test images" if ver.n_images else acc_preset
        rows.append(row)
    return pd.DataFrame(rows)


def robustness_values(preset, runs, variant, root=None):
    """Per seed: the geometric mean over noise magnitudes of the mean relative gradient change."""
    rob = robustness(preset, root)
    if rob.empty:
        return np.array([])
    rob = rob[rob.run.isin(runs[runs.variant == variant].run)]
    return np.exp(rob.groupby("seed").relative_change_mean.apply(lambda s: np.log(s).mean())).to_numpy(float)


def robustness_verdict(preset, runs, variant="lcnn", baseline="standard", root=None):
    """Ratio model / baseline of the relative gradient change (geometric mean over magnitudes),
    judged against the paper's CIFAR-10 figure (its implied E C_f ratio)."""
    return verdicts.compare(robustness_values(preset, runs, variant, root), robustness_values(preset, runs, baseline, root),
                            paper=PAPER_CIFAR10_CF[variant] / PAPER_CIFAR10_CF[baseline], scale="ratio",
                            n_images=int(runs["eval_samples"].iloc[0]))


PGD_EPS = 0.1  # the paper's headline attack strength (its text quotes this column)


def pgd_values(preset, runs, variant, eps=PGD_EPS, root=None):
    """Per seed: PGD accuracy (%) at ``eps``."""
    df, _ = pgd(preset, root)
    if df.empty:
        return np.array([])
    df = df[df.run.isin(runs[runs.variant == variant].run) & np.isclose(df.eps, eps)]
    return df.sort_values("seed").accuracy.to_numpy(float)


def paper_pgd_gain(variant, baseline="standard", eps=PGD_EPS):
    """The paper's PGD accuracy of ``variant`` minus ``baseline`` at ``eps`` (points; reference.PAPER_PGD)."""
    i = PAPER_PGD_EPS.index(eps)
    return PAPER_PGD[variant][i] - PAPER_PGD[baseline][i]


def pgd_verdict(preset, runs, variant="lcnn", baseline="standard", eps=PGD_EPS, root=None):
    """PGD accuracy difference model − baseline at ``eps``, against the paper's (reference.PAPER_PGD);
    None until both models have PGD at ``eps`` (a preset being regenerated may have one of them)."""
    n = runs["pgd_samples"].iloc[0]
    vals = [pgd_values(preset, runs, v, eps, root) for v in (variant, baseline)]
    if not all(len(x) for x in vals):
        return None
    return verdicts.compare(*vals, paper=paper_pgd_gain(variant, baseline, eps),
                            n_images=int(n) if n == n and n is not None else None)


def output_table(runs, root=None):
    """E C_f of the three outputs (loss, true-class logit, margin) per variant, mean ± std over
    seeds, with each output's ours / Standard and its verdict; E‖∇ z_y‖ shows the logit scale.
    Variants without the logit and margin readouts (evaluated before they existed) are dropped."""
    runs = runs[runs.cf_logit.notna()] if "cf_logit" in runs else runs.iloc[:0]
    rows = []
    for v in [v for v in TRAINING_VARIANTS if v in set(runs.variant)]:
        row = {"model": VARIANT_LABELS[v], "seeds": str(runs[runs.variant == v].seed.nunique())}
        for metric, out in OUTPUTS.items():
            vals = seed_values(runs, v, metric)
            row[f"E C_f {out}"] = fmt_seeds(vals)
            if v != "standard" and "standard" in set(runs.variant):
                ver = geometry_verdict(runs, v, metric, root=root)
                row[f"{out}: / Standard (95% CI)"] = f"{ver.interval()}, {ver.outcome}"
            else:
                row[f"{out}: / Standard (95% CI)"] = "–"
        g = seed_values(runs, v, "grad_logit")
        row["E‖∇z_y‖"] = fmt(g.mean(), digits=3)
        rows.append(row)
    return pd.DataFrame(rows)


# LCNN's parts, each alone, beside the full LCNN with and without its penalty (issue 18).
COMPONENTS = ("standard", "lcnn", "lcnn_nopen", "csoftplus", "snconv", "clipbn", "softplus_wd")


def component_verdicts(runs, root=None):
    """The verdict of E C_f model / Standard on the loss and on the true-class logit, per variant of
    ``COMPONENTS`` present other than Standard: ``{(variant, metric): Verdict}``, metric "cf" or
    "cf_logit"; a pair is absent without Standard or where a seed's value is not finite."""
    have = set(runs.variant)
    if "standard" not in have:
        return {}
    return {(v, metric): geometry_verdict(runs, v, metric, root=root)
            for v in COMPONENTS if v in have and v != "standard" for metric in ("cf", "cf_logit")
            if np.isfinite(seed_values(runs, v, metric)).all()}


def component_table(runs, root=None, judged=None):
    """What lowers curvature: per variant of ``COMPONENTS`` present, accuracy and E C_f (loss and
    logit) with ours / Standard and the verdict against the paper's LCNN / Standard ratio.
    ``judged``: ``component_verdicts(runs, root)`` when the caller has it (each verdict reads every
    run's per-image values)."""
    judged = component_verdicts(runs, root) if judged is None else judged
    rows = []
    for v in [v for v in COMPONENTS if v in set(runs.variant)]:
        acc = seed_values(runs, v, "accuracy")
        row = {"model": VARIANT_LABELS[v], "seeds": str(len(acc)),
               "accuracy %": fmt_seeds(acc, 1)}
        for metric in ("cf", "cf_logit"):
            name = OUTPUTS[metric]
            row[f"E C_f {name}"] = fmt_seeds(seed_values(runs, v, metric))
            ver = judged.get((v, metric))
            row[f"{name}: / Standard (95% CI)"], row[f"{name} verdict"] = (
                (ver.interval(), ver.outcome) if ver else ("–", "–"))
        rows.append(row)
    return pd.DataFrame(rows)


def component_ratios(runs):
    """The numbers behind "which component does the work": per variant of ``COMPONENTS`` present,
    its seeds, mean test accuracy and its mean E C_f (loss, logit) divided by Standard's and by
    LCNN's (NaN where that model is absent), and the 95 % interval of the loss's ratio to LCNN
    (``cf_over_lcnn_low`` / ``_high``; NaN with one seed). A DataFrame indexed by variant."""
    have = set(runs.variant)
    mean = lambda v, c: float(np.mean(seed_values(runs, v, c))) if v in have else np.nan
    rows = {}
    for v in [v for v in COMPONENTS if v in have]:
        row = dict(seeds=int((runs.variant == v).sum()), accuracy=mean(v, "accuracy"))
        for metric in ("cf", "cf_logit"):
            for ref in ("standard", "lcnn"):
                row[f"{metric}_over_{ref}"] = mean(v, metric) / mean(ref, metric)
        lo, hi = (verdicts.ratio_interval(seed_values(runs, v, "cf"), seed_values(runs, "lcnn", "cf"))
                  if "lcnn" in have else (np.nan, np.nan))
        row.update(cf_over_lcnn_low=lo, cf_over_lcnn_high=hi)
        rows[v] = row
    return pd.DataFrame.from_dict(rows, orient="index")


def strong_attacks(preset, root=None):
    """Robust accuracy (%) per run and eps under our PGD, APGD-CE, APGD-CE + APGD-T and the
    strongest (attacks.json, ``lcnn_core.apgd``), long format with the run's masking flags,
    and the attack settings of the first run (None when no run has attacks.json)."""
    root = Path(root) if root else results_root()
    rows, settings = [], None
    for f in sorted((root / preset).glob("*/attacks.json")):
        d = json.loads(f.read_text())
        cfg = yaml.safe_load((f.parent / "config.yaml").read_text())
        settings = settings or dict(d["settings"], n_samples=d["n_samples"])
        flags = d.get("flags", {})
        for r in d["table"]:
            rows.append(dict(variant=cfg["variant"], label=VARIANT_LABELS[cfg["variant"]], seed=cfg["seed"],
                             run=f.parent.name, n_samples=d["n_samples"], clean=d["clean_accuracy"],
                             masking_suspected=bool(flags.get("masking_suspected", False)), **r))
    return pd.DataFrame(rows), settings


def strong_attack_table(preset, root=None):
    """Per variant and eps: mean over seeds of each attack's robust accuracy (%), the strongest
    first, with seeds, images per seed and whether any seed's curve was flagged as masked."""
    df, _ = strong_attacks(preset, root)
    if df.empty:
        return df
    order = {v: i for i, v in enumerate(TRAINING_VARIANTS)}
    g = df.groupby(["variant", "eps"], sort=False)
    out = g[["strongest", "apgd_t", "apgd_ce", "pgd"]].mean().round(1)
    out["seeds"] = g.seed.nunique()
    out["images"] = g.n_samples.first()
    out["masking flagged"] = g.masking_suspected.any().map({True: "yes", False: "no"})
    out = out.reset_index()
    out.insert(0, "model", out.variant.map(VARIANT_LABELS))
    out = out.sort_values(["variant", "eps"], key=lambda c: c.map(order) if c.name == "variant" else c, kind="stable")
    return out.drop(columns="variant").rename(columns={
        "strongest": "strongest %", "apgd_t": "APGD-CE + T %", "apgd_ce": "APGD-CE %", "pgd": "our PGD %"}).reset_index(drop=True)


# Below this strongest-attack accuracy at its eps, the more-effort check can hardly fall further:
# it is reported, but marked as saying little.
CHECK_INFORMATIVE = 10.0  # %


def effort_checks(preset, root=None):
    """The more-effort checks of a preset's runs (``apgd.more_effort_check``): the evaluation's own
    (attacks.json "check", at the middle eps of the grid) and the attack-effort study's
    (results/attack-effort/summary.csv, at an eps where the number can fall). Per check, the eps,
    the strongest accuracy at the base and at twice the steps and restarts, the tolerance (one
    image), whether it passed, and whether it is informative (base accuracy at least
    CHECK_INFORMATIVE %: at near-0 accuracy it cannot fall)."""
    root = Path(root) if root else results_root()
    found = []
    for f in sorted((root / preset).glob("*/attacks.json")):
        check = json.loads(f.read_text()).get("check")
        if check:
            cfg = yaml.safe_load((f.parent / "config.yaml").read_text())
            found.append(("evaluation (middle ε)", cfg["variant"], cfg["seed"], check))
    study = root / "attack-effort" / "summary.csv"
    if study.exists():
        for r in pd.read_csv(study).itertuples():
            if r.preset == preset:
                found.append(("attack-effort study", r.variant, r.seed, r._asdict()))
    rows = [{"model": VARIANT_LABELS[v], "seed": seed, "check": source, "ε": c["eps"], "strongest %": c["base"],
             "2× steps and restarts %": c["stronger"], "lowered by": c["lowered_by"], "tolerance": c["tolerance"],
             "passed": "yes" if c["ok"] else "no",
             "informative": "yes" if c["base"] >= CHECK_INFORMATIVE else f"no (below {CHECK_INFORMATIVE:g} %)"}
            for source, v, seed, c in found]
    return pd.DataFrame(rows)


def strong_attack_values(preset, runs, eps, variant="lcnn", baseline="standard", root=None, df=None):
    """The strongest-attack accuracies (%) at ``eps`` of ``runs`` (a ``load_runs`` frame), as two
    arrays ordered by seed: ``variant``'s and ``baseline``'s; an array is empty where that model has
    no strong attack at ``eps`` yet. ``df``: the preset's ``strong_attacks`` frame, if already read."""
    df = strong_attacks(preset, root)[0] if df is None else df
    if df.empty:
        return np.array([]), np.array([])
    df = df[np.isclose(df.eps, eps) & df.run.isin(runs.run)]
    return tuple(df[df.variant == v].sort_values("seed").strongest.to_numpy(float) for v in (variant, baseline))


def strong_attack_informative(values, informative=CHECK_INFORMATIVE):
    """Whether two models' strongest-attack accuracies (``strong_attack_values``) can show a
    difference: not where both means are below ``informative`` %, a radius that drives both
    towards 0 (as for the more-effort checks, ``effort_checks``)."""
    return max(x.mean() for x in values) >= informative


def strong_attack_verdict(preset, runs, eps, variant="lcnn", baseline="standard", root=None, df=None,
                          informative=CHECK_INFORMATIVE):
    """Strongest-attack accuracy difference model − baseline at ``eps`` over seeds. The paper
    reports PGD only at eps <= 0.2 on CIFAR-100; its effect at PGD_EPS is the yardstick. None until
    both models have the strong attack at ``eps`` (a preset being regenerated may have one of them),
    and None where it would say nothing (``strong_attack_informative``; the ledger skips it too)."""
    df = strong_attacks(preset, root)[0] if df is None else df
    vals = strong_attack_values(preset, runs, eps, variant, baseline, root, df)
    if not all(len(x) for x in vals) or not strong_attack_informative(vals, informative):
        return None
    return verdicts.compare(*vals, paper=paper_pgd_gain(variant, baseline),
                            n_images=int(df.n_samples.iloc[0]))


# The scales the ledger reads: (preset, LCNN lambda or None for all, short name).
SCALES = [
    ("cpu-default", None, "MNIST-5k, width 8, CPU"),
    ("cifar10-jpeg-cpu", None, "CIFAR-10 JPEG 5k, width 8, CPU"),
    ("cifar10-jpeg-cpu16", None, "CIFAR-10 JPEG 10k, width 16, CPU"),
    # seed 0 on an H100 by 7dd072b, seeds 1-2 on an H200 by c1c7bae, pooled (reproducing.md, sec-gpu-pooling)
    ("h100-cifar10-jpeg", 1e-3, "CIFAR-10 JPEG, width 64, GPU, λ = 1e-3"),
]


def setting_name(preset, lam=None):
    """A result page's name for one of its sections (table cells, headings): the ledger's scale name
    (``SCALES``) without its lambda, then the section's lambda if it has one; a preset the ledger
    does not read keeps its own name. ('h100-cifar10-jpeg', 1e-2) -> '..., GPU, λ = 1e-2'."""
    name = re.sub(r", λ = \S+$", "", next((s for p, _, s in SCALES if p == preset), preset))
    return name + ("" if lam is None else ", λ = " + f"{lam:.0e}".replace("e-0", "e-"))


def gpu_names(preset, lam=None, root=None):
    """The GPUs a section's runs were made on, from their provenance: 'H100 and H200'."""
    found = table_runs(preset, lam, root).hardware.str.extract(r"NVIDIA (\w+)", expand=False).dropna()
    return " and ".join(sorted(set(found))) or "none found"


# The paper's claims as the book numbers them (intro.md), with the page that shows each.
CLAIMS = {
    1: "LCNNs have much lower curvature than a standard network, at the same accuracy",
    2: "LCNNs have more robust input gradients",
    3: "LCNNs are somewhat more robust to L2 PGD, without adversarial training",
    4: "LCNN + GradReg has the lowest curvature, again at the same accuracy",
    5: "LCNNs cost only marginally more training time",
}


def _preset_epochs(preset):
    """The epochs of a preset's config (its main table; a grid's longer runs are left out), None
    for a folder without a training preset."""
    try:
        return load_preset(preset)["config"]["epochs"]
    except ConfigError:
        return None


def full_width_drop(runs, lam=1e-2, baseline="standard"):
    """The team-drop question at full width: test accuracy of LCNN at lambda_beta = lambda_gamma =
    ``lam`` minus the baseline's, over seeds (Welch), judged as the ablation's lambda rows are,
    against the team's drop (``TEAM_DROP``): does that lambda cost about the team's accuracy? None
    without both models. ``runs``: one table's runs (``lambda_runs`` with the preset's epochs)."""
    lcnn = runs[(runs.variant == "lcnn") & (runs.lam == lam) & (runs.lam_gamma == lam)]
    base = runs[runs.variant == baseline]
    if lcnn.empty or base.empty:
        return None
    n = runs["test_images"].iloc[0]
    v = verdicts.compare(lcnn.sort_values("seed").accuracy.to_numpy(float),
                         base.sort_values("seed").accuracy.to_numpy(float), paper=TEAM_DROP,
                         n_images=int(n) if n == n and n is not None else None)
    # the rule's reason names the paper's effect; here the effect judged against is the team's drop
    return dataclasses.replace(v, reason=v.reason.replace("paper's", "team's"))


def _ledger_row(claim, test, scale, v, page, digits=2, preset="–"):
    paper = f"{v.paper:+.{digits}f}" if v.scale == "difference" else f"{v.paper:.{digits}f}"
    why = v.reason + ("; the interval covers test-image noise only" if "image noise" in v.method else "")
    return {"claim": claim, "test": test, "paper": paper, "ours (95% CI)": v.interval(digits),
            "ours / paper": f"{v.relative:.2f}" + (" (log)" if v.scale == "ratio" else "") if np.isfinite(v.relative) else "–",
            "scale": scale, "seeds": v.seeds(), "images": v.n_images if v.n_images is not None else "–",
            "verdict": v.outcome, "why": why, "method": v.method, "page": page, "preset": preset,
            # the same numbers unformatted, for the forest plot (lcnn_core.figures)
            "effect": v.scale, "estimate": v.estimate, "low": v.low, "high": v.high, "paper_value": v.paper}


def train_cost(root=None):
    """{device: (table of step time per variant, benchmark json)} from results/benchmarks/train_step_*.json."""
    root = Path(root) if root else results_root()
    out = {}
    for f in sorted((root / "benchmarks").glob("train_step_*.json")):
        d = json.loads(f.read_text())
        out[f.stem.removeprefix("train_step_")] = (pd.DataFrame(d["table"]), d)
    return out


ACCURACY_DESIGN_MODELS = ("standard", "lcnn", "lcnn_gradreg")


def seed_sd(preset, variants=ACCURACY_DESIGN_MODELS, root=None):
    """(table, pooled sd): per variant of ``preset`` the final test accuracies of its seeds, their
    sd (points), the test images behind them; and the sd pooled over the variants (each
    variance weighted by its degrees of freedom), the spread a design for "at the same accuracy"
    has to beat."""
    runs = load_runs(preset, root)
    rows, groups = [], []
    for v in variants:
        seeds = runs[runs.run.str.fullmatch(rf"{re.escape(v)}-s\d+")].sort_values("seed")  # the preset's own runs, no grid
        if len(seeds):
            accs = seeds.accuracy.to_numpy(float)
            groups.append(accs)
            rows.append(dict(variant=VARIANT_LABELS.get(v, v), seeds=len(accs), test_images=int(seeds.test_images.iloc[0]),
                             mean=float(np.mean(accs)), sd=float(np.std(accs, ddof=1)) if len(accs) > 1 else math.nan))
    return pd.DataFrame(rows), pooled_sd(groups)


def pooled_sd(groups):
    """The standard deviation pooled over groups of values (each variance weighted by its degrees
    of freedom; a group of one value adds none); NaN where no group has two values."""
    spread = [(len(x) - 1, np.var(x, ddof=1)) for x in map(np.asarray, groups) if len(x) > 1]
    return math.sqrt(sum(d * var for d, var in spread) / sum(d for d, _ in spread)) if spread else math.nan


def accuracy_power(sd, seeds=(3, 5, 8, 10, 12), deltas=(0.0, 0.25, 0.5)):
    """P(the accuracy verdict says "reproduced") per number of seeds (rows) and true difference
    (columns, points), for per-seed sd ``sd`` (``verdicts.equivalence_power``)."""
    return pd.DataFrame({f"true difference {d:g}": [verdicts.equivalence_power(sd, n, d) for n in seeds]
                         for d in deltas}, index=pd.Index(seeds, name="seeds per model"))


def ledger_scales(root):
    """(preset, scale name, main-table runs) of every scale of ``SCALES`` whose results hold
    Standard and LCNN: the scales the ledger has rows for."""
    for preset, lam, scale in SCALES:
        if (root / preset).is_dir():
            runs = table_runs(preset, lam, root)
            if {"standard", "lcnn"} <= set(runs.variant):
                yield preset, scale, runs


def accuracy_rows_power(root=None, target=0.8, max_seeds=40):
    """Why each accuracy row of the ledger says what it says: per row (scale, model), the design it
    judges (preset, seeds per model, test images), its interval and verdict, the seed spread its own
    runs measure (sd of the final accuracy, pooled over the two models; NaN where neither has two
    seeds), the probability ``power_at_0`` that a design of that many seeds says "reproduced" at that
    spread when the true difference is 0 (``verdicts.equivalence_power``), and ``seeds_needed``, the
    fewest seeds per model that reach ``target`` there (None beyond ``max_seeds``), and ``status``:
    decided, waiting for the scale's accuracy design, or too few seeds for its spread."""
    root = Path(root) if root else results_root()
    rows = []
    for preset, scale, runs in ledger_scales(root):
        for v in [v for v in ("lcnn", "lcnn_gradreg") if v in set(runs.variant)]:
            acc_runs, acc_preset = accuracy_source(preset, runs, v, root=root)
            vals = [seed_values(acc_runs, m, "accuracy") for m in (v, "standard")]
            sd = pooled_sd(vals)
            n = min(len(x) for x in vals)
            power = verdicts.equivalence_power(sd, n) if n > 1 and sd == sd else math.nan
            needed = next((k for k in range(2, max_seeds + 1) if verdicts.equivalence_power(sd, k) >= target),
                          None) if sd == sd else None
            ver = accuracy_verdict(acc_runs, v)
            design = ACCURACY_DESIGNS.get(preset)
            if ver.outcome != "inconclusive":
                status = "decided"
            elif design and acc_preset != design:
                d = load_runs(design, root) if (root / design).is_dir() else pd.DataFrame(columns=["variant"])
                status = (f"waits for {design}'s {ACCURACY_DESIGN_SEEDS} seeds per model "
                          f"({VARIANT_LABELS[v]} has {int((d.variant == v).sum())})")
            elif power == power and power >= target:
                status = "the design has the power; the data did not decide"
            elif needed:
                status = f"too few seeds for its spread: {needed} per model reach {target:.0%} power"
            else:
                status = f"too few seeds for its spread: more than {max_seeds} per model for {target:.0%} power"
            rows.append(dict(scale=scale, model=VARIANT_LABELS[v], preset=acc_preset, seeds=ver.seeds(),
                             test_images=ver.n_images, interval=ver.interval(1), verdict=ver.outcome,
                             sd=sd, power_at_0=power, seeds_needed=needed, status=status))
    return pd.DataFrame(rows)


def dispatch_table(root=None):
    """benchmarks/dispatch.py's table: per variant and code version, the ``aten::`` ops one tiny
    training step dispatches (ResNet-18 width 4, batch 2) and its CPU time, each against Standard;
    None where the benchmark has not run."""
    root = Path(root) if root else results_root()
    f = root / "benchmarks" / "dispatch_cpu.json"
    if not f.is_file():
        return None
    d = json.loads(f.read_text())
    t = pd.DataFrame(d["table"])
    sha = (d["provenance"].get("git_sha") or "")[:7]
    t["code"] = t["code"].map(lambda c: f"current ({sha})" if c == "current" else f"before ({c})")
    t["variant"] = t["variant"].map(lambda v: VARIANT_LABELS.get(v, v))
    return t[["code", "variant", "ops", "ops_ratio", "step_ms", "time_ratio"]].rename(columns={
        "ops": "aten ops per step", "ops_ratio": "ops × Standard", "step_ms": "CPU ms per step",
        "time_ratio": "time × Standard"})


def cost_ratios(root=None):
    """Every benchmarked variant against Standard of the same run and width: yields (device,
    width, variant, verdict, paired, col, meta), the verdict from ``verdicts.bounded`` against
    ``reference.COST_TARGETS`` (paired over interleaved rounds where the benchmark kept them;
    a variant without a target is compared with 1). The ledger's claim 5 and ``cost_table``
    both read it."""
    for name, (table, meta) in train_cost(root).items():
        col = "step_s" if "step_s" in table else "epoch_s"
        table = table[table[col].notna()]  # a variant the benchmark failed on (its row says why)
        if "width" not in table:
            table = table.assign(width=meta.get("width"))
        if "capture_asked" in table:  # train_step_cuda: each variant eager and captured, each against its own Standard
            if "mode" in table:  # a step whose capture failed (or a CPU) ran eager: it times no replay
                table = table[~table["capture_asked"].astype(bool) | (table["mode"] == "captured")]
            table = table.assign(step_mode=table["capture_asked"].map({False: "eager", True: "captured"}))
        else:
            table = table.assign(step_mode="")
        for (width, mode), t in table.groupby(["width", "step_mode"], sort=True):
            device = f"{name} {mode}".strip()
            t = t.set_index("variant")
            if "standard" not in t.index:
                continue
            for variant in t.index.drop("standard"):
                paired = "round_s" in t and all(isinstance(t.loc[v, "round_s"], list) for v in (variant, "standard"))
                values = "round_s" if paired else col
                model, ref = ([t.loc[v, values]] if not paired else t.loc[v, values] for v in (variant, "standard"))
                limit = COST_TARGETS.get(variant.removesuffix("_before"), 1.0)
                yield device, int(width), variant, verdicts.bounded(model, ref, limit=limit, paired=paired), paired, col, meta


# The paper's other curvature and robustness baselines (its Table 1 and PGD table), each against
# Standard as the paper reports them: does CURE or adversarial training lower curvature (claim 1's
# yardstick, "much lower") and buy PGD accuracy (claim 3's, "without adversarial training")?
BASELINE_MODELS = ("cure", "adv")
BASELINE_MIN_SEEDS = 2  # a single seed cannot be judged (the rule says inconclusive): no row until two


def baseline_rows(preset, runs, scale, strong, root=None):
    """Ledger rows of ``BASELINE_MODELS`` against Standard at one scale: E C_f (claim 1), PGD accuracy
    at ``PGD_EPS`` and the strongest attack at the smallest eps of the strong grid (claim 3), each
    where both models have it; none for a baseline with fewer than ``BASELINE_MIN_SEEDS`` seeds.
    ``strong``: the scale's strong-attack frame as the ledger reads it (its runs, eps > 0)."""
    rows = []
    row = functools.partial(_ledger_row, preset=preset)
    for v in BASELINE_MODELS:
        if (runs.variant == v).sum() < BASELINE_MIN_SEEDS:
            continue
        name = VARIANT_LABELS[v]
        rows.append(row(1, f"E C_f, {name} / Standard (a baseline)", scale,
                        geometry_verdict(runs, v, "cf", root=root), "geometry"))
        if (ver := pgd_verdict(preset, runs, v, root=root)) is not None:
            rows.append(row(3, f"PGD accuracy at ε = {PGD_EPS:g}, {name} − Standard (a baseline, points)",
                            scale, ver, "adversarial", 1))
        if len(strong):
            eps = float(strong.eps.min())
            if (ver := strong_attack_verdict(preset, runs, eps, v, root=root, df=strong)) is not None:
                rows.append(row(3, f"strongest-attack accuracy at ε = {eps:g}, {name} − Standard (a baseline, points)",
                                scale, ver, "adversarial", 1))
    return rows


def ledger(root=None):
    """One row per claim and scale: the paper's effect, ours with its 95 % interval, ours / paper,
    the scale, seeds, images, the verdict and why, the page that shows it and the preset whose runs
    it judges (an accuracy row: the scale's accuracy design once it has its seeds), then the same
    numbers unformatted (``effect`` "ratio" or "difference", ``estimate``, ``low``, ``high``,
    ``paper_value``: NaN where there is no interval). Computed from results/ on every call; scales
    whose results are missing are skipped."""
    root = Path(root) if root else results_root()
    rows = []
    for preset, scale, runs in ledger_scales(root):
        have = set(runs.variant)
        row = functools.partial(_ledger_row, preset=preset)  # an accuracy row may name its design instead
        rows.append(row(1, "E C_f, LCNN / Standard", scale, geometry_verdict(runs, "lcnn", "cf", root=root), "geometry"))
        if runs[runs.variant.isin(["standard", "lcnn"])].cf_logit.notna().all():
            rows.append(row(1, "E C_f of the true-class logit, LCNN / Standard", scale,
                            geometry_verdict(runs, "lcnn", "cf_logit", root=root), "geometry"))
        rows.append(row(1, "E‖∇²f‖, LCNN / Standard", scale, geometry_verdict(runs, "lcnn", "hess", root=root), "geometry"))
        acc_runs, acc_preset = accuracy_source(preset, runs, "lcnn", root=root)
        rows.append(row(1, "accuracy, LCNN − Standard (points)", scale, accuracy_verdict(acc_runs, "lcnn"),
                        "geometry", 1, preset=acc_preset))
        if len(robustness_values(preset, runs, "lcnn", root)):
            rows.append(row(2, "relative gradient change, LCNN / Standard", scale,
                            robustness_verdict(preset, runs, root=root), "gradient_robustness"))
        if (v := pgd_verdict(preset, runs, root=root)) is not None:
            rows.append(row(3, f"PGD accuracy at ε = {PGD_EPS:g}, LCNN − Standard (points)", scale, v, "adversarial", 1))
        strong, _ = strong_attacks(preset, root)
        strong = strong[strong.run.isin(runs.run) & (strong.eps > 0)] if len(strong) else strong
        if len(strong):
            eps = float(strong.eps.min())  # the smallest eps of the strong grid: where models differ most
            if (v := strong_attack_verdict(preset, runs, eps, root=root, df=strong)) is not None:
                rows.append(row(3, f"strongest-attack accuracy at ε = {eps:g}, LCNN − Standard (points)",
                                scale, v, "adversarial", 1))
        if "lcnn_gradreg" in have:
            for other in ("lcnn", "gradreg"):
                if other in have:
                    rows.append(row(4, f"E C_f, LCNN + GradReg / {VARIANT_LABELS[other]}", scale,
                                    geometry_verdict(runs, "lcnn_gradreg", "cf", baseline=other, root=root), "geometry"))
            acc_runs, acc_preset = accuracy_source(preset, runs, "lcnn_gradreg", root=root)
            rows.append(row(4, "accuracy, LCNN + GradReg − Standard (points)", scale,
                            accuracy_verdict(acc_runs, "lcnn_gradreg"), "geometry", 1, preset=acc_preset))
        rows += baseline_rows(preset, runs, scale, strong, root)
    for device, width, variant, v, paired, col, meta in cost_ratios(root):
        if variant != "lcnn":
            continue
        why = v.reason if paired else v.reason.replace("one value per model", f"median of {meta['rounds']} rounds per model")
        hw = hardware_phrase(meta["provenance"]["hardware"])
        # the speed work (issue 19) added the benchmark's compile setting: a file without it timed the older code
        # what was timed: the compile setting and the commit (the default path may have changed since)
        sha = (meta["provenance"].get("git_sha") or "")[:7]
        timed = (f", compile {meta['compile']}" + (f", code {sha}" if sha else "") if "compile" in meta else
                 f", code {sha + ' ' if sha else ''}before the speed work")
        rows.append(_ledger_row(5, f"time per {'epoch' if col == 'epoch_s' else 'step'}, LCNN / Standard",
                                f"{hw}, width {width}{timed}", v, "reproducing")
                    | {"seeds": f"{v.n_seeds[0]} rounds" if paired else "–", "images": "–",
                       "paper": f"≤ {v.paper:g} (our reading)", "why": why,
                       "method": v.method if paired else f"point ratio of medians over {meta['rounds']} rounds"})
    return pd.DataFrame(rows)


TARGET_WORDS = {"reproduced": "met", "not reproduced": "missed", "inconclusive": "inconclusive"}


def cost_table(root=None):
    """Training cost of every benchmarked variant as a ratio to Standard, one row per
    (device, width, variant): the ratio with its interval and verdict against
    ``reference.COST_TARGETS`` (``verdicts.bounded``; paired over interleaved rounds where the
    benchmark kept them), the hardware and the benchmark's git sha. ``*_before`` rows (the code
    before the speed work, measured in the same run) carry no verdict."""
    rows = []
    for device, width, variant, v, paired, col, meta in cost_ratios(root):
        base = variant.removesuffix("_before")
        before = variant != base
        rows.append({"device": device, "width": width,
                     "variant": VARIANT_LABELS.get(base, base) + (" (before the speed work)" if before else ""),
                     "× Standard (95% CI)": v.interval(), "target": "–" if before else f"≤ {v.paper:g}",
                     "against the target": "–" if before else TARGET_WORDS[v.outcome],
                     "rounds": v.n_seeds[0] if paired else meta.get("rounds"),
                     "hardware": hardware_phrase(meta["provenance"]["hardware"]),
                     "sha": (meta["provenance"].get("git_sha") or "–")[:7]})
    return pd.DataFrame(rows)


def _wall_time(d, prov):
    """The wall time a result file records: training (wall_time_s), evaluation (eval_wall_time_s),
    or a script's (settings.wall_time_s); None when it records none."""
    for source in (prov, d, d.get("settings") if isinstance(d.get("settings"), dict) else {}):
        for key in ("wall_time_s", "eval_wall_time_s"):
            if isinstance(source.get(key), (int, float)):
                return float(source[key])
    return None


def compute_used(root=None):
    """One row per result file under results/ that carries provenance (a provenance*.json, or a
    json with a ``provenance`` block: geometry.json's evaluation, the benchmarks, the linear
    baseline): its wall time, hardware kind (CPU / GPU), git sha and dirty flag."""
    root = Path(root) if root else results_root()
    rows = []
    for f in sorted(root.rglob("*.json")):
        d = json.loads(f.read_text())
        if not isinstance(d, dict):
            continue
        prov = d if "git_sha" in d else d.get("provenance") if isinstance(d.get("provenance"), dict) else None
        if prov is None:
            continue
        hw = hardware_phrase(prov.get("hardware") or prov.get("cpu") or "")
        rows.append(dict(file=str(f.relative_to(root)), hardware=hw, wall_time_s=_wall_time(d, prov),
                         git_sha=prov.get("git_sha"), git_dirty=prov.get("git_dirty")))
    df = pd.DataFrame(rows)
    df["kind"] = np.where(df.hardware.str.contains("NVIDIA|CUDA", case=False, regex=True), "GPU", "CPU")
    return df


def compute_hours(root=None):
    """Hours of wall time summed over compute_used(), by kind: {"CPU": h, "GPU": h}, plus the
    number of files with no wall time and with an empty or dirty git state."""
    df = compute_used(root)
    hours = (df.groupby("kind").wall_time_s.sum() / 3600).to_dict()
    return dict(cpu_hours=hours.get("CPU", 0.0), gpu_hours=hours.get("GPU", 0.0), files=len(df),
                no_time=int(df.wall_time_s.isna().sum()), no_sha=int((df.git_sha.fillna("") == "").sum()),
                dirty=int((df.git_dirty == True).sum()))  # noqa: E712  (None is neither)


def run_times(preset, root=None):
    """Per run of a preset: training and evaluation wall time (s) from provenance.json and
    geometry.json, their total, variant and seed."""
    root = Path(root) if root else results_root()
    rows = []
    for f in sorted((root / preset).glob("*/provenance.json")):
        prov = json.loads(f.read_text())
        geo = f.parent / "geometry.json"
        ev = json.loads(geo.read_text())["provenance"].get("eval_wall_time_s") if geo.exists() else None
        rows.append(dict(run=f.parent.name, variant=prov.get("variant"), seed=prov.get("seed"),
                         train_s=prov.get("wall_time_s"), eval_s=ev))
    df = pd.DataFrame(rows)
    if len(df):
        df["total_s"] = df.train_s + df.eval_s.fillna(0)
    return df


def ordering_verdict(runs, order=("standard", "lcnn", "lcnn_gradreg"), metric="cf", root=None):
    """The paper's ordering metric(order[0]) > metric(order[1]) > ... as consecutive ratio claims.

    Returns (text, steps): text completes "the ordering ... " ("holds: ...", "is not reproduced: ...",
    "is inconclusive: ...", "cannot be tested: ..."); steps is a list of (later, earlier, Verdict)."""
    missing = [VARIANT_LABELS[v] for v in order if v not in set(runs.variant)]
    if missing:
        return f"cannot be tested: no results for {', '.join(missing)}", []
    steps = [(b, a, geometry_verdict(runs, b, metric, baseline=a, root=root)) for a, b in zip(order, order[1:])]

    def say(b, a, v):
        return f"{VARIANT_LABELS[b]} / {VARIANT_LABELS[a]} = {v.interval()} ({v.seeds_phrase()}, {v.outcome})"

    outcomes = [v.outcome for _, _, v in steps]
    detail = "; ".join(say(*s) for s in steps)
    if all(o == "reproduced" for o in outcomes):
        return f"holds: {detail}", steps
    if "not reproduced" in outcomes:
        return f"is not reproduced: {detail}", steps
    return f"is inconclusive: {detail}", steps


# The team-drop ablation (issue 18): LCNN at one (lambda_beta, lambda_gamma) and epoch budget per
# cell. The paper's LCNN at lambda = 1e-3 matches Standard's accuracy, so the team's drop against
# Standard (TEAM) is the drop a lambda change would have to explain: the yardstick of a contrast.
PAPER_LAMBDAS = (1e-3, 1e-3)
TEAM_DROP = TEAM["lcnn"]["acc"] - TEAM["standard"]["acc"]


def with_last_epoch(runs, hist, columns=("train_acc", "log10_prod_gamma")):
    """``runs`` (load_runs) with ``columns`` of each run's last history.csv row added
    (``hist``: report.history of the same preset): the training accuracy and log10 prod gamma
    at the end of training, which geometry.json does not hold."""
    last = hist.sort_values("epoch").groupby("run").tail(1).set_index("run")
    return runs.assign(**{c: runs.run.map(last[c]) for c in columns})


def ablation_cells(runs):
    """One row per (lambda_beta, lambda_gamma, epochs) of an ablation preset: seeds, test
    accuracy, the training accuracy of the last epoch (training mode), E C_f, mean beta and
    log10 prod gamma at the end, each a mean ± std over seeds. ``runs``: load_runs passed
    through with_last_epoch."""
    rows = []
    for (lb, lg, e), g in runs.groupby(["lam", "lam_gamma", "epochs"]):
        row = {"λ_β": f"{lb:g}", "λ_γ": f"{lg:g}", "epochs": int(e), "seeds": g.seed.nunique()}
        for col, name, digits in (("accuracy", "test acc %", 1), ("train_acc", "train acc %", 1),
                                  ("cf", "E C_f", 2), ("mean_beta", "mean β", 2),
                                  ("log10_prod_gamma", "log₁₀ Π γ", 1)):
            row[name] = fmt_seeds(g.sort_values("seed")[col].to_numpy(float), digits)
        rows.append(row)
    return pd.DataFrame(rows)


def _cell(runs, lb, lg, epochs):
    """Per-seed test accuracy of one ablation cell, indexed by seed."""
    sel = runs[np.isclose(runs.lam, lb) & np.isclose(runs.lam_gamma, lg) & (runs.epochs == epochs)]
    return sel.set_index("seed").accuracy.sort_index()


def ablation_contrasts(runs):
    """The ablation's questions as verdicts (``verdicts.compare``, Welch over seeds), one row each:

    - *lambda*: each (lambda_beta, lambda_gamma) against the paper's (1e-3, 1e-3) at the same budget,
      judged against the team's drop (TEAM_DROP): does that lambda cost about the team's accuracy?
    - *budget*: the shortest budget against the longest at each lambda pair (direction: lower);
    - *interaction*: the lambda pair's cost at the short budget minus its cost at the long one
      (per seed, seeds paired because a seed fixes the initialisation and batch order; direction:
      the short budget makes the lambda cost larger).

    Columns: kind, contrast, points (95% CI), seeds, verdict, why, and lam_beta / lam_gamma / epochs
    of the cell the row is about (epochs None for the budget and interaction rows).
    """
    pairs = sorted({(lb, lg) for lb, lg in zip(runs.lam, runs.lam_gamma)})
    budgets = sorted(set(runs.epochs))
    base = PAPER_LAMBDAS if PAPER_LAMBDAS in pairs else None
    rows = []

    def add(kind, question, v, lb, lg, epochs=None):
        rows.append({"kind": kind, "contrast": question, "points (95% CI)": v.interval(1),
                     "seeds": v.seeds(), "verdict": v.outcome,
                     # the yardstick is the team's drop for a lambda row, the expected direction otherwise
                     "why": v.reason.replace("paper's", "team's" if kind == "lambda" else "expected"),
                     "lam_beta": lb, "lam_gamma": lg, "epochs": epochs})

    def name(lb, lg):
        return f"λ_β = {lb:g}, λ_γ = {lg:g}"

    cost = {}
    for lb, lg in pairs:
        for e in budgets:
            a, b = _cell(runs, lb, lg, e), _cell(runs, *base, e) if base else pd.Series(dtype=float)
            if (lb, lg) == base or not (len(a) and len(b)):
                continue
            cost[(lb, lg, e)] = (a - b).dropna()
            add("lambda", f"{name(lb, lg)} − paper's λ, {e} epochs",
                verdicts.compare(a.to_numpy(), b.to_numpy(), paper=TEAM_DROP), lb, lg, e)
    if len(budgets) > 1:
        short, long_ = budgets[0], budgets[-1]
        for lb, lg in pairs:
            a, b = _cell(runs, lb, lg, short), _cell(runs, lb, lg, long_)
            if len(a) and len(b):
                add("budget", f"{short} − {long_} epochs, {name(lb, lg)}",
                    verdicts.compare(a.to_numpy(), b.to_numpy(), paper=None, direction=-1), lb, lg)
            if (lb, lg, short) in cost and (lb, lg, long_) in cost:
                add("interaction", f"cost of {name(lb, lg)} at {short} − at {long_} epochs",
                    verdicts.compare(cost[(lb, lg, short)].to_numpy(), cost[(lb, lg, long_)].to_numpy(),
                                     paper=None, direction=-1), lb, lg)
    return pd.DataFrame(rows)
