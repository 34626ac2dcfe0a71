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
    table = report.comparison(summary, "cf")
    assert table.loc[0, "verdict"] == "baseline"
    assert set(table.verdict[1:]) <= {"ordering reproduced", "not reproduced"}
    assert report.ordering(summary, "cf") in (True, False)
    assert report.ordering(summary[summary.variant != "lcnn"], "cf") is None
    for d in (smoke_results / "smoke").iterdir():
        prov = json.loads((d / "provenance.json").read_text())
        assert prov["preset"] == "smoke" and prov["wall_time_s"] > 0


def test_verdict_rule():
    assert report.verdict(0.3, 0.26) == "ordering reproduced"
    assert report.verdict(1.4, 0.26) == "not reproduced"
    assert report.verdict(float("nan"), 0.26) == "n/a"


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
                                                           results_dir=str(root)))
    assert "Traceback" not in out.read_text()


def test_train_notebook_runs_locally_with_its_defaults(tmp_path):
    import papermill as pm
    out = tmp_path / "train.ipynb"
    pm.execute_notebook(str(NOTEBOOKS / "train.ipynb"), str(out), kernel_name="python3", progress_bar=False,
                        cwd=str(tmp_path))
    assert (tmp_path / "results" / "smoke" / "lcnn-s0" / "geometry.json").exists()
