"""The evidence tables of issue 18 (C_f on three outputs, LCNN's components alone, the strong
attack) on made-up result folders whose answers are known."""
import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from lcnn_core import report

SMOKE = Path(__file__).resolve().parents[1] / "results" / "smoke"
# variant: (C_f loss, C_f logit, C_f margin) per seed; accuracy follows the seed
CF = {"standard": [(10.0, 20.0, 30.0), (12.0, 22.0, 33.0), (11.0, 21.0, 31.0)],
      "lcnn": [(2.0, 1.0, 3.0), (2.2, 1.1, 3.3), (2.1, 0.9, 3.1)],
      "csoftplus": [(10.1, 19.0, 29.0), (12.1, 23.0, 34.0), (11.0, 20.0, 30.0)]}
# variant: strongest robust accuracy % at eps 0.25, 0.5, 1.0 per seed
STRONG = {"standard": [(30, 10, 0), (32, 12, 1), (31, 11, 0)],
          "lcnn": [(50, 30, 5), (52, 31, 4), (51, 29, 6)],
          "csoftplus": [(31, 11, 0), (30, 10, 0), (32, 12, 0)]}


def _run(root, variant, seed, cf, strong, logit=True):
    src = SMOKE / ("lcnn-s0" if variant != "standard" else "standard-s0")
    d = root / "p" / f"{variant}-s{seed}"
    shutil.copytree(src, d)
    cfg = yaml.safe_load((d / "config.yaml").read_text())
    (d / "config.yaml").write_text(yaml.safe_dump(dict(cfg, variant=variant, seed=seed)))
    geo = json.loads((d / "geometry.json").read_text())
    geo["curvature_lanczos_mean"] = cf[0]
    if logit:
        geo["curvature_logit_mean"], geo["curvature_margin_mean"] = cf[1], cf[2]
    else:
        for k in ("curvature_logit_mean", "curvature_margin_mean", "by_output"):
            geo.pop(k, None)
    (d / "geometry.json").write_text(json.dumps(geo))
    att = json.loads((d / "attacks.json").read_text())
    att["table"] = [dict(eps=e, pgd=a + 5, apgd_ce=a + 2, apgd_t=a, strongest=a) for e, a in zip((0.25, 0.5, 1.0), strong)]
    att["flags"] = dict(att["flags"], masking_suspected=variant == "csoftplus" and seed == 1)
    (d / "attacks.json").write_text(json.dumps(att))


@pytest.fixture
def root(tmp_path):
    for v in CF:
        for seed in range(3):
            _run(tmp_path, v, seed, CF[v][seed], STRONG[v][seed])
    return tmp_path


def test_three_outputs_are_read_and_judged_per_output(root):
    runs = report.load_runs("p", root)
    assert runs.set_index("run").loc["lcnn-s1", ["cf", "cf_logit", "cf_margin"]].tolist() == [2.2, 1.1, 3.3]
    t = report.output_table(runs, root).set_index("model")
    assert list(t.index) == ["Standard", "LCNN", "Centered softplus only"]
    assert t.loc["LCNN", "E C_f logit"] == "1.00 ± 0.10"
    assert t.loc["LCNN", "logit: / Standard (95% CI)"].endswith("reproduced")  # 0.05 against the paper's 0.26
    assert t.loc["Centered softplus only", "logit: / Standard (95% CI)"].endswith("not reproduced")
    lcnn = report.geometry_verdict(runs, "lcnn", "cf_logit", root=root)
    assert lcnn.estimate == pytest.approx(np.exp(np.mean(np.log([1.0, 1.1, 0.9])) - np.mean(np.log([20.0, 22.0, 21.0]))))


def test_runs_evaluated_before_the_logit_readout_are_left_out_of_the_output_table(root):
    shutil.rmtree(root / "p" / "csoftplus-s0")
    _run(root, "csoftplus", 0, CF["csoftplus"][0], STRONG["csoftplus"][0], logit=False)
    runs = report.load_runs("p", root)
    assert np.isnan(runs.set_index("run").loc["csoftplus-s0", "cf_logit"])
    t = report.output_table(runs, root).set_index("model")
    assert t.loc["Centered softplus only", "seeds"] == "2"


def test_component_table_keeps_the_component_order_and_judges_against_lcnns_effect(root):
    runs = report.load_runs("p", root)
    t = report.component_table(runs, root)
    assert list(t.model) == ["Standard", "LCNN", "Centered softplus only"]
    row = t.set_index("model").loc["Centered softplus only"]
    assert row["loss verdict"] == "not reproduced" and row["seeds"] == "3"
    assert report.paper_ratio("csoftplus", "cf_logit") == report.paper_ratio("lcnn", "cf")


def test_component_verdicts_are_what_the_table_shows_and_need_standard(root):
    runs = report.load_runs("p", root)
    judged = report.component_verdicts(runs, root)
    assert set(judged) == {(v, m) for v in ("lcnn", "csoftplus") for m in ("cf", "cf_logit")}
    assert report.component_table(runs, root, judged).equals(report.component_table(runs, root))
    row = report.component_table(runs, root, judged).set_index("model").loc["LCNN"]
    assert row["loss verdict"] == judged[("lcnn", "cf")].outcome
    assert report.component_verdicts(runs[runs.variant != "standard"], root) == {}


def test_strong_attack_table_averages_seeds_and_flags_masking_if_any_seed_does(root):
    t = report.strong_attack_table("p", root)
    lcnn = t[(t.model == "LCNN") & (t.eps == 0.25)].iloc[0]
    assert lcnn["strongest %"] == 51.0 and lcnn["our PGD %"] == 56.0 and lcnn["seeds"] == 3
    assert set(t[t.model == "Centered softplus only"]["masking flagged"]) == {"yes"}
    assert set(t[t.model == "LCNN"]["masking flagged"]) == {"no"}
    assert list(t.model.unique()) == ["Standard", "LCNN", "Centered softplus only"]


def test_ledger_reads_the_strong_attack_at_the_smallest_eps_and_the_logit_curvature(root, monkeypatch):
    monkeypatch.setattr(report, "SCALES", [("p", None, "made up")])
    led = report.ledger(root).set_index("test")
    strong = led.loc["strongest-attack accuracy at ε = 0.25, LCNN − Standard (points)"]
    assert strong["ours (95% CI)"].startswith("20.0 [") and strong["verdict"] == "reproduced"
    assert led.loc["E C_f of the true-class logit, LCNN / Standard", "verdict"] == "reproduced"


def test_effort_checks_are_listed_and_a_check_at_near_zero_accuracy_is_marked_uninformative(root):
    for run, base, stronger in (("standard-s0", 1.5, 1.5), ("lcnn-s0", 40.0, 36.0)):
        f = root / "p" / run / "attacks.json"
        att = json.loads(f.read_text())
        att["check"] = dict(eps=0.5, base=base, stronger=stronger, lowered_by=base - stronger, tolerance=0.5,
                            ok=base - stronger <= 0.5, settings={})
        f.write_text(json.dumps(att))
    t = report.effort_checks("p", root).set_index("model")
    assert len(t) == 2  # the other runs' check is null: not run
    assert t.loc["Standard", "passed"] == "yes" and t.loc["Standard", "informative"].startswith("no")
    assert t.loc["LCNN", "passed"] == "no" and t.loc["LCNN", "informative"] == "yes"
    study = root / "attack-effort"
    study.mkdir()
    pd.DataFrame([dict(preset="p", run="standard-s0", variant="standard", seed=0, eps=0.25, base=24.0,
                       stronger=23.5, lowered_by=0.5, tolerance=0.5, ok=True),
                  dict(preset="other", run="lcnn-s0", variant="lcnn", seed=0, eps=0.25, base=30.0,
                       stronger=20.0, lowered_by=10.0, tolerance=0.5, ok=False)]).to_csv(study / "summary.csv")
    t = report.effort_checks("p", root)
    assert len(t) == 3 and list(t.check).count("attack-effort study") == 1  # the other preset's row is not here
    row = t[t.check == "attack-effort study"].iloc[0]
    assert row.model == "Standard" and row["ε"] == 0.25 and row.passed == "yes" and row.informative == "yes"


def test_component_ratios_divide_the_means_by_standard_and_by_lcnn(root):
    r = report.component_ratios(report.load_runs("p", root))
    assert list(r.index) == ["standard", "lcnn", "csoftplus"] and (r.seeds == 3).all()
    assert r.loc["lcnn", "cf_over_standard"] == pytest.approx(2.1 / 11.0)
    assert r.loc["csoftplus", "cf_logit_over_lcnn"] == pytest.approx((62.0 / 3) / 1.0)
    assert r.loc["lcnn", "cf_over_lcnn"] == pytest.approx(1.0)
    # csoftplus has 5x LCNN's curvature in every seed: its interval against LCNN holds 5 and excludes 1
    assert 1 < r.loc["csoftplus", "cf_over_lcnn_low"] < r.loc["csoftplus", "cf_over_lcnn"] < r.loc["csoftplus", "cf_over_lcnn_high"]


def test_verdicts_wait_for_both_models_while_a_preset_is_being_regenerated(root, monkeypatch):
    """Standard regenerated with a new eps grid, LCNN not yet: no verdict at an eps one model
    lacks (None, not an error), a verdict where both have it; the ledger skips what is missing."""
    for seed in range(3):
        d = root / "p" / f"lcnn-s{seed}"
        att = json.loads((d / "attacks.json").read_text())
        att["table"] = [r for r in att["table"] if r["eps"] != 0.25]
        (d / "attacks.json").write_text(json.dumps(att))
    runs = report.load_runs("p", root)
    assert report.strong_attack_verdict("p", runs, 0.25, root=root) is None
    assert report.strong_attack_verdict("p", runs, 0.5, root=root).estimate == pytest.approx(30 - 11)
    assert report.pgd_verdict("p", runs, root=root) is not None
    for seed in range(3):
        (root / "p" / f"standard-s{seed}" / "pgd.json").unlink()
    assert report.pgd_verdict("p", report.load_runs("p", root), root=root) is None
    monkeypatch.setattr(report, "SCALES", [("p", None, "made up")])
    tests = set(report.ledger(root).test)
    assert not any(t.startswith("strongest-attack") or t.startswith("PGD") for t in tests)


def _pgd(root, run, acc):
    f = root / "p" / run / "pgd.json"
    d = json.loads(f.read_text())
    d["robust_accuracy"] = {k: acc for k in d["robust_accuracy"]}
    f.write_text(json.dumps(d))


def test_baselines_get_curvature_and_attack_rows_against_standard_once_they_have_two_seeds(root, monkeypatch):
    """CURE and adversarial training, the paper's other baselines: no ledger row with one seed (the
    rule could only say inconclusive), then E C_f / Standard (claim 1) and PGD and strongest-attack
    accuracy − Standard (claim 3), each judged against the paper's own baseline effect."""
    monkeypatch.setattr(report, "SCALES", [("p", None, "made up")])
    for seed in range(3):
        _pgd(root, f"standard-s{seed}", 30.0 + seed)
    # CURE: a third of Standard's curvature, 20 points more under both attacks; adversarial training: one seed
    _run(root, "cure", 0, (11.0 / 3, 1.0, 1.0), (52, 30, 5))
    _run(root, "adv", 0, (1.0, 1.0, 1.0), (60, 40, 10))
    _pgd(root, "cure-s0", 50.0)
    assert not [t for t in report.ledger(root).test if "baseline" in t]
    for seed in (1, 2):
        _run(root, "cure", seed, (12.0 / 3 + seed * 0.1, 1.0, 1.0), (50 + seed, 30, 5))
        _pgd(root, f"cure-s{seed}", 51.0 + seed)
    led = report.ledger(root).set_index("test")
    rows = [t for t in led.index if "baseline" in t]
    assert rows == ["E C_f, CURE / Standard (a baseline)",
                    "PGD accuracy at ε = 0.1, CURE − Standard (a baseline, points)",
                    "strongest-attack accuracy at ε = 0.25, CURE − Standard (a baseline, points)"]
    cf = led.loc[rows[0]]
    assert cf.claim == 1 and cf.seeds == "3" and cf.verdict == "reproduced"
    assert float(cf.paper) == pytest.approx(116.31 / 270.89, abs=5e-3)  # the paper's CURE / Standard
    # a ratio of geometric means (the interval is on the log scale)
    assert cf.estimate == pytest.approx(np.exp(np.log([11.0 / 3, 4.1, 4.2]).mean() - np.log([10.0, 12.0, 11.0]).mean()))
    pgd = led.loc[rows[1]]
    assert pgd.claim == 3 and pgd.estimate == pytest.approx(np.mean([50.0, 52.0, 53.0]) - 31.0) and pgd.verdict == "reproduced"
    assert pgd.paper_value == pytest.approx(61.28 - 37.55)
    assert led.loc[rows[2]].estimate == pytest.approx(np.mean([52.0, 51.0, 52.0]) - 31.0)
    # a baseline that loses robustness against Standard in every seed is not reproduced
    for seed in range(3):
        _pgd(root, f"cure-s{seed}", 10.0 + seed)
    assert report.ledger(root).set_index("test").loc[rows[1], "verdict"] == "not reproduced"
