"""CI rerun check: retrain and re-evaluate the two committed smoke runs (results/smoke: one
Standard, one LCNN; about 20 s on one CPU thread) and compare with the committed files.

Exact: the resolved config, the history's accuracies (counts of images), the evaluated images
(labels, which are correct), every attack setting and eps grid. Within a stated tolerance
(float sums whose order depends on the CPU's thread count and vector units; measured between
1 and 2 threads: losses <= 1e-7 relative, Hessian norms <= 7e-4): losses and beta / gamma
statistics rtol 1e-4; gradient, Hessian and C_f values rtol 2e-2; robust accuracies within one
image of their subset.

When a change of behaviour is intended, regenerate the files from a clean tree with
``OMP_NUM_THREADS=1 python -m lcnn_core train --preset smoke --out /tmp/smoke-runs`` (it
publishes into results/smoke/) and commit them with the change.
"""
import json
from pathlib import Path

import pandas as pd
import pytest
import torch
import yaml

from lcnn_core.config import resolve
from lcnn_core.evaluate import evaluate_run
from lcnn_core.train import train

COMMITTED = Path(__file__).resolve().parent.parent / "results" / "smoke"
RUNS = ("standard-s0", "lcnn-s0")
LOSS_RTOL, GEOMETRY_RTOL = 1e-4, 2e-2


@pytest.fixture(scope="module")
def rerun(tmp_path_factory):
    out = tmp_path_factory.mktemp("rerun")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the committed files were made
    try:
        dirs = {}
        for run in RUNS:
            cfg = yaml.safe_load((COMMITTED / run / "config.yaml").read_text())
            cfg.pop("preset")
            run_dir = train(resolve(cfg), out=out, preset="smoke", progress=False)
            evaluate_run(run_dir, device="cpu", progress=False)
            dirs[run] = run_dir
    finally:
        torch.set_num_threads(threads)
    return dirs


def _json(path):
    return json.loads(Path(path).read_text())


@pytest.mark.parametrize("run", RUNS)
def test_committed_smoke_run_reruns(rerun, run):
    new, old = rerun[run], COMMITTED / run
    assert yaml.safe_load((new / "config.yaml").read_text()) == yaml.safe_load((old / "config.yaml").read_text())

    h_new, h_old = pd.read_csv(new / "history.csv"), pd.read_csv(old / "history.csv")
    assert list(h_new.columns) == list(h_old.columns) and len(h_new) == len(h_old)
    for col in ("epoch", "lr", "train_acc", "test_acc"):
        assert h_new[col].tolist() == h_old[col].tolist(), col
    for col in ("train_loss", "test_loss", "mean_beta", "sum_beta", "mean_gamma", "log10_prod_gamma"):
        pd.testing.assert_series_equal(h_new[col], h_old[col], rtol=LOSS_RTOL, check_exact=False)

    s_new, s_old = pd.read_csv(new / "samples.csv"), pd.read_csv(old / "samples.csv")
    assert list(s_new.columns) == list(s_old.columns)
    for col in ("sample", "label", "correct"):
        assert s_new[col].tolist() == s_old[col].tolist(), col
    for col in s_new.columns:
        if col.startswith(("grad_norm", "hess_norm", "curvature")):
            pd.testing.assert_series_equal(s_new[col], s_old[col], rtol=GEOMETRY_RTOL, check_exact=False)

    g_new, g_old = _json(new / "geometry.json"), _json(old / "geometry.json")
    assert g_new["n_samples"] == g_old["n_samples"] and g_new["accuracy"] == g_old["accuracy"]
    assert g_new["scale"] == g_old["scale"]
    for out in ("loss", "logit", "margin"):
        for key, value in g_old["by_output"][out].items():
            assert g_new["by_output"][out][key] == pytest.approx(value, rel=GEOMETRY_RTOL), (out, key)

    for name in ("pgd.json", "attacks.json"):
        a_new, a_old = _json(new / name), _json(old / name)
        assert a_new["settings"] == a_old["settings"] and a_new["n_samples"] == a_old["n_samples"]
        one = 100.0 / a_old["n_samples"] + 1e-9
        assert a_new["clean_accuracy"] == pytest.approx(a_old["clean_accuracy"], abs=one)
        if name == "pgd.json":
            assert a_new["eps_list"] == a_old["eps_list"]
            for eps, acc in a_old["robust_accuracy"].items():
                assert a_new["robust_accuracy"][eps] == pytest.approx(acc, abs=one)
        else:
            assert [r["eps"] for r in a_new["table"]] == [r["eps"] for r in a_old["table"]]
            for r_new, r_old in zip(a_new["table"], a_old["table"]):
                for col in ("pgd", "apgd_ce", "apgd_t", "strongest"):
                    assert r_new[col] == pytest.approx(r_old[col], abs=one), (r_old["eps"], col)


def test_compare_says_the_smoke_rerun_matches_and_an_altered_one_differs(rerun, tmp_path, capsys):
    """python -m lcnn_core compare on the rerun above: every run matches the committed one; a copy
    with E C_f of the loss doubled differs beyond tolerance, and --strict exits 1 on it."""
    import shutil

    from lcnn_core.cli import main
    from lcnn_core.compare import compare
    rerun_root = next(iter(rerun.values())).parent
    table = compare(rerun_root, COMMITTED)
    assert set(table.run) == set(RUNS) and (table.verdict == "matches").all()
    assert set(table.quantity) == {"test accuracy %", "E C_f (loss)", "E C_f (logit)", "strongest attack %", "PGD %"}

    altered = tmp_path / "results" / "smoke"
    for run in RUNS:
        shutil.copytree(rerun[run], altered / run, ignore=shutil.ignore_patterns("*.pt"))
    geo = _json(altered / "lcnn-s0" / "geometry.json")
    geo["curvature_loss_mean"] *= 2
    (altered / "lcnn-s0" / "geometry.json").write_text(json.dumps(geo))
    table = compare(altered.parent / "smoke", COMMITTED).set_index(["run", "quantity"])
    assert table.loc[("lcnn-s0", "E C_f (loss)"), "verdict"] == "differs beyond tolerance"
    assert not table.loc[("lcnn-s0", "E C_f (loss)"), "within"]
    assert table.loc[("standard-s0", "E C_f (loss)"), "verdict"] == "matches"
    code = main(["compare", "--preset", "smoke", "--results", str(altered.parent), "--committed", str(COMMITTED),
                 "--strict"])
    out = capsys.readouterr().out
    assert code == 1 and "lcnn-s0: differs beyond tolerance: E C_f (loss)" in out and "standard-s0: matches" in out
