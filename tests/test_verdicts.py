"""The verdict rule on made-up data whose answer is known."""
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from lcnn_core import verdicts
from lcnn_core.reference import ACC_TOLERANCE, PAPER

seeds = st.lists(st.floats(0.1, 100, allow_nan=False), min_size=2, max_size=6)


def test_welch_matches_scipy():
    rng = np.random.default_rng(0)
    a, b = rng.normal(3, 1, 4), rng.normal(1, 2, 5)
    est, lo, hi, df = verdicts.welch(a, b)
    res = stats.ttest_ind(a, b, equal_var=False)
    ci = res.confidence_interval(0.95)
    assert est == pytest.approx(a.mean() - b.mean())
    assert (lo, hi) == pytest.approx((ci.low, ci.high))
    assert df == pytest.approx(res.df)


def test_two_seeds_use_the_t_quantile_not_the_normal():
    # one degree of freedom: the half-width is 12.7 standard errors, not 1.96
    est, lo, hi, df = verdicts.welch([1.0, 3.0], [0.0, 0.0])
    assert df == pytest.approx(1.0)
    se = math.sqrt(2.0 / 2)
    assert hi - est == pytest.approx(stats.t.ppf(0.975, 1) * se)


def test_huge_effect_with_tiny_noise_is_reproduced():
    v = verdicts.compare([10.0, 10.01, 9.99], [100.0, 100.02, 99.98], paper=69.5 / 270.89, scale="ratio")
    assert v.outcome == "reproduced"
    assert v.estimate == pytest.approx(0.1, rel=1e-3)
    assert v.low < v.estimate < v.high < 1
    assert v.n_seeds == (3, 3)


def test_opposite_direction_is_not_reproduced():
    v = verdicts.compare([5.0, 5.1, 4.9], [1.0, 1.1, 0.9], paper=-2.0)
    assert v.outcome == "not reproduced" and "other side" in v.reason


def test_tiny_but_certain_effect_is_far_smaller_than_the_papers():
    # LCNN 1 % lower curvature, measured precisely, against the paper's fourfold reduction
    v = verdicts.compare([99.0, 99.01, 98.99], [100.0, 100.01, 99.99], paper=0.25, scale="ratio")
    assert v.outcome == "not reproduced" and "0.25 of the paper" in v.reason
    assert 0 < v.relative < verdicts.FAR_SMALLER


def test_straddling_interval_is_inconclusive():
    v = verdicts.compare([1.0, 3.0], [2.0, 2.5], paper=2.0)
    assert v.outcome == "inconclusive" and "straddles" in v.reason
    assert v.low < 0 < v.high


def test_one_seed_is_inconclusive_even_with_a_huge_effect():
    v = verdicts.compare([1.0], [100.0, 101.0], paper=0.25, scale="ratio")
    assert v.outcome == "inconclusive" and "only 1 seed" in v.reason
    assert math.isnan(v.low) and v.n_seeds == (1, 2)


def test_one_seed_with_images_reports_the_image_interval_but_stays_inconclusive():
    rng = np.random.default_rng(1)
    base = rng.lognormal(0, 0.3, 300)
    model = base * 0.3 * rng.lognormal(0, 0.1, 300)
    v = verdicts.compare([model.mean()], [base.mean()], paper=0.25, scale="ratio", images=(model, base), n_images=300)
    assert v.outcome == "inconclusive"
    assert v.low < 0.3 < v.high < 1 and "image" in v.method


def test_image_bootstrap_covers_the_true_difference():
    rng = np.random.default_rng(2)
    hits = 0
    for _ in range(40):
        x = rng.normal(0, 1, 200)
        y = x + rng.normal(0.5, 1, 200)
        lo, hi = verdicts.image_bootstrap(y, x, n_resamples=500, seed=int(rng.integers(1 << 30)))
        hits += lo < 0.5 < hi
    assert hits >= 33  # nominal 38 of 40


def test_identical_distributions_are_rarely_called_either_way():
    # both models drawn from the same normal: the 95 % interval straddles 0 about 95 % of the time
    rng = np.random.default_rng(3)
    trials = 2000
    called = sum(verdicts.compare(rng.normal(0, 1, 3), rng.normal(0, 1, 3), paper=1.0).outcome != "inconclusive"
                 for _ in range(trials))
    # "reproduced" and "not reproduced" each happen at about 2.5 % (plus the far-smaller region for the latter)
    assert called / trials < 0.12


def test_welch_coverage_with_three_seeds():
    rng = np.random.default_rng(4)
    covered = 0
    for _ in range(2000):
        est, lo, hi, _ = verdicts.welch(rng.normal(1, 1, 3), rng.normal(0, 2, 3))
        covered += lo < 1 < hi
    assert 0.93 < covered / 2000 < 0.98


@settings(max_examples=60, deadline=None)
@given(seeds, seeds, st.floats(0.05, 20).filter(lambda p: abs(math.log(p)) > 0.01))
def test_swapping_models_inverts_the_ratio_and_keeps_the_verdict_with_the_inverse_paper(a, b, paper):
    v = verdicts.compare(a, b, paper=paper, scale="ratio")
    w = verdicts.compare(b, a, paper=1 / paper, scale="ratio")
    assert w.estimate == pytest.approx(1 / v.estimate, rel=1e-9)
    if math.isfinite(v.low):
        assert (w.low, w.high) == pytest.approx((1 / v.high, 1 / v.low), rel=1e-9)
    assert w.outcome == v.outcome


@settings(max_examples=60, deadline=None)
@given(seeds, seeds, st.floats(-10, 10).filter(lambda p: abs(p) > 0.01))
def test_swapping_models_flips_the_sign(a, b, paper):
    v = verdicts.compare(a, b, paper=paper)
    w = verdicts.compare(b, a, paper=-paper)
    assert w.estimate == pytest.approx(-v.estimate, abs=1e-9)
    assert (w.low, w.high) == pytest.approx((-v.high, -v.low), abs=1e-9)
    assert w.outcome == v.outcome


@settings(max_examples=60, deadline=None)
@given(seeds, seeds, st.floats(0.1, 10))
def test_the_interval_contains_the_estimate_and_the_outcome_is_one_of_three(a, b, paper):
    v = verdicts.compare(a, b, paper=paper)
    assert v.low - 1e-9 <= v.estimate <= v.high + 1e-9
    assert v.outcome in verdicts.OUTCOMES


@settings(max_examples=40, deadline=None)
@given(seeds, st.floats(-50, 50))
def test_shifting_both_models_changes_no_difference_verdict(a, shift):
    b = [x * 1.1 + 0.3 for x in a]
    v = verdicts.compare(a, b, paper=1.0)
    w = verdicts.compare([x + shift for x in a], [x + shift for x in b], paper=1.0)
    assert w.outcome == v.outcome and w.estimate == pytest.approx(v.estimate, abs=1e-6)


def test_equivalence_inside_outside_and_across_the_tolerance():
    same = verdicts.equivalent([90.0, 90.1, 89.9], [90.05, 90.0, 90.1])
    assert same.outcome == "reproduced" and -ACC_TOLERANCE < same.low < same.high < ACC_TOLERANCE
    drop = verdicts.equivalent([64.0, 64.3, 63.9], [93.0, 93.1, 92.8])
    assert drop.outcome == "not reproduced" and drop.high < -ACC_TOLERANCE
    wide = verdicts.equivalent([90.0, 91.0], [90.0, 90.6])
    assert wide.outcome == "inconclusive" and "crosses" in wide.reason
    one = verdicts.equivalent([64.0], [93.0, 93.1])
    assert one.outcome == "inconclusive" and "1 seed" in one.reason


def test_the_accuracy_tolerance_is_the_papers_own_spread():
    # every model the paper calls comparably accurate is within ACC_TOLERANCE of Standard, and no
    # smaller whole or half point would include them all
    drops = [abs(v["acc"][0] - PAPER["standard"]["acc"][0]) for v in PAPER.values()]
    assert max(drops) <= ACC_TOLERANCE
    assert max(drops) > ACC_TOLERANCE - 0.5


def test_bounded_cost():
    ok = verdicts.bounded([1.05, 1.06, 1.04], [1.0, 1.01, 0.99], limit=1.15)
    assert ok.outcome == "reproduced" and ok.high <= 1.15
    slow = verdicts.bounded([3.36], [2.09], limit=1.15)
    assert slow.outcome == "not reproduced" and "no interval" in slow.reason
    assert slow.estimate == pytest.approx(3.36 / 2.09)
    edge = verdicts.bounded([1.1, 1.3], [1.0, 1.0], limit=1.15)
    assert edge.outcome == "inconclusive"


def test_rank_correlation_interval():
    rng = np.random.default_rng(5)
    x = rng.normal(size=15)
    rho, lo, hi, n = verdicts.rank_correlation(x, x + rng.normal(0, 3, 15))
    assert n == 15 and lo < rho < hi and -1 <= lo and hi <= 1
    rho, lo, hi, n = verdicts.rank_correlation(x, 2 * x)
    assert rho == pytest.approx(1.0) and math.isnan(lo)


def test_bad_input():
    with pytest.raises(ValueError):
        verdicts.compare([1.0, 2.0], [1.0, -2.0], paper=0.5, scale="ratio")
    with pytest.raises(ValueError):
        verdicts.compare([1.0, 2.0], [1.0, 2.0], paper=0.0)
    with pytest.raises(ValueError):
        verdicts.compare([], [1.0, 2.0], paper=1.0)


def test_direction_only_claims_skip_the_far_smaller_rule():
    v = verdicts.compare([1.02, 1.021, 1.019], [1.0, 1.001, 0.999], paper=None, direction=1, scale="ratio")
    assert v.outcome == "reproduced" and math.isnan(v.paper) and math.isnan(v.relative)
    w = verdicts.compare([1.02, 1.021, 1.019], [1.0, 1.001, 0.999], paper=None, direction=-1, scale="ratio")
    assert w.outcome == "not reproduced"
    with pytest.raises(ValueError):
        verdicts.compare([1.0, 2.0], [1.0, 2.0], paper=None)


def test_paired_rounds_remove_shared_drift():
    # a machine that slows down over the rounds: unpaired, the drift swamps a 5 % overhead; paired, it does not
    drift = np.array([1.0, 1.3, 1.7, 2.2, 2.8])
    base, model = drift, drift * 1.05
    paired = verdicts.bounded(model, base, limit=1.15, paired=True)
    assert paired.outcome == "reproduced" and paired.estimate == pytest.approx(1.05)
    assert verdicts.bounded(model, base, limit=1.15).outcome == "inconclusive"
    with pytest.raises(ValueError):
        verdicts.bounded([1.0, 2.0], [1.0], paired=True)


def test_ratio_interval_is_the_interval_of_the_ratio_verdict():
    a, b = [2.0, 2.4, 2.1], [10.0, 12.0, 11.5]
    v = verdicts.compare(a, b, paper=0.25, scale="ratio")
    assert verdicts.ratio_interval(a, b) == pytest.approx((v.low, v.high))
    assert all(math.isnan(x) for x in verdicts.ratio_interval([2.0], b))  # one seed: no interval


def test_equivalence_power_is_the_rule_applied_to_simulated_designs():
    """The vectorised power equals the share of simulated designs that ``equivalent`` itself calls
    reproduced (same draws), is near 0 where no design can pass and grows with seeds."""
    import numpy as np

    from lcnn_core.verdicts import equivalence_power, equivalent
    sd, n, delta, draws = 0.6, 5, 0.2, 300
    rng = np.random.default_rng(0)
    a, b = rng.normal(delta, sd, size=(draws, n)), rng.normal(0.0, sd, size=(draws, n))
    by_rule = np.mean([equivalent(x, y).outcome == "reproduced" for x, y in zip(a, b)])
    assert equivalence_power(sd, n, delta, draws=draws, seed=0) == by_rule
    assert equivalence_power(0.6, 3) < 0.15                     # three seeds: the interval is mostly wider than +-1
    assert equivalence_power(0.6, 8) > equivalence_power(0.6, 5) > equivalence_power(0.6, 3)
    assert equivalence_power(0.6, 8, delta=1.5) < 0.01          # a real 1.5-point drop is not "the same"


def test_seeds_phrase_counts_each_model():
    one = verdicts.compare(np.array([0.5]), np.array([1.0, 1.1, 0.9]), paper=0.5)
    three = verdicts.compare(np.array([0.5, 0.6, 0.4]), np.array([1.0, 1.1, 0.9]), paper=0.5)
    single = verdicts.compare(np.array([0.5]), np.array([1.0]), paper=0.5)
    assert (one.seeds_phrase(), three.seeds_phrase(), single.seeds_phrase()) == ("1 / 3 seeds", "3 seeds", "1 seed")
