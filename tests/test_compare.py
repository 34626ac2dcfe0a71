"""compare on made-up run folders: the seed spread sets the tolerance, a record marks a preset's
old-fingerprint runs equivalent under the new one (compare.staleness), and only when every rerun matched."""
import json

import pandas as pd
import pytest
import yaml

from lcnn_core import compare as cmp
from lcnn_core.provenance import code_fingerprint


def _run(root, name, acc, cf, fp, n_test=1000):
    d = root / name
    d.mkdir(parents=True)
    pd.DataFrame(dict(epoch=[1, 2], test_acc=[50.0, acc])).to_csv(d / "history.csv", index=False)
    (d / "config.yaml").write_text(yaml.safe_dump(dict(dataset="mnist5k", n_test=n_test)))
    (d / "geometry.json").write_text(json.dumps(dict(curvature_loss_mean=cf, curvature_logit_mean=cf,
                                                     provenance=dict(code_fingerprint=fp))))
    (d / "provenance.json").write_text(json.dumps(dict(code_fingerprint=fp, hardware="CPU x, 1 threads")))


def test_the_seed_spread_sets_the_tolerance_and_a_single_seed_gets_the_float_floor(tmp_path):
    old, new = tmp_path / "old" / "p", tmp_path / "new" / "p"
    for s, acc in enumerate([90.0, 91.0, 92.0]):
        _run(old, f"lcnn-s{s}", acc, 10.0 + s, "aaaa")
    _run(old, "cure-s0", 80.0, 5.0, "aaaa")
    _run(new, "lcnn-s0", 92.5, 10.5, "bbbb")    # 2.5 points off: within 2 sqrt 2 x sd 1.0 = 2.83
    _run(new, "cure-s0", 80.5, 5.0, "bbbb")     # one seed: the floor is one image of 1,000 = 0.1 point
    t = cmp.compare(new, old).set_index(["run", "quantity"])
    assert t.loc[("lcnn-s0", "test accuracy %"), "tolerance"] == pytest.approx(2 * 2 ** 0.5)
    assert t.loc[("lcnn-s0", "test accuracy %"), "tolerance_from"] == "seed spread"
    assert t.loc[("lcnn-s0", "test accuracy %"), "verdict"] == "matches"
    assert t.loc[("cure-s0", "test accuracy %"), "tolerance"] == pytest.approx(0.1)
    assert t.loc[("cure-s0", "test accuracy %"), "verdict"] == "differs beyond tolerance"
    (tmp_path / "nowhere").mkdir()
    with pytest.raises(cmp.CompareError, match="committed twin"):
        cmp.compare(new, tmp_path / "nowhere")


@pytest.mark.parametrize("all_match", [True, False])
def test_a_record_makes_the_presets_old_runs_equivalent_only_when_every_rerun_matched(tmp_path, all_match):
    results = tmp_path / "results"
    current = code_fingerprint()
    for s in range(3):
        _run(results / "p", f"lcnn-s{s}", 90.0 + s, 10.0, "oldfp")
    _run(results / "q", "lcnn-s0", 90.0, 10.0, "oldfp")  # another preset, no record: stale
    rerun = tmp_path / "rerun" / "p"
    _run(rerun, "lcnn-s0", 90.0 if all_match else 99.0, 10.0, current)
    table = cmp.compare(rerun, results / "p")
    path = cmp.record(table, "p", rerun, results / "p", out_root=results)
    doc = json.loads(path.read_text())
    assert doc["from_fingerprints"] == ["oldfp"] and doc["to_fingerprint"] == current
    assert doc["all_match"] is all_match
    st = cmp.staleness(results).set_index("folder").status
    assert (st[["p/lcnn-s0", "p/lcnn-s1", "p/lcnn-s2"]] == ("equivalent" if all_match else "stale")).all()
    assert st["q/lcnn-s0"] == "stale"
