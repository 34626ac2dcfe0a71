"""The accuracy design (book/accuracy_design.md): the ledger's accuracy rows of a scale move to its
design preset only once both models have the design's seeds, and say so; before that the design's
runs are an interim look. Made-up result folders whose answers are known."""
import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from lcnn_core import report, verdicts

SMOKE = Path(__file__).resolve().parents[1] / "results" / "smoke"
MAIN, DESIGN = "cifar10-jpeg-cpu16", report.ACCURACY_DESIGNS["cifar10-jpeg-cpu16"]


def _run(root, preset, variant, seed, accuracy, n_test):
    d = root / preset / f"{variant}-s{seed}"
    shutil.copytree(SMOKE / ("lcnn-s0" if variant != "standard" else "standard-s0"), d)
    cfg = yaml.safe_load((d / "config.yaml").read_text())
    # the main preset's epochs (the ledger keeps only those) and CIFAR's test set
    cfg.update(variant=variant, seed=seed, epochs=15, dataset="cifar10-jpeg", n_test=n_test)
    (d / "config.yaml").write_text(yaml.safe_dump(cfg))
    hist = pd.read_csv(d / "history.csv")
    hist.loc[hist.index[-1], "test_acc"] = accuracy
    hist.to_csv(d / "history.csv", index=False)


def _root(tmp_path, design_seeds, gap=0.1):
    rng = np.random.default_rng(0)
    for seed in range(3):  # the main preset: three seeds, 2,000 test images, a 3-point spread
        for v in ("standard", "lcnn"):
            _run(tmp_path, MAIN, v, seed, 72.0 + 3.0 * rng.standard_normal(), 2000)
    for seed in range(design_seeds):  # the design: all test images, a 0.3-point spread
        _run(tmp_path, DESIGN, "standard", seed, 72.0 + 0.3 * rng.standard_normal(), None)
        _run(tmp_path, DESIGN, "lcnn", seed, 72.0 + gap + 0.3 * rng.standard_normal(), None)
    return tmp_path


def _accuracy_row(ledger):
    return ledger.query("claim == 1 and test == 'accuracy, LCNN − Standard (points)'").iloc[0]


def test_the_accuracy_row_stays_on_the_main_preset_until_the_design_has_its_seeds(tmp_path):
    root = _root(tmp_path, report.ACCURACY_DESIGN_SEEDS - 1)
    ledger = report.ledger(root)
    row = _accuracy_row(ledger)
    assert row.preset == MAIN and row.seeds == "3" and row.images == 2000
    assert set(ledger.preset) == {MAIN}  # every other row of the scale names its preset too
    interim = report.accuracy_interim(DESIGN, root).set_index("model")
    assert interim.loc["LCNN", "seeds"] == str(report.ACCURACY_DESIGN_SEEDS - 1)
    assert not interim.judged.any() and interim.loc["LCNN", "test_images"] == 10000


def test_with_the_designs_seeds_the_row_is_the_rule_on_the_designs_runs(tmp_path):
    n = report.ACCURACY_DESIGN_SEEDS
    root = _root(tmp_path, n)
    row = _accuracy_row(report.ledger(root))
    assert row.preset == DESIGN and row.seeds == str(n) and row.images == 10000
    runs = report.load_runs(DESIGN, root)
    by_hand = verdicts.equivalent(runs[runs.variant == "lcnn"].sort_values("seed").accuracy.to_numpy(),
                                  runs[runs.variant == "standard"].sort_values("seed").accuracy.to_numpy())
    assert (row.estimate, row.low, row.high) == pytest.approx((by_hand.estimate, by_hand.low, by_hand.high))
    assert row.verdict == by_hand.outcome == "reproduced"  # 0.1 points apart, spread 0.3: inside ±1
    # the geometry rows still judge the main preset's runs
    ledger = report.ledger(root)
    assert set(ledger[~ledger.test.str.startswith("accuracy")].preset) == {MAIN}
    assert report.accuracy_interim(DESIGN, root).set_index("model").loc["LCNN", "judged"]


def test_a_real_accuracy_cost_comes_out_not_reproduced(tmp_path):
    row = _accuracy_row(report.ledger(_root(tmp_path, report.ACCURACY_DESIGN_SEEDS, gap=-3.0)))
    assert row.preset == DESIGN and row.verdict == "not reproduced" and row.high < -1


def test_interim_without_runs_is_empty(tmp_path):
    assert report.accuracy_interim(DESIGN, tmp_path).empty
    assert json.dumps(report.ACCURACY_DESIGNS)  # plain data, as the page prints it


@pytest.mark.parametrize("main", sorted(report.ACCURACY_DESIGNS))
def test_each_design_preset_trains_its_scale_with_the_seeds_the_ledger_waits_for(main):
    """A design changes the number of seeds and what is evaluated, never the training: every
    resolved setting but the evaluation's and the test-set size equals its main preset's."""
    from lcnn_core.config import load_preset, resolve
    preset = load_preset(report.ACCURACY_DESIGNS[main])
    assert len(preset["seeds"]) == report.ACCURACY_DESIGN_SEEDS
    assert preset["config"].get("n_test") is None and set(preset["variants"]) == set(report.ACCURACY_DESIGN_MODELS)
    for v in report.ACCURACY_DESIGN_MODELS:
        design, ref = (resolve(dict(load_preset(p)["config"], variant=v, seed=0)) for p in (report.ACCURACY_DESIGNS[main], main))
        differ = {k for k in set(design) | set(ref) if design.get(k) != ref.get(k)}
        assert all(k.startswith("eval_") or k == "n_test" for k in differ), differ


def test_each_accuracy_row_states_the_power_of_its_own_design(tmp_path):
    """accuracy_rows_power: per accuracy row, the spread its own runs measure, the power of its seed
    count at that spread, and the fewest seeds that reach 80 %, checked by hand against
    verdicts.equivalence_power; the row follows the design once it has its seeds."""
    for design_seeds, preset, seeds in ((3, MAIN, 3), (report.ACCURACY_DESIGN_SEEDS, DESIGN, report.ACCURACY_DESIGN_SEEDS)):
        root = _root(tmp_path / str(design_seeds), design_seeds)
        t = report.accuracy_rows_power(root)
        assert list(t.model) == ["LCNN"]  # the made-up scale has no LCNN + GradReg
        row = t.iloc[0]
        runs = report.load_runs(preset, root)
        accs = [runs[runs.variant == v].accuracy.to_numpy() for v in ("lcnn", "standard")]
        sd = np.sqrt((np.var(accs[0], ddof=1) + np.var(accs[1], ddof=1)) / 2)  # equal seeds: the plain mean
        assert row.preset == preset and row.seeds == str(seeds) and row.sd == pytest.approx(sd)
        assert row.power_at_0 == pytest.approx(verdicts.equivalence_power(sd, seeds))
        k = row.seeds_needed
        if k is None or k != k:  # the main preset's 3-point spread: beyond the search
            assert design_seeds == 3 and verdicts.equivalence_power(sd, 40) < 0.8
        else:
            assert verdicts.equivalence_power(sd, int(k)) >= 0.8 > verdicts.equivalence_power(sd, int(k) - 1)
    # the design's 0.3-point spread needs few seeds; the interval agrees with the ledger's row
    assert 2 <= row.seeds_needed <= 4 and row.verdict == _accuracy_row(report.ledger(root)).verdict


def test_pooled_sd_weights_each_variance_by_its_degrees_of_freedom():
    a, b = [70.0, 71.0, 73.0], [72.0, 72.5]
    by_hand = np.sqrt((2 * np.var(a, ddof=1) + 1 * np.var(b, ddof=1)) / 3)
    assert report.pooled_sd([a, b, [90.0]]) == pytest.approx(by_hand)  # a single value adds nothing
    assert np.isnan(report.pooled_sd([[1.0], []]))


@pytest.mark.parametrize("design_seeds, judged_on", [(report.ACCURACY_DESIGN_SEEDS - 1, MAIN),
                                                     (report.ACCURACY_DESIGN_SEEDS, DESIGN)])
def test_the_scales_accuracy_table_judges_where_the_ledger_does(tmp_path, design_seeds, judged_on):
    """The result pages' accuracy table (geometry notebook) and the ledger agree on every difference."""
    root = _root(tmp_path, design_seeds)
    runs = report.load_runs(MAIN, root)
    table = report.accuracy_table(runs, MAIN, root).set_index("model")
    row = _accuracy_row(report.ledger(root))
    assert table.loc["LCNN", "judged on"].startswith(judged_on) and row.preset == judged_on
    assert table.loc["LCNN", "ours − Standard (95% CI)"] == report.accuracy_verdict(
        *report.accuracy_source(MAIN, runs, "lcnn", root=root)[:1], "lcnn").interval(1)
    assert table.loc["LCNN", "verdict"].startswith(row.verdict) and table.loc["LCNN", "seeds judged"] == row.seeds
    assert table.loc["LCNN", "ours %"] == report.fmt_seeds(report.seed_values(runs, "lcnn", "accuracy"), 1)  # its own runs
    assert table.loc["LCNN", "ours seeds"] == "3"  # the main preset's, whichever runs judge the difference
    assert "judged on" not in report.accuracy_table(runs).columns  # without a preset: the runs given, as before
