"""One verdict rule for every claim the book checks.

A claim compares a *model* with a *baseline* (LCNN with Standard, say) on one metric. The input is
the metric's value for each training run (seed) of each model; the output is a :class:`Verdict`: the
effect with a 95 % confidence interval, the effect relative to the paper's, the number of seeds and
of test images, and one of three outcomes.

**The interval is a Welch t-interval over seeds.** The unit of replication is the training run: two
seeds of one model differ by initialisation and batch order, and that is the variation a claim about
"LCNNs" must beat. With 2–3 seeds per model the Welch interval is wide (the t quantile for 1–2
degrees of freedom is 12.7 or 4.3), but it covers at its nominal rate when the per-seed values are
roughly normal. A bootstrap over seeds × images would be narrower and wrong: resampling 3 seeds
gives at most 10 distinct means and a variance (n−1)/n of the sample's, and resampling the test
images adds only image noise, which is already averaged into each seed's value; such an interval
under-covers badly. Per-image values are used only when a model has a single seed (the GPU runs):
then a paired bootstrap over the shared test images (``scipy.stats.bootstrap``, BCa) gives the
image-noise interval, which is reported, but the verdict stays **inconclusive**, because it says
nothing about how a second training run would differ.

**Scales.** ``"difference"``: effect = mean(model) − mean(baseline) (accuracy points, PGD points).
``"ratio"``: effect = mean(model) / mean(baseline), with the interval computed on the log of the
per-seed values and mapped back (curvature, gradient and Hessian norms span orders of magnitude and
are positive; "LCNN divides curvature by 4" is a statement about a ratio). The effect relative to the
paper's is ours / paper's on that scale (on the log scale for ratios: 1 means the same factor).

**Outcomes of a directional claim** (:func:`compare`; the paper's effect gives the direction):

- *reproduced*: the CI excludes "no effect" (0, or ratio 1) and lies on the paper's side, and it
  does not lie wholly below ``FAR_SMALLER`` (a quarter) of the paper's effect;
- *not reproduced*: the CI lies wholly on the other side of 0, or wholly below a quarter of the
  paper's effect (on the log scale for ratios: a factor below the paper's factor to the power 1/4);
- *inconclusive*: otherwise (the CI straddles 0), or a model has only 1 seed.

**Outcomes of an equivalence claim** (:func:`equivalent`, "at the same accuracy"): *reproduced* if
the CI of the difference lies inside ± ``ACC_TOLERANCE`` points (``reference.ACC_TOLERANCE``),
*not reproduced* if it lies wholly outside, *inconclusive* if it crosses a tolerance limit or a model
has 1 seed.

**Outcomes of a bound claim** (:func:`bounded`, "only marginally more training time"): the ratio
model / baseline against ``COST_LIMIT``; *reproduced* if the CI lies below it, *not reproduced* if
above, *inconclusive* if it straddles. A benchmark that stores one median per model (no per-round
values) gives a point estimate without an interval: the verdict then compares the point with the
limit and says so in its reason.
"""
import math
from dataclasses import asdict, dataclass

import numpy as np
from scipy import stats

from .reference import ACC_TOLERANCE, COST_LIMIT

LEVEL = 0.95  # confidence level of every interval in the book
FAR_SMALLER = 0.25  # "far smaller than the paper's": the whole CI below this fraction of the paper's effect
OUTCOMES = ("reproduced", "not reproduced", "inconclusive")
__all__ = ["Verdict", "welch", "image_bootstrap", "ratio_interval", "compare", "equivalent", "equivalence_power",
           "bounded", "LEVEL", "FAR_SMALLER",
           "ACC_TOLERANCE", "COST_LIMIT", "OUTCOMES", "RULE"]

_PTS = f"{ACC_TOLERANCE:g} point{'' if ACC_TOLERANCE == 1 else 's'}"
RULE = (f"Each interval is a {LEVEL:.0%} Welch t-interval over training seeds (on the log scale for ratios). "
        "A directional claim is *reproduced* when the interval excludes 'no effect' (0, or a ratio of 1) and lies on "
        "the paper's side, "
        f"*not reproduced* when it lies wholly on the other side or wholly below {FAR_SMALLER:g} of the "
        "paper's effect (for ratios: the paper's factor to that power), and *inconclusive* otherwise or when a "
        f"model has a single seed. \"Same accuracy\" is reproduced when the interval of the accuracy "
        f"difference lies within ±{_PTS}, not reproduced when it lies wholly outside. "
        f"\"Marginally more training time\" means a time ratio of at most {COST_LIMIT:g}.")


@dataclass(frozen=True)
class Verdict:
    """The outcome of one claim at one scale.

    ``estimate``, ``low``, ``high`` are on the claim's natural scale (a difference, or a ratio);
    ``paper`` is the paper's effect on the same scale; ``relative`` is ours / paper's (log ratios
    for the ratio scale); ``n_seeds`` is (model, baseline); ``n_images`` the test images per seed.
    """
    outcome: str
    reason: str
    estimate: float
    low: float
    high: float
    scale: str
    paper: float
    relative: float
    n_seeds: tuple
    n_images: object
    method: str

    def interval(self, digits=2):
        """'0.43 [0.21, 0.88]' (the estimate and its interval), or the estimate alone."""
        if not (np.isfinite(self.low) and np.isfinite(self.high)):
            return f"{self.estimate:.{digits}f} (no interval)"
        return f"{self.estimate:.{digits}f} [{self.low:.{digits}f}, {self.high:.{digits}f}]"

    def seeds(self):
        a, b = self.n_seeds
        return f"{a}" if a == b else f"{a} / {b}"

    def seeds_phrase(self):
        """'1 seed', '3 seeds', '1 / 3 seeds': the seeds for prose."""
        n = self.seeds()
        return f"{n} seed{'' if n == '1' else 's'}"

    def row(self, digits=2):
        d = asdict(self)
        d["ours (95% CI)"] = self.interval(digits)
        d["seeds"] = self.seeds()
        return d


def _values(x, log=False):
    x = np.asarray(x, dtype=float).ravel()
    x = x[np.isfinite(x)]
    if log:
        if (x <= 0).any():
            raise ValueError("a ratio needs positive values")
        x = np.log(x)
    return x


def welch(model, baseline, level=LEVEL):
    """Welch t-interval for mean(model) − mean(baseline).

    Returns (estimate, low, high, df). With fewer than 2 values on either side there is no
    variance to estimate: low = high = NaN. Two constant samples give a zero-width interval.
    """
    a, b = np.asarray(model, float), np.asarray(baseline, float)
    est = a.mean() - b.mean()
    if len(a) < 2 or len(b) < 2:
        return est, math.nan, math.nan, math.nan
    va, vb = a.var(ddof=1) / len(a), b.var(ddof=1) / len(b)
    se = math.sqrt(va + vb)
    if se == 0:
        return est, est, est, math.inf
    df = (va + vb) ** 2 / (va ** 2 / (len(a) - 1) + vb ** 2 / (len(b) - 1))
    q = stats.t.ppf(0.5 + level / 2, df)
    return est, est - q * se, est + q * se, df


def paired_t(model, baseline, level=LEVEL):
    """t-interval for the mean of model_i − baseline_i over paired measurements (timing rounds run
    back to back share the machine's state, so pairing removes its drift). Returns (estimate, low,
    high, df); NaN interval below 2 pairs."""
    d = np.asarray(model, float) - np.asarray(baseline, float)
    est = float(d.mean())
    if len(d) < 2:
        return est, math.nan, math.nan, math.nan
    se = d.std(ddof=1) / math.sqrt(len(d))
    if se == 0:
        return est, est, est, math.inf
    q = stats.t.ppf(0.5 + level / 2, len(d) - 1)
    return est, est - q * se, est + q * se, float(len(d) - 1)


def image_bootstrap(model_images, baseline_images, log=False, level=LEVEL, n_resamples=2000, seed=0):
    """Paired BCa bootstrap over shared test images of mean(model) − mean(baseline)
    (of log means if ``log``): the image-noise interval of a single pair of training runs."""
    a, b = np.asarray(model_images, float), np.asarray(baseline_images, float)
    if a.shape != b.shape or len(a) < 3:
        return math.nan, math.nan

    def stat(x, y, axis=-1):
        mx, my = x.mean(axis=axis), y.mean(axis=axis)
        return np.log(mx) - np.log(my) if log else mx - my

    res = stats.bootstrap((a, b), stat, paired=True, vectorized=True, confidence_level=level,
                          n_resamples=n_resamples, method="BCa", random_state=np.random.default_rng(seed))
    return float(res.confidence_interval.low), float(res.confidence_interval.high)


def _interval(model, baseline, log, images, level):
    """(estimate, low, high, n_seeds, method) on the working scale (log for ratios)."""
    a, b = _values(model, log), _values(baseline, log)
    if len(a) == 0 or len(b) == 0:
        raise ValueError("a verdict needs at least one value per model")
    est, lo, hi, df = welch(a, b, level)
    method = f"Welch t over seeds (df {df:.1f})" if np.isfinite(df) else "Welch t over seeds"
    if not np.isfinite(lo) and images is not None:
        lo, hi = image_bootstrap(*images, log=log, level=level)
        method = "paired bootstrap over test images (1 seed: image noise only)"
    return est, lo, hi, (len(a), len(b)), method


def _back(x, log):
    return math.exp(x) if log else x


def ratio_interval(model, baseline, level=LEVEL):
    """(low, high): the interval of mean(model) / mean(baseline) that every ratio verdict uses
    (Welch t over seeds on the log scale, mapped back), without judging it; NaN with one seed."""
    _, lo, hi, _, _ = _interval(model, baseline, True, None, level)
    return (_back(lo, True) if np.isfinite(lo) else math.nan, _back(hi, True) if np.isfinite(hi) else math.nan)


def _finish(outcome, reason, est, lo, hi, log, paper, rel, n, n_images, method):
    return Verdict(outcome, reason, _back(est, log), _back(lo, log) if np.isfinite(lo) else math.nan,
                   _back(hi, log) if np.isfinite(hi) else math.nan, "ratio" if log else "difference",
                   float(paper), rel, n, n_images, method)


def _one_seed(n):
    return min(n) < 2


def _one_seed_reason(n):
    return f"only {min(n)} seed of {'the model' if n[0] < 2 else 'the baseline'}: no spread over training runs"


def compare(model, baseline, paper, scale="difference", images=None, n_images=None, level=LEVEL, direction=None):
    """Verdict on a directional claim: the model's effect over the baseline has the paper's sign.

    ``model``, ``baseline``: one value per seed. ``paper``: the paper's effect on ``scale``
    (a difference, or a ratio model / baseline); None when the paper states only a direction,
    given as ``direction`` (+1: model above baseline, -1: below); the far-smaller rule then does
    not apply. ``images``: optional (model, baseline) per-image values on shared test images,
    used only for a single-seed interval.
    """
    log = scale == "ratio"
    if scale not in ("difference", "ratio"):
        raise ValueError(f"unknown scale {scale!r}")
    if paper is None:
        if direction not in (1, -1):
            raise ValueError("without the paper's effect, give its direction (+1 or -1)")
        est, lo, hi, n, method = _interval(model, baseline, log, images, level)
        paper = math.nan
        p = float(direction) * math.inf  # no size: only the sign is used below
    else:
        p = math.log(paper) if log else float(paper)
    if p == 0 or p != p:
        raise ValueError("the paper's effect must be non-zero and finite: it gives the direction")
    if np.isfinite(p):
        est, lo, hi, n, method = _interval(model, baseline, log, images, level)
    rel = est / p if np.isfinite(p) else math.nan
    args = (est, lo, hi, log, paper, rel, n, n_images, method)
    if _one_seed(n):
        return _finish("inconclusive", _one_seed_reason(n), *args)
    d = math.copysign(1.0, p)
    near, far = sorted((d * lo, d * hi))  # the CI's ends, measured in the paper's direction
    what = "ratio 1" if log else "0"
    if far < 0:
        return _finish("not reproduced", f"the CI lies wholly on the other side of {what}", *args)
    if np.isfinite(p) and far < FAR_SMALLER * abs(p):
        return _finish("not reproduced", f"the CI lies wholly below {FAR_SMALLER:g} of the paper's effect", *args)
    if near > 0:
        return _finish("reproduced", f"the CI excludes {what}, on the paper's side", *args)
    return _finish("inconclusive", f"the CI straddles {what}", *args)


def equivalent(model, baseline, tolerance=ACC_TOLERANCE, paper=math.nan, n_images=None, level=LEVEL):
    """Verdict on a "no change" claim (accuracy): the difference lies within ± ``tolerance``."""
    est, lo, hi, n, method = _interval(model, baseline, False, None, level)
    args = (est, lo, hi, False, paper, math.nan, n, n_images, method)  # no size to match: "no change" is the claim
    if _one_seed(n):
        return _finish("inconclusive", _one_seed_reason(n), *args)
    if -tolerance <= lo and hi <= tolerance:
        return _finish("reproduced", f"the CI lies within ±{tolerance:g} point{'' if tolerance == 1 else 's'}", *args)
    if lo > tolerance or hi < -tolerance:
        return _finish("not reproduced", f"the CI lies wholly outside ±{tolerance:g} point{'' if tolerance == 1 else 's'}", *args)
    return _finish("inconclusive", f"the CI crosses ±{tolerance:g} point{'' if tolerance == 1 else 's'}", *args)


def equivalence_power(sd, n_seeds, delta=0.0, tolerance=ACC_TOLERANCE, level=LEVEL, draws=4000, seed=0):
    """Probability that ``equivalent`` returns "reproduced" for a design with ``n_seeds`` seeds per
    model, when each model's per-seed accuracy is normal with standard deviation ``sd`` (points) and
    the true difference is ``delta``: the rule's Welch interval, vectorised over ``draws``
    simulated experiments (numpy's generator seeded with ``seed``, so the number is the same on
    every run; tests/test_verdicts.py checks it against ``equivalent`` draw by draw)."""
    rng = np.random.default_rng(seed)
    a = rng.normal(delta, sd, size=(draws, n_seeds))
    b = rng.normal(0.0, sd, size=(draws, n_seeds))
    diff = a.mean(1) - b.mean(1)
    va, vb = a.var(1, ddof=1) / n_seeds, b.var(1, ddof=1) / n_seeds
    se = np.sqrt(va + vb)
    df = (va + vb) ** 2 / (va ** 2 / (n_seeds - 1) + vb ** 2 / (n_seeds - 1))
    half = stats.t.ppf(0.5 + level / 2, df) * se
    return float(np.mean((diff - half >= -tolerance) & (diff + half <= tolerance)))


def bounded(model, baseline, limit=COST_LIMIT, n_images=None, level=LEVEL, paired=False):
    """Verdict on "model / baseline is at most ``limit``" (training cost), on the log scale.

    ``paired``: the i-th values of the two were measured together (interleaved timing rounds);
    the interval is then a paired t-interval of the per-round log ratios. With one value per
    model (a benchmark that kept only each model's median) the verdict compares the point ratio
    with the limit, and the reason says that there is no interval.
    """
    if paired:
        a, b = _values(model, True), _values(baseline, True)
        if len(a) != len(b):
            raise ValueError("paired values need the same number of rounds")
        est, lo, hi, df = paired_t(a, b, level)
        n, method = (len(a), len(b)), f"paired t over {len(a)} timing rounds"
    else:
        est, lo, hi, n, method = _interval(model, baseline, True, None, level)
    lim = math.log(limit)
    args = (est, lo, hi, True, limit, math.nan, n, n_images, method)  # a limit, not the paper's effect
    if _one_seed(n):
        side = "above" if est > lim else "at or below"
        return _finish("not reproduced" if est > lim else "reproduced",
                       f"point ratio {side} {limit:g}; one value per model, so no interval", *args)
    if hi <= lim:
        return _finish("reproduced", f"the CI lies at or below {limit:g}", *args)
    if lo > lim:
        return _finish("not reproduced", f"the CI lies above {limit:g}", *args)
    return _finish("inconclusive", f"the CI straddles {limit:g}", *args)


def rank_correlation(x, y, level=LEVEL):
    """Spearman ρ of paired values with a Fisher-z interval (standard error 1.06 / sqrt(n − 3),
    Fieller et al. 1957). Returns (ρ, low, high, n); the interval is NaN below 4 pairs."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    ok = np.isfinite(x) & np.isfinite(y)
    x, y = x[ok], y[ok]
    n = len(x)
    if n < 3:
        return math.nan, math.nan, math.nan, n
    rho = float(stats.spearmanr(x, y).statistic)
    if n < 4 or abs(rho) == 1:
        return rho, math.nan, math.nan, n
    z, se = math.atanh(rho), 1.06 / math.sqrt(n - 3)
    q = stats.norm.ppf(0.5 + level / 2)
    return rho, math.tanh(z - q * se), math.tanh(z + q * se), n
