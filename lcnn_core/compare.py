"""Does a rerun reproduce the committed run? Its headline numbers beside the committed ones,
with a tolerance and a verdict per run (``python -m lcnn_core compare``).

``git diff results/`` after a rerun shows every history row changed: a run retrained with
another thread count sums its floats in another order, the epochs in between wander (up to
tens of points of test accuracy at an early epoch), and only the end is comparable. So the
check reads the end: per run, the final test accuracy, E C_f of the loss and of the true-class
logit, and the accuracy under the strongest attack (APGD's table) and under our PGD at the
smallest radius of each grid, and judges each difference against

    tolerance = max(float floor, 2 sqrt(2) s),

with s the standard deviation of that number over the committed seeds of the same model in the
preset: two runs that differ only as two seeds do differ by more than 2 sqrt(2) s about one time
in twenty. The float floor is what re-evaluating the same weights on another thread count moved
(tests/test_rerun.py: C_f within 2 %), one test image for an accuracy, one image of the attack's
subset for a robust accuracy. A number that only one seed has gets the floor alone.
A run matches when every number is within its tolerance, else it "differs beyond tolerance".
"""
import json
import re
import subprocess
import tarfile
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

from .report import TEST_IMAGES

C_F_RTOL = 2e-2  # tests/test_rerun.py: C_f of the same weights on 1 vs 2 threads
SPREAD_FACTOR = 2 * np.sqrt(2)  # ~95 % of the difference of two independent runs, each with sd s
QUANTITIES = ("test accuracy %", "E C_f (loss)", "E C_f (logit)", "strongest attack %", "PGD %")


class CompareError(ValueError):
    """Nothing to compare (no committed runs, no reruns): the CLI prints one line."""


def headline(run_dir):
    """{quantity: (value, float floor)} of one run folder; quantities whose file is missing are left out."""
    run_dir = Path(run_dir)
    out = {}
    hist = run_dir / "history.csv"
    geo = run_dir / "geometry.json"
    if hist.is_file():
        acc = float(pd.read_csv(hist)["test_acc"].iloc[-1])
        n_test = _n_test(run_dir)
        out["test accuracy %"] = (acc, 100.0 / n_test if n_test else 0.0)
    if geo.is_file():
        g = json.loads(geo.read_text())
        for output in ("loss", "logit"):
            value = g.get(f"curvature_{output}_mean")
            if value is not None:
                out[f"E C_f ({output})"] = (float(value), C_F_RTOL * abs(float(value)))
    out.update(_attacks(run_dir))
    return out


def _n_test(run_dir):
    """Test images behind the final accuracy: the run's n_test, else its dataset's whole test split."""
    import yaml
    cfg = run_dir / "config.yaml"
    if not cfg.is_file():
        return None
    cfg = yaml.safe_load(cfg.read_text())
    return cfg.get("n_test") or TEST_IMAGES.get(cfg.get("dataset"))


def _attacks(run_dir):
    """{quantity: (accuracy % at the grid's smallest eps, one image in points)}: the strongest
    attack (attacks.json: APGD-CE, APGD-T and our PGD) and our PGD (pgd.json)."""
    out = {}
    f = run_dir / "attacks.json"
    if f.is_file():
        d = json.loads(f.read_text())
        row = min(d["table"], key=lambda r: r["eps"])
        out["strongest attack %"] = (float(row["strongest"]), 100.0 / d["n_samples"])
    f = run_dir / "pgd.json"
    if f.is_file():
        d = json.loads(f.read_text())
        _, acc = min(((float(e), a) for e, a in d["robust_accuracy"].items()), key=lambda t: t[0])
        out["PGD %"] = (float(acc), 100.0 / d["n_samples"])
    return out


def model_of(run):
    """The run's model without its seed: 'lcnn-lam1e-2-s1' -> 'lcnn-lam1e-2'."""
    return re.sub(r"-s\d+$", "", run)


def seed_spread(committed_root):
    """{(model, quantity): sd over the committed seeds} (models with at least two seeds)."""
    rows = []
    for d in sorted(Path(committed_root).iterdir()):
        if d.is_dir():
            for q, (v, _) in headline(d).items():
                rows.append(dict(model=model_of(d.name), quantity=q, value=v))
    if not rows:
        return {}
    df = pd.DataFrame(rows)
    sd = df.groupby(["model", "quantity"])["value"].agg(["std", "count"])
    return {k: float(r["std"]) for k, r in sd.iterrows() if r["count"] >= 2}


def compare(rerun_root, committed_root, runs=None):
    """One row per (run, quantity): committed, rerun, difference, tolerance and where it comes
    from, within or not; plus ``verdict`` per run ("matches" / "differs beyond tolerance").
    ``runs``: the run folders to compare (default: every run in both roots)."""
    rerun_root, committed_root = Path(rerun_root), Path(committed_root)
    names = runs or sorted(d.name for d in rerun_root.iterdir() if (d / "history.csv").is_file()
                           and (committed_root / d.name / "history.csv").is_file())
    if not names:
        raise CompareError(f"no run of {rerun_root} has a committed twin in {committed_root}")
    spread = seed_spread(committed_root)
    rows = []
    for run in names:
        new, old = headline(rerun_root / run), headline(committed_root / run)
        if not new:
            raise CompareError(f"{rerun_root / run} holds no results to compare")
        for q in QUANTITIES:
            if q not in new or q not in old:
                continue
            (v_new, floor_new), (v_old, floor_old) = new[q], old[q]
            s = spread.get((model_of(run), q))
            floor = max(floor_new, floor_old)
            tol, source = floor, "float order"
            if s is not None and SPREAD_FACTOR * s > floor:
                tol, source = SPREAD_FACTOR * s, "seed spread"
            rows.append(dict(run=run, quantity=q, committed=v_old, rerun=v_new, difference=v_new - v_old,
                             tolerance=tol, tolerance_from=source, within=abs(v_new - v_old) <= tol))
    df = pd.DataFrame(rows)
    verdict = df.groupby("run")["within"].all().map({True: "matches", False: "differs beyond tolerance"})
    return df.assign(verdict=df["run"].map(verdict))


def committed_results(preset, ref="HEAD", repo="."):
    """A temporary folder holding results/<preset>/ as committed at ``ref`` (git archive); the
    caller removes it (``.cleanup()`` of the returned TemporaryDirectory)."""
    tmp = tempfile.TemporaryDirectory()
    path = f"results/{preset}"
    try:
        archive = subprocess.run(["git", "-C", str(repo), "archive", "--format=tar", ref, path],
                                 capture_output=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError) as e:
        tmp.cleanup()
        err = getattr(e, "stderr", b"") or b""
        reason = err.decode(errors="replace").strip().splitlines()[:1] or [type(e).__name__]
        raise CompareError(f"cannot read the committed {path} at {ref}: {reason[0]}") from None
    with tarfile.open(fileobj=__import__("io").BytesIO(archive)) as tar:
        tar.extractall(tmp.name, filter="data")
    return tmp, Path(tmp.name) / path


def summary(df):
    """One line per run: its verdict and the numbers that differ beyond tolerance."""
    lines = []
    for run, g in df.groupby("run", sort=False):
        bad = g[~g["within"]]
        detail = "; ".join(f"{r.quantity} {r.committed:.4g} -> {r.rerun:.4g} (tolerance {r.tolerance:.2g}, "
                           f"{r.tolerance_from})" for r in bad.itertuples())
        lines.append(f"{run}: {g['verdict'].iloc[0]}" + (f": {detail}" if detail else ""))
    return lines


def record(table, preset, rerun_root, committed_root, out_root="results", note=None):
    """Write results/equivalence/<preset>.json: the comparison, the fingerprints the committed runs
    were made with (trained and evaluated) and the one the reruns were made with. Where every run
    matches, the book reports the preset's other runs of those fingerprints as *equivalent under
    the new fingerprint* (``staleness``) instead of stale."""
    from .atomic import write_json
    runs = sorted(set(table["run"]))

    def fingerprints(root):
        found = set()
        for run in runs:
            prov = json.loads((Path(root) / run / "provenance.json").read_text())
            found.add(prov.get("code_fingerprint"))
            geo = Path(root) / run / "geometry.json"
            if geo.is_file():
                found.add(json.loads(geo.read_text()).get("provenance", {}).get("code_fingerprint"))
        return sorted(f for f in found if f)
    new = fingerprints(rerun_root)
    if len(new) != 1:
        raise CompareError(f"the reruns were made by {len(new)} code fingerprints ({', '.join(new) or 'none'}); "
                           "an equivalence record needs one")
    provs = [json.loads((Path(rerun_root) / r / "provenance.json").read_text()) for r in runs]
    doc = dict(preset=preset, runs=runs, from_fingerprints=fingerprints(committed_root), to_fingerprint=new[0],
               all_match=bool((table["verdict"] == "matches").all()),
               rerun_hardware=sorted({p.get("hardware") for p in provs}),
               rerun_git_sha=sorted({p.get("git_sha") for p in provs if p.get("git_sha")}),
               rerun_git_dirty=any(p.get("git_dirty") for p in provs), note=note,
               rule=__doc__.split("\n\n")[1].replace("\n", " "), table=table.to_dict("records"))
    path = Path(out_root) / "equivalence" / f"{preset}.json"
    write_json(doc, path)
    return path


def staleness(root=None):
    """``provenance.report`` with a ``status`` per run: *current* (both fingerprints are the code's),
    *equivalent* (its preset has an equivalence record, ``compare.record``, from the run's
    fingerprints to the current one in which every rerun matched), else *stale*; and ``equivalence``,
    the record's file where one applies."""
    from .provenance import code_fingerprint, report as fingerprint_report
    from .report import results_root
    root = Path(root) if root else results_root()
    current = code_fingerprint()
    table = fingerprint_report(root, current=current)
    records = {}
    for f in sorted((root / "equivalence").glob("*.json")):
        d = json.loads(f.read_text())
        if d.get("to_fingerprint") == current and d.get("all_match"):
            records[d["preset"]] = (set(d["from_fingerprints"]), str(f.relative_to(root)))

    def status(row):
        if row.current:
            return "current", None
        fps, path = records.get(row.folder.split("/")[0], (set(), None))
        made = {row.trained_with} | ({row.evaluated_with} if row.evaluated_with else set())
        if path and made <= fps:
            return "equivalent", path
        return "stale", None
    st = [status(r) for r in table.itertuples()]
    return table.assign(status=[s for s, _ in st], equivalence=[p for _, p in st])
