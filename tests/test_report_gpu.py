"""The GPU table (h100-cifar10-jpeg, issue 30): seed 0 by older code on an H100 and seeds 1-2 by
c1c7bae on an H200, pooled; the ledger's rows judged by the one verdict rule over those seeds; the
team-drop row at full width; claim 5 from the newest GPU benchmark; and the table's runs kept apart
from a grid's ablation and longer runs."""
import numpy as np
import pandas as pd
import pytest

from lcnn_core import report, verdicts

GPU = "h100-cifar10-jpeg"


@pytest.fixture(scope="module")
def ledger():
    return report.ledger()


@pytest.fixture(scope="module")
def runs():
    return report.lambda_runs(report.load_runs(GPU), None, epochs=10)


def _gpu_row(ledger, test):
    (row,) = ledger[(ledger.test == test) & ledger.scale.str.contains("width 64, GPU")].to_dict("records")
    return row


def test_the_gpu_rows_pool_the_three_standard_seeds_and_two_lcnn_seeds(ledger, runs):
    paper = runs[(runs.variant != "lcnn") | (runs.lam == 1e-3)]
    assert sorted(paper[paper.variant == "standard"].seed) == [0, 1, 2]
    assert sorted(paper[paper.variant == "lcnn"].seed) == [0, 1]
    assert {r[:7] for r in paper[paper.seed == 0].git_sha} == {"7dd072b"}
    assert {r[:7] for r in paper[paper.seed > 0].git_sha} == {"c1c7bae"}
    for test in ("E C_f, LCNN / Standard", "relative gradient change, LCNN / Standard",
                 "accuracy, LCNN − Standard (points)"):
        assert _gpu_row(ledger, test)["seeds"] == "2 / 3"
    # the same rule on the values read here gives the row's interval
    cf = verdicts.compare(report.seed_values(paper, "lcnn", "cf"), report.seed_values(paper, "standard", "cf"),
                          paper=report.paper_ratio("lcnn", "cf"), scale="ratio")
    row = _gpu_row(ledger, "E C_f, LCNN / Standard")
    assert row["ours (95% CI)"] == cf.interval() and row["verdict"] == cf.outcome
    acc = _gpu_row(ledger, "accuracy, LCNN − Standard (points)")
    assert acc["images"] == 10000  # accuracy on the whole test split, the geometry on its 500 images


def test_claim_5_on_the_gpu_is_the_newest_benchmark(ledger):
    (row,) = ledger[(ledger.claim == 5) & ledger.scale.str.contains("NVIDIA")].to_dict("records")
    assert "H200" in row["scale"] and "code before the speed work" not in row["scale"]
    cost = report.train_cost()["cuda_epoch"]
    epoch = cost[0].set_index("variant").epoch_s
    assert row["ours (95% CI)"].startswith(f"{epoch['lcnn'] / epoch['standard']:.2f}")
    assert cost[1]["compile"] == "off" and cost[1]["provenance"]["git_sha"].startswith("c1c7bae")


def test_the_full_width_team_drop_row_is_judged_against_the_teams_drop(runs):
    v = report.full_width_drop(runs)
    lcnn = runs[(runs.variant == "lcnn") & (runs.lam == 1e-2)].accuracy.to_numpy()
    std = runs[runs.variant == "standard"].accuracy.to_numpy()
    assert v.seeds() == "2 / 3" and v.paper == report.TEAM_DROP
    assert "paper's" not in v.reason and (v.outcome != "reproduced" or "team's side" in v.reason)
    assert v.estimate == pytest.approx(lcnn.mean() - std.mean())
    est, lo, hi, _ = verdicts.welch(lcnn, std)
    assert (v.low, v.high) == pytest.approx((lo, hi))
    assert report.full_width_drop(runs[runs.variant != "standard"]) is None


def test_a_table_leaves_out_the_ablation_cells_and_the_longer_runs():
    rows = pd.DataFrame(dict(
        variant=["standard", "lcnn", "lcnn", "lcnn", "lcnn", "gradreg"],
        lam=[1e-2, 1e-3, 1e-3, 1e-3, 1e-2, 1e-2], lam_gamma=[1e-2, 1e-3, 1e-2, 1e-3, 1e-2, 1e-2],
        epochs=[10, 10, 10, 50, 10, 10], seed=np.zeros(6, int)))
    kept = report.lambda_runs(rows, 1e-3, epochs=10)
    assert list(kept.index) == [0, 1, 5]  # not the lambda_gamma = 1e-2 cell, nor the 50-epoch run
    assert list(report.lambda_runs(rows, None, epochs=50).index) == [3]
    assert len(report.lambda_runs(rows)) == len(rows)


def test_scale_line_names_every_hardware_and_the_seeds_per_model(runs):
    line = report.scale_line(runs)
    for hw in set(runs.hardware):
        assert hw in line
    per_model = runs.groupby("variant").seed.nunique()
    assert (f"{per_model.min()}–{per_model.max()} seeds per model" in line) == (per_model.min() != per_model.max())
    assert report.hardware_phrase("CPU x86_64, 1 threads") == "CPU x86_64, 1 thread"
    assert report.hardware_phrase("CPU x86_64, 12 threads") == "CPU x86_64, 12 threads"


def test_section_names_are_the_ledgers_scales_with_the_sections_lambda(tmp_path):
    assert report.setting_name("h100-cifar10-jpeg", 1e-2) == "CIFAR-10 JPEG, width 64, GPU, λ = 1e-2"
    assert report.setting_name("cpu-default") == "MNIST-5k, width 8, CPU"
    assert report.setting_name("some-new-preset") == "some-new-preset"
    assert report.gpu_names("h100-cifar10-jpeg", 1e-3) == "H100 and H200"  # the committed runs' provenance


def test_strong_attack_verdict_skips_a_radius_where_both_models_are_near_zero():
    runs = pd.DataFrame({"run": ["lcnn-s0", "lcnn-s1", "standard-s0", "standard-s1"]})
    df = pd.DataFrame({"run": runs.run, "variant": ["lcnn", "lcnn", "standard", "standard"], "seed": [0, 1, 0, 1],
                       "eps": 3.0, "n_samples": 200, "strongest": [1.0, 2.0, 0.0, 0.5]})
    assert report.strong_attack_verdict("p", runs, 3.0, df=df) is None  # both under CHECK_INFORMATIVE
    df["strongest"] = [30.0, 34.0, 10.0, 12.0]
    assert report.strong_attack_verdict("p", runs, 3.0, df=df).estimate == pytest.approx(21.0)


def test_strong_attack_values_are_the_sections_runs_only_ordered_by_seed():
    df = pd.DataFrame({"run": ["lcnn-s1", "lcnn-s0", "standard-s0", "lcnn-s2"], "variant": ["lcnn", "lcnn", "standard", "lcnn"],
                       "seed": [1, 0, 0, 2], "eps": 0.5, "n_samples": 200, "strongest": [3.0, 2.0, 40.0, 99.0]})
    runs = pd.DataFrame({"run": ["lcnn-s0", "lcnn-s1", "standard-s0"]})  # lcnn-s2 belongs to another section
    lcnn, std = report.strong_attack_values("p", runs, 0.5, df=df)
    assert list(lcnn) == [2.0, 3.0] and list(std) == [40.0]
    assert report.strong_attack_informative((lcnn, std))
    assert not report.strong_attack_informative((lcnn, np.array([5.0])))
    assert [len(x) for x in report.strong_attack_values("p", runs, 0.25, df=df)] == [0, 0]


def test_styled_prints_settings_exactly_and_rounds_only_the_values():
    html = report.styled(pd.DataFrame({"ε": [0.05, 0.15, 0.25], "accuracy": [12.345, float("nan"), 3.0]}), 1).to_html()
    for eps in ("0.05", "0.15", "0.25"):
        assert f">{eps}<" in html
    assert ">12.3<" in html and ">–<" in html and ">0.1<" not in html
