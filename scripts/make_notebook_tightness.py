"""Write notebooks/tightness.ipynb: how loose are the Lipschitz and curvature bounds? (issue 9)

The page reads results/tightness/{summary,depth}.csv and provenance.json (written by
scripts/tightness.py); it trains and measures nothing. Run from the repository root:

    python scripts/make_notebook_tightness.py
"""
from nbgen import BADGES, FETCH, nb

nb([
 ("md", "# How loose are the bounds?\n\n" + BADGES("tightness") + """

The LCNN paper penalises a *proxy* of curvature, $\\sum_i \\beta_i$ and $\\prod_j \\gamma_j$, motivated by a data-independent
upper bound. This page asks how far such bounds sit above what the trained networks actually do. For the logit map $g$ with
Jacobian $J(x)$ and the per-sample cross-entropy $\\ell(x, y)$, composing exact per-layer operator norms $L_k$ and
curvature bounds $\\kappa_k$ (a residual block's slopes and curvatures add) gives, for every input,

$$
\\lVert J(x)\\rVert_2 \\le \\Gamma = \\prod_k L_k,\\qquad
\\lVert \\nabla_x \\ell\\rVert \\le \\sqrt{2}\\,\\Gamma,\\qquad
\\lVert \\nabla_x^2 \\ell\\rVert_2 \\le \\sqrt{2}\\,K + \\tfrac12 \\Gamma^2,\\quad K_k = L_k K_{k-1} + \\kappa_k \\Gamma_{k-1}^2 .
$$

**Lower bounds.** Any measured value at a point of the pixel box $[0,1]^n$ is a lower bound on the supremum: the exact
spectral norm of $J(x)$ (SVD of the $K \\times n$ Jacobian), $\\max_y \\lVert\\nabla_x \\ell(x, y)\\rVert$ over every label,
and the Lanczos estimate of $\\lVert\\nabla_x^2 \\ell(x, y)\\rVert_2$ at the true label (Ritz values never exceed the norm).
We take the largest over test images, then climb by projected sign-gradient ascent on $x$ inside $[0,1]^n$ from the best
images; for the Hessian the ascent climbs $\\lVert H(x)v\\rVert^2$ with $v$ a warm-started power iteration, and the best
point is re-measured by Lanczos. **Looseness** is upper / lower: 1 means the bound is attained, and it is an
over-estimate of the true looseness by as much as the ascent falls short of the true supremum.

This page reads `results/tightness/summary.csv`, `depth.csv` and `provenance.json` (written by `scripts/tightness.py` from
the trained checkpoints); it trains nothing."""),
 ("params", """results_dir = None  # None: the repository's results/ folder"""),
 FETCH,
 ("code", """import json
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from IPython.display import Markdown, display
from myst_nb import glue

from lcnn_core import report

sns.set_theme(context="notebook", style="whitegrid")
root = report.results_root() if results_dir is None else report.Path(results_dir)
folder = root / "tightness"
summary = pd.read_csv(folder / "summary.csv")
depth = pd.read_csv(folder / "depth.csv")
prov = json.loads((folder / "provenance.json").read_text())
summary["model"] = summary.preset + "/" + summary.run
depth["model"] = depth.preset + "/" + depth.run
summary["label"] = summary.variant.map(lambda v: report.VARIANT_LABELS.get(v, v))

def join(values):
    return ", ".join(str(v) for v in sorted(set(values)))

lines = []
for preset, g in summary.groupby("preset", sort=False):
    lines.append(f"- **{preset}**: {join(g.dataset)}, {join(g.n_train)} training images, {join(g.arch)} width {join(g.width)}, "
                 f"{join(g.epochs)} epochs, {g.seed.nunique()} seed{'s' if g.seed.nunique() > 1 else ''}, {len(g)} model{'s' if len(g) > 1 else ''}")
display(Markdown("*Scale.* " + f"{len(summary)} trained models; per model {join(summary.n_samples)} stratified test images, "
                 f"ascent from the best {join(summary.n_ascent)} (Hessian: {join(summary.n_ascent_hessian)}) with "
                 f"{join(summary.steps)} steps of {join(summary.step_size)} (L∞, pixel units); the per-depth audit on "
                 f"{join(summary.depth_samples)} inputs with {join(summary.depth_iters)} power iterations. "
                 f"Hardware: {prov['hardware']}; code {str(prov['git_sha'])[:7]}.\\n\\n" + "\\n".join(lines)))"""),
 ("md", "## Upper and lower bounds, model by model"),
 ("code", """def sci(v):
    return f"{v:.3g}"

table = pd.DataFrame({
    "model": summary.model, "variant": summary.label, "λ": summary.lam, "epochs": summary.epochs,
    "test acc %": summary.accuracy.round(1),
    "Γ (bound)": summary.lipschitz_upper.map(sci), "max ‖J‖ (measured)": summary.lipschitz_lower.map(sci),
    "Lipschitz looseness": summary.lipschitz_looseness.map(sci),
    "√2 Γ": summary.gradient_upper.map(sci), "max ‖∇ℓ‖": summary.gradient_lower.map(sci),
    "Hessian bound": summary.hessian_upper.map(sci), "max ‖∇²ℓ‖ (measured)": summary.hessian_lower.map(sci),
    "curvature looseness": summary.hessian_looseness.map(sci),
})
report.styled(table)"""),
 ("code", """extremes = []
for quantity, name in (("lipschitz", "Lipschitz (logit map)"), ("gradient", "loss gradient"), ("hessian", "curvature (loss Hessian)")):
    col = summary[f"{quantity}_looseness"]
    hi, lo = summary.loc[col.idxmax()], summary.loc[col.idxmin()]
    for end, row in (("max", hi), ("min", lo)):
        glue(f"{quantity}_looseness_{end}", float(row[f"{quantity}_looseness"]), display=False)
        glue(f"{quantity}_looseness_{end}_log10", float(np.log10(row[f"{quantity}_looseness"])), display=False)
        glue(f"{quantity}_looseness_{end}_model", row.model, display=False)
    gain = (summary[f"{quantity}_lower"] / summary[f"{quantity}_lower_data"]).median()
    glue(f"{quantity}_ascent_gain", float(gain), display=False)
    extremes.append({"quantity": name, "largest looseness": sci(hi[f"{quantity}_looseness"]), "model (largest)": hi.model,
                     "smallest looseness": sci(lo[f"{quantity}_looseness"]), "model (smallest)": lo.model,
                     "median gain of the ascent over the data": f"{gain:.2f}×"})
exponent = np.log(summary.hessian_looseness) / np.log(summary.lipschitz_looseness)
glue("curvature_exponent_min", float(exponent.min()), display=False)
glue("curvature_exponent_max", float(exponent.max()), display=False)
report.styled(pd.DataFrame(extremes))"""),
 ("md", """## Where the looseness is born

For every prefix $F_k$ of the network (stem, each residual block, pooling, the linear layer, then the loss) the bound
$\\Gamma_k$ is set against the measured $\\max_x \\lVert J_{F_k}(x)\\rVert_2$ (power iteration on $J^\\top J$ over the test images
and the ascent's points). The left panel is the cumulative looseness $\\Gamma_k / \\text{measured}_k$; the right one is the factor
each layer adds, $(\\Gamma_k/\\text{measured}_k) / (\\Gamma_{k-1}/\\text{measured}_{k-1})$, averaged over models in log scale."""),
 ("code", """depth["log10_added"] = np.log10(depth["added"])
depth = depth.merge(summary[["model", "label"]], on="model")
fig, axes = plt.subplots(1, 2, figsize=(13, 4.5), gridspec_kw=dict(width_ratios=[3, 2]))
sns.lineplot(data=depth, x="index", y="log10_looseness", hue="label", units="model", estimator=None, alpha=0.7,
             marker="o", ms=4, ax=axes[0])
short = {"Conv2d": "conv", "SNConv2d": "conv", "BatchNorm2d": "norm", "ClippedBatchNorm2d": "norm", "Softplus": "act",
         "CenteredSoftplus": "act", "ResidualBlock": "block", "GlobalAvgPool": "pool", "SNLinear": "linear", "CrossEntropy": "loss"}
names = depth.groupby("index").layer.first().map(lambda n: short.get(n, n))
names = [f"{n} {list(names[:i + 1]).count(n)}" if n == "block" else n for i, n in enumerate(names)]
axes[0].set_xticks(range(len(names)), names, rotation=60, fontsize=8)
axes[0].set(xlabel="", ylabel="log₁₀ (bound / measured)", title="cumulative looseness after each layer")
added = depth.groupby(["index", "layer"]).log10_added.mean().reset_index()
sns.barplot(data=added.groupby("layer", sort=False).log10_added.mean().reset_index(), x="log10_added", y="layer",
            color=sns.color_palette()[0], ax=axes[1])
axes[1].set(xlabel="mean log₁₀ factor added per layer of this type", ylabel="", title="which layers add looseness")
fig.text(0.01, -0.04, f"{len(summary)} trained models, presets {join(summary.preset)}; {join(summary.depth_samples)} inputs "
         "per model in the audit.", fontsize=8)
plt.tight_layout(); plt.show()
born = depth[depth.layer != "CrossEntropy"].groupby("layer").log10_added.sum() / depth.model.nunique()
share = (born / born.sum()).sort_values(ascending=False)
glue("depth_top_layer", share.index[0], display=False)
glue("depth_top_share", float(100 * share.iloc[0]), display=False)
block = depth[depth.layer == "ResidualBlock"].log10_added
glue("depth_block_factor", float(10 ** block.mean()) if len(block) else float("nan"), display=False)
report.styled(share.rename("share of log-looseness").reset_index().rename(columns={"layer": "layer type"}), 3)"""),
 ("md", """## Does the paper's proxy track the measured curvature?

The paper trains with $\\lambda_\\beta\\sum\\beta + \\lambda_\\gamma\\sum|\\log\\gamma|$ as a stand-in for curvature. Across our models we
compare the proxy with the curvature measured on test images: $\\mathbb{E}\\,C_f$ and $\\mathbb{E}\\lVert\\nabla^2 f\\rVert$ from each run's
`geometry.json` (Lanczos, the book's geometry table). The paper's proxy exists only for LCNN models (centered softplus, clipped
batch norm); to include Standard and Softplus models we also show a like-for-like version: $\\sum\\beta$ over *every* softplus
and $\\log_{10}$ of the product of every batch norm's Lipschitz constant. Rank (Spearman) correlations, so that only the
ordering matters."""),
 ("code", """pairs = [("sum_beta", "Σβ (paper)"), ("log10_prod_gamma", "log₁₀ Πγ (paper)"), ("sum_beta_all", "Σβ, every softplus"),
         ("log10_prod_norm_lipschitz", "log₁₀ Π BN Lipschitz"), ("hessian_upper", "Hessian bound"),
         ("hessian_lower", "max measured ‖∇²ℓ‖")]
targets = [("cf_mean", "E C_f"), ("hess_mean", "E‖∇²f‖")]
lcnn = summary[summary.variant.str.startswith("lcnn")]

def spearman(frame, a, b):
    d = frame[[a, b]].replace([np.inf, -np.inf], np.nan).dropna()
    if len(d) < 3 or d[a].nunique() < 2 or d[b].nunique() < 2:
        return np.nan, len(d)
    return d[a].rank().corr(d[b].rank()), len(d)

rows = []
for col, name in pairs:
    scopes = [("LCNN models", lcnn)] + ([] if "(paper)" in name else [("all models", summary)])
    for scope, frame in scopes:
        row = {"proxy / bound": name, "models": scope, "n": spearman(frame, col, "cf_mean")[1]}
        for t, tname in targets:
            row[f"ρ with {tname}"] = spearman(frame, col, t)[0]
        rows.append(row)
corr = pd.DataFrame(rows)
for key, col in (("sum_beta", "sum_beta"), ("prod_gamma", "log10_prod_gamma"), ("bound", "hessian_upper")):
    glue(f"proxy_rho_{key}_lcnn", float(spearman(lcnn, col, "cf_mean")[0]), display=False)
glue("proxy_rho_beta_all", float(spearman(summary, "sum_beta_all", "cf_mean")[0]), display=False)
glue("proxy_n_lcnn", int(spearman(lcnn, "sum_beta", "cf_mean")[1]), display=False)
report.styled(corr, 2)"""),
 ("code", """fig, axes = plt.subplots(1, 3, figsize=(14, 4))
for ax, (col, name) in zip(axes, [("sum_beta_all", "Σβ over every softplus"), ("log10_prod_gamma", "log₁₀ Πγ (LCNN only)"),
                                  ("hessian_upper", "provable Hessian bound")]):
    sns.scatterplot(data=summary, x=col, y="cf_mean", hue="label", style="preset", s=60, ax=ax)
    ax.set(xlabel=name, ylabel="measured E C_f", yscale="log")
    if col in ("sum_beta_all", "hessian_upper"):
        ax.set_xscale("log")
    if ax is not axes[-1]:
        ax.get_legend().remove()
axes[-1].legend(fontsize=7, bbox_to_anchor=(1.02, 1), loc="upper left")
plt.tight_layout(); plt.show()

rho = spearman(lcnn, "sum_beta", "cf_mean")[0]
if rho != rho:
    answer = "Too few LCNN models with a measured E C_f to tell"
elif rho >= 0.7:
    answer = "Yes: across LCNN models, a smaller Σβ goes with a smaller measured E C_f"
elif rho >= 0.3:
    answer = "Only loosely: Σβ and the measured E C_f are weakly rank-correlated across LCNN models"
else:
    answer = "No: across LCNN models the ordering by Σβ does not predict the ordering by measured E C_f"
glue("proxy_answer", answer, display=False)
display(Markdown(f"**Answer (computed from the table above):** {answer} (Spearman ρ = {rho:.2f}, "
                 f"{spearman(lcnn, 'sum_beta', 'cf_mean')[1]} models)."))"""),
 ("md", """## Are the per-layer norms exact?

The bound is only as good as each convolution's operator norm. `lcnn_core` computes it by Lanczos from above
(`layers.conv_operator_norm`, {ref}`theory <sec-sn-conv>`); before that it used power iteration, which estimates from below
and so can leave a "normalised" layer with norm above 1. `benchmarks/conv_norm.py` measures both: on random small
convolutions against the dense SVD of the unrolled convolution, and on every convolution of the trained LCNN checkpoints,
where no dense SVD fits in memory but the two estimates bracket the truth (Lanczos above, power iteration below), and
Lanczos is within its tolerance of it, so power iteration's shortfall is the gap between the two, to within $5\\times 10^{-7}$."""),
 ("code", """bench = root / "benchmarks"
if (bench / "conv_norm.json").exists():
    conv_dense = pd.read_csv(bench / "conv_norm_dense.csv")
    conv_trained = pd.read_csv(bench / "conv_norm_trained.csv")
    conv_prov = json.loads((bench / "conv_norm.json").read_text())
    rows = [{"convolutions": f"{len(conv_dense)} random small (dense SVD)", "start": "random",
             "Lanczos − truth, worst (relative)": f"{conv_dense.lanczos_rel_err.min():+.1e} … {conv_dense.lanczos_rel_err.max():+.1e}",
             "power − truth, worst (relative)": f"{conv_dense.power_rel_err.min():+.1e}",
             "Lanczos products, median": "—", "power steps, median": "—"}]
    for start, label in (("stored", "checkpoint's vector"), ("cold", "random")):
        gap = conv_trained[f"{start}_gap"]
        rows.append({"convolutions": f"{len(conv_trained)} trained ({conv_trained.run.nunique()} LCNN runs)", "start": label,
                     "Lanczos − truth, worst (relative)": "0 … +5e-07 (tolerance)",
                     "power − truth, worst (relative)": f"−{gap.max():.1e} (median −{gap.median():.1e})",
                     "Lanczos products, median": f"{conv_trained[f'{start}_lanczos_products'].median():.0f}",
                     "power steps, median": f"{conv_trained[f'{start}_power_steps'].median():.0f}"})
        glue(f"conv_{start}_gap_max", float(gap.max()), display=False)
    glue("conv_dense_cases", len(conv_dense), display=False)
    glue("conv_dense_power_worst", float(-conv_dense.power_rel_err.min()), display=False)
    glue("conv_dense_lanczos_worst", float(conv_dense.lanczos_rel_err.max()), display=False)
    glue("conv_dense_lanczos_below", float(max(0.0, -conv_dense.lanczos_rel_err.min())), display=False)
    glue("conv_trained_n", len(conv_trained), display=False)
    display(Markdown(f"*Scale.* {conv_prov['hardware']}, code {str(conv_prov['git_sha'])[:7]}, "
                     f"{conv_prov['wall_time_s']:.0f} s. Power iteration with the old rule: at most 300 steps, stopped at a "
                     "relative change below 1e-7."))
    conv_table = report.styled(pd.DataFrame(rows))
else:
    conv_table = Markdown("`results/benchmarks/conv_norm.json` is missing: run `python benchmarks/conv_norm.py`.")
conv_table"""),
 ("md", """On the random convolutions Lanczos was never below the dense SVD by more than rounding
({glue:text}`conv_dense_lanczos_below:.0e` relative) and at most {glue:text}`conv_dense_lanczos_worst:.1e` above it; power iteration fell up to {glue:text}`conv_dense_power_worst:.1e` short.
On the trained convolutions, the old power iteration fell short of Lanczos by up to {glue:text}`conv_stored_gap_max:.1e`
from the checkpoint's own vector and {glue:text}`conv_cold_gap_max:.1e` from a random one: small next to looseness factors
of $10^5$ and more, but enough that the layers were not normalised to 1 and the bound was not strictly provable."""),
 ("md", """## What it means

**The bounds are loose by orders of magnitude, and the looseness compounds with depth.** The Lipschitz bound $\\Gamma$ over-states
the largest Jacobian norm we could find by a factor between {glue:text}`lipschitz_looseness_min:.3g`
({glue:text}`lipschitz_looseness_min_model`) and {glue:text}`lipschitz_looseness_max:.3g`
({glue:text}`lipschitz_looseness_max_model`); the curvature bound over-states the largest measured Hessian norm by
{glue:text}`hessian_looseness_min:.3g` to {glue:text}`hessian_looseness_max:.3g`. The per-depth audit shows where: each layer
multiplies the looseness, and layers of type {glue:text}`depth_top_layer` carry {glue:text}`depth_top_share:.0f` % of it (in
log scale). In the ResNet-18s the residual blocks hold all but a handful of the layers, and each block multiplies the
looseness by about {glue:text}`depth_block_factor:.1f` on average: a block is audited as a whole (two convolutions, two batch
norms, an activation and the shortcut), so this factor mixes the slack inside the branch with that of adding the two paths. A product of per-layer operator norms assumes that every layer's worst direction lines up with the next layer's, and a
residual block's bound adds the two branches' worst cases. The curvature bound contains $\Gamma^2$ and sums such products over
layers, so its looseness is about a power of the Lipschitz one: here the curvature looseness equals the Lipschitz looseness
raised to a power between {glue:text}`curvature_exponent_min:.2f` and {glue:text}`curvature_exponent_max:.2f`.

**The proxy and the curvature.** {glue:text}`proxy_answer` (ρ = {glue:text}`proxy_rho_sum_beta_lcnn:.2f` for Σβ and
{glue:text}`proxy_rho_prod_gamma_lcnn:.2f` for log Πγ over {glue:text}`proxy_n_lcnn` LCNN models; the provable Hessian bound
itself gives ρ = {glue:text}`proxy_rho_bound_lcnn:.2f`). Across all models, counting the β of every softplus gives
ρ = {glue:text}`proxy_rho_beta_all:.2f`, which mostly separates the variants: the plain softplus has β = 1000 (Standard, GradReg)
or 10, the centered softplus of an LCNN a learned β of a few units. A bound that is this loose
can still steer training, since only its gradient enters the loss, but its value says little about the curvature the
network ends up with: compare models by measuring $C_f$, as the paper's table does, not by their bound or proxy.

**Limits.** The lower bounds come from a local search (a few projected-ascent steps from the best test images), so the true
suprema may be larger and the true looseness smaller than shown; the Hessian is searched at the true label only. The
per-layer norms are exact (SVD for the linear layer; for convolutions, Lanczos from above, high by at most $5\\times 10^{-7}$,
see {ref}`the theory page <sec-sn-conv>`), so the looseness is that of composition, not of the per-layer estimates. Small CPU models (ResNet-18 width 8) trained for few epochs; the scale is stated above."""),
], "notebooks/tightness.ipynb", fold_code=True)
