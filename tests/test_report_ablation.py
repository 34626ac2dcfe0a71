"""The team-drop ablation's tables (report.ablation_cells, report.ablation_contrasts) on a made-up
ablation folder whose answers are known: a lambda pair that costs 30 points at the short budget and
2 at the long one, a pair that costs nothing, and the paper's pair."""
import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from lcnn_core import report

SMOKE = Path(__file__).resolve().parents[1] / "results" / "smoke" / "lcnn-s0"
# (lambda_beta, lambda_gamma, epochs): test accuracy per seed (0, 1)
ACC = {(1e-3, 1e-3, 4): (60.0, 62.0), (1e-3, 1e-3, 16): (70.0, 71.0),
       (1e-2, 1e-2, 4): (30.0, 33.0), (1e-2, 1e-2, 16): (68.0, 69.0),
       (1e-3, 1e-2, 4): (60.5, 61.5), (1e-3, 1e-2, 16): (70.2, 70.8)}


@pytest.fixture
def root(tmp_path):
    for (lb, lg, e), accs in ACC.items():
        for seed, acc in enumerate(accs):
            d = tmp_path / "abl" / f"lcnn-lb{lb:g}-lg{lg:g}-e{e}-s{seed}"
            shutil.copytree(SMOKE, d)
            cfg = yaml.safe_load((d / "config.yaml").read_text())
            (d / "config.yaml").write_text(yaml.safe_dump(dict(cfg, seed=seed, epochs=e, lam_beta=lb, lam_gamma=lg)))
            hist = pd.read_csv(d / "history.csv").iloc[:1].assign(epoch=e, test_acc=acc, train_acc=acc + 1,
                                                                  log10_prod_gamma=-lb * 100)
            hist.to_csv(d / "history.csv", index=False)
            geo = json.loads((d / "geometry.json").read_text())
            geo["proxy"]["mean_beta"] = 1.0 / (lb * 1000)
            (d / "geometry.json").write_text(json.dumps(geo))
    return tmp_path


def test_ablation_cells_one_row_per_lambda_pair_and_budget(root):
    runs = report.load_runs("abl", root)
    cells = report.ablation_cells(report.with_last_epoch(runs, report.history("abl", root)))
    assert len(cells) == len(ACC) and set(cells.seeds) == {2}
    row = cells[(cells["λ_β"] == "0.01") & (cells["λ_γ"] == "0.01") & (cells.epochs == 4)].iloc[0]
    assert row["test acc %"] == f"31.5 ± {np.std([30, 33], ddof=1):.1f}"
    assert row["train acc %"].startswith("32.5") and row["mean β"].startswith("0.10")


def test_ablation_contrasts_find_the_costly_pair_and_the_budget_interaction(root):
    c = report.ablation_contrasts(report.load_runs("abl", root)).set_index("contrast")
    team = c.loc["λ_β = 0.01, λ_γ = 0.01 − paper's λ, 4 epochs"]
    assert team["verdict"] == "reproduced" and team["points (95% CI)"].startswith("-29.5")
    # costs 2 points at 16 epochs: the CI lies wholly below a quarter of the team's 29-point drop
    assert c.loc["λ_β = 0.01, λ_γ = 0.01 − paper's λ, 16 epochs", "verdict"] == "not reproduced"
    # lambda_gamma alone costs nothing: its CI straddles 0 but stays far short of the team's drop
    gamma = c.loc["λ_β = 0.001, λ_γ = 0.01 − paper's λ, 4 epochs"]
    assert gamma["verdict"] == "not reproduced" and "team's effect" in gamma["why"]
    # per-seed costs (-30, -29) at 4 epochs against (-2, -2) at 16: the short budget makes it worse
    inter = c.loc["cost of λ_β = 0.01, λ_γ = 0.01 at 4 − at 16 epochs"]
    assert inter["kind"] == "interaction" and inter["verdict"] == "reproduced"
    assert inter["points (95% CI)"].startswith("-27.5") and "expected side" in inter["why"]
    assert c.loc["4 − 16 epochs, λ_β = 0.001, λ_γ = 0.001", "verdict"] == "reproduced"
    assert "λ_β = 0.001, λ_γ = 0.001 − paper's λ, 4 epochs" not in c.index  # no contrast with itself


def test_ablation_contrasts_without_the_papers_pair_give_only_budget_rows(root):
    for d in (root / "abl").glob("lcnn-lb0.001-lg0.001-*"):
        shutil.rmtree(d)
    c = report.ablation_contrasts(report.load_runs("abl", root))
    assert set(c.kind) == {"budget"} and len(c) == 2
