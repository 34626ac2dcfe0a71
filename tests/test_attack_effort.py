"""The attack-effort study (lcnn_core.studies.attack_effort) on a smoke run trained here: at 1x
effort and the evaluation's seed it reproduces the committed number exactly (so the subset and the
settings are the evaluation's); at 2x it writes a checked row; it resumes, and it refuses a
committed file that was not made from the model it attacks."""
import json

import pandas as pd
import pytest

from lcnn_core.cli import main
from lcnn_core.config import ConfigError, load_study
from lcnn_core.studies import attack_effort

KEY = "smoke/standard-s0"


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    root = tmp_path_factory.mktemp("effort")
    assert main(["train", "--preset", "smoke", "--variant", "standard", "--quiet",
                 "--out", str(root / "runs"), "--results", str(root / "results")]) == 0
    return root


def settings(**kw):
    return {**load_study("attack-effort")["settings"], "runs": [KEY], "eps": [0.5, 1.0], **kw}


def test_one_x_effort_at_the_evaluations_seed_reproduces_the_committed_number(smoke, tmp_path):
    table = attack_effort.run(settings(factor=1, seed=0), runs=smoke / "runs", results=smoke / "results",
                              out=tmp_path, log=lambda m: None)
    committed = json.loads((smoke / "results" / KEY / "attacks.json").read_text())
    base = {r["eps"]: r["strongest"] for r in committed["table"]}
    assert list(table.eps) == [0.5, 1.0]
    for r in table.itertuples():
        assert r.base == base[r.eps] and r.stronger == r.base and r.lowered_by == 0 and r.ok


def test_two_x_effort_writes_a_checked_row_and_resumes(smoke, tmp_path):
    s = settings(factor=2, seed=1)
    first = attack_effort.run(s, runs=smoke / "runs", results=smoke / "results", out=tmp_path, log=lambda m: None)
    row = first.iloc[0]
    assert row.tolerance == pytest.approx(100.0 / 16) and row.n_samples == 16
    assert row.lowered_by == pytest.approx(row.base - row.stronger)
    assert row.ok == (row.lowered_by <= row.tolerance + 1e-9)
    assert json.loads(row.settings)["apgd"]["steps"] == 20  # the smoke preset's 10, doubled
    assert json.loads((tmp_path / "provenance.json").read_text())["settings"]["factor"] == 2
    logged = []
    again = attack_effort.run(s, runs=smoke / "runs", results=smoke / "results", out=tmp_path, log=logged.append)
    assert logged == [] and again.equals(pd.read_csv(tmp_path / "summary.csv"))  # nothing rerun


def test_refuses_an_eps_off_the_grid_and_a_foreign_committed_file(smoke, tmp_path):
    with pytest.raises(ConfigError, match="not in its attacks.json grid"):
        attack_effort.run(settings(eps=[0.3]), runs=smoke / "runs", results=smoke / "results", out=tmp_path)
    foreign = tmp_path / "results" / KEY
    foreign.mkdir(parents=True)
    for name in ("attacks.json", "provenance.json"):
        (foreign / name).write_text((smoke / "results" / KEY / name).read_text())
    prov = json.loads((foreign / "provenance.json").read_text())
    (foreign / "provenance.json").write_text(json.dumps(dict(prov, time_utc="another run")))
    with pytest.raises(ConfigError, match="not published from"):
        attack_effort.run(settings(), runs=smoke / "runs", results=tmp_path / "results", out=tmp_path / "out")
    assert not (tmp_path / "out").exists()  # nothing partial
    assert main(["attack-effort", "--runs", str(smoke / "runs"), "--results", str(tmp_path / "results"),
                 "--out", str(tmp_path / "cli")]) == 2  # the preset's cpu16 runs are not there
