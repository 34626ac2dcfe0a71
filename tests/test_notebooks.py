"""The report module and every notebook, run through papermill with the CPU defaults on
results made by the smoke preset in a temporary folder (the committed notebooks are
checked against the committed results by `pytest --nbval-lax notebooks/`)."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

from lcnn_core import report
from lcnn_core.cli import main

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"


@pytest.fixture(scope="module")
def smoke_results(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("smoke")
    for variant in ("standard", "lcnn", "lcnn_gradreg"):
        assert main(["train", "--preset", "smoke", "--variant", variant, "--quiet", "--out", str(tmp / "runs"),
                     "--results", str(tmp / "results")]) == 0
    return tmp / "results"


def test_report_tables_from_evaluated_runs(smoke_results):
    runs = report.load_runs("smoke", smoke_results)
    assert sorted(runs.variant) == ["lcnn", "lcnn_gradreg", "standard"]
    summary = report.summarise(runs)
    assert list(summary.variant) == ["standard", "lcnn", "lcnn_gradreg"]  # the paper's row order
    table = report.claim_table(runs, "cf", smoke_results)
    assert table.loc[0, "verdict"] == "baseline"
    # one seed per model: every verdict is inconclusive, and says why
    assert all(v.startswith("inconclusive (only 1 seed") for v in table.verdict[1:])
    assert list(table.seeds) == ["1", "1", "1"] and set(table.images) == {runs.eval_samples.iloc[0]}
    acc = report.accuracy_table(runs)
    assert all(v.startswith("inconclusive") for v in acc.verdict[1:])
    text, steps = report.ordering_verdict(runs, root=smoke_results)
    assert text.startswith("is inconclusive") and len(steps) == 2
    assert report.ordering_verdict(runs[runs.variant != "lcnn"], root=smoke_results)[0].startswith("cannot be tested")
    for d in (smoke_results / "smoke").iterdir():
        prov = json.loads((d / "provenance.json").read_text())
        assert prov["preset"] == "smoke" and prov["wall_time_s"] > 0


def test_ledger_on_the_committed_results():
    """The summary page's ledger: one row per claim and scale, verdicts from lcnn_core.verdicts."""
    from lcnn_core import verdicts
    ledger = report.ledger()
    assert set(ledger.claim) <= set(report.CLAIMS) and 1 in set(ledger.claim)
    assert set(ledger.verdict) <= set(verdicts.OUTCOMES)
    single = ledger[ledger.seeds == "1"]
    assert (single.verdict == "inconclusive").all()  # a single seed never decides a claim
    for _, row in ledger[ledger.claim != 5].iterrows():
        assert row.scale in {s for _, _, s in report.SCALES} and row.page in {"geometry", "gradient_robustness", "adversarial"}
    hours = report.compute_hours()
    assert hours["cpu_hours"] > 0 and hours["files"] == len(report.compute_used())


def test_ledger_rows_recompute_from_the_files(tmp_path):
    """A ledger row is the verdict rule applied to the per-seed values in results/: recompute one by hand."""
    import numpy as np
    from lcnn_core import verdicts
    runs = report.load_runs("cpu-default")
    v = report.geometry_verdict(runs, "lcnn", "cf")
    a = runs[runs.variant == "lcnn"].sort_values("seed").cf.to_numpy()
    b = runs[runs.variant == "standard"].sort_values("seed").cf.to_numpy()
    est, lo, hi, _ = verdicts.welch(np.log(a), np.log(b))
    assert (v.estimate, v.low, v.high) == pytest.approx((np.exp(est), np.exp(lo), np.exp(hi)))
    row = report.ledger().query("claim == 1 and test == 'E C_f, LCNN / Standard' and scale == 'MNIST-5k, width 8, CPU'")
    assert row.verdict.item() == v.outcome and row.seeds.item() == str(len(a))


@pytest.mark.parametrize("name", ["geometry", "gradient_robustness", "adversarial"])
def test_notebook_runs_under_papermill(smoke_results, tmp_path, name):
    import papermill as pm
    out = tmp_path / f"{name}.ipynb"
    pm.execute_notebook(str(NOTEBOOKS / f"{name}.ipynb"), str(out), kernel_name="python3", progress_bar=False,
                        cwd=str(tmp_path), parameters=dict(sections=[["smoke", "smoke test", None, "smoke"]],
                                                           results_dir=str(smoke_results)))
    text = out.read_text()
    assert "Traceback" not in text and "smoke" in text


def test_team_drop_notebook_runs_under_papermill(smoke_results, tmp_path):
    """The ablation page on any results with LCNN runs at two lambdas and two budgets."""
    import papermill as pm
    root = tmp_path / "results"
    for lam in (0, 1e-3, 1e-2, 1e-1):
        for epochs in (1, 2):
            assert main(["train", "--preset", "smoke", "--variant", "lcnn", "--name", f"lcnn-lam{lam}-e{epochs}",
                         "--set", f"lam_beta={lam}", "--set", f"lam_gamma={lam}", "--set", f"epochs={epochs}",
                         "--set", "eval_samples=4", "--set", "eval_pgd_samples=4", "--quiet",
                         "--out", str(tmp_path / "runs"), "--results", str(root)]) == 0
    out = tmp_path / "team_drop.ipynb"
    pm.execute_notebook(str(NOTEBOOKS / "team_drop.ipynb"), str(out), kernel_name="python3", progress_bar=False,
                        cwd=str(tmp_path), parameters=dict(ablation_preset="smoke", gpu_preset="none",
                                                           cifar_ablation_preset="smoke", results_dir=str(root)))
    text = out.read_text()
    assert "Traceback" not in text
    # the ablation's contrasts (one seed per cell here: every verdict inconclusive) are shown and glued
    assert "λ_β = 0.01, λ_γ = 0.01 − paper's λ, 1 epochs" in text and "points, inconclusive" in text


def test_train_notebook_runs_locally_with_its_defaults(tmp_path):
    import papermill as pm
    out = tmp_path / "train.ipynb"
    pm.execute_notebook(str(NOTEBOOKS / "train.ipynb"), str(out), kernel_name="python3", progress_bar=False,
                        cwd=str(tmp_path))
    assert (tmp_path / "results" / "smoke" / "lcnn-s0" / "geometry.json").exists()


def test_ledger_reads_per_round_train_step_times(tmp_path):
    """Claim 5's row from the benchmark's JSON: per-round times (paired interval) or medians only."""
    bench = tmp_path / "benchmarks"
    bench.mkdir()
    prov = {"hardware": "CPU x86_64, 2 threads", "git_sha": "x", "git_dirty": False}
    table = [dict(width=16, variant="standard", step_s=2.0, round_s=[2.0, 2.2, 2.6]),
             dict(width=16, variant="lcnn", step_s=2.1, round_s=[2.1, 2.3, 2.7]),
             dict(width=64, variant="standard", step_s=5.0, round_s=[5.0, 5.1]),
             dict(width=64, variant="lcnn", step_s=9.0, round_s=[9.0, 9.3])]
    (bench / "train_step_cpu.json").write_text(json.dumps(dict(width=16, rounds=3, compile="off", provenance=prov,
                                                               table=table)))
    (bench / "train_step_cuda_epoch.json").write_text(json.dumps(dict(
        width=64, rounds=10, provenance=prov | {"hardware": "NVIDIA H100"},
        table=[dict(variant="standard", epoch_s=6.0), dict(variant="lcnn", epoch_s=17.0)])))
    ledger = report.ledger(tmp_path).set_index("scale")
    assert list(ledger.claim) == [5, 5, 5]
    narrow, wide = ledger.loc["CPU x86_64, 2 threads, width 16, compile off, code x"], ledger.loc["CPU x86_64, 2 threads, width 64, compile off, code x"]
    assert narrow.verdict == "reproduced" and narrow.seeds == "3 rounds"
    assert wide.verdict == "not reproduced"
    gpu = ledger.loc["NVIDIA H100, width 64, code x before the speed work"]  # its file has no compile setting
    assert gpu.verdict == "not reproduced" and "no interval" in gpu.why and "median of 10 rounds" in gpu.why
    assert gpu.method == "point ratio of medians over 10 rounds" and narrow.method.startswith("paired t")
