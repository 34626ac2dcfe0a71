"""Does more attack effort lower the strongest attack's number? (issue 18; lcnn_core.apgd)

A robust accuracy is trustworthy only if a stronger attack does not lower it further
(Carlini et al. 2019). The evaluation's own check (``eval_attack_check``) reruns the middle eps
of the run's grid, which on cifar10-jpeg-cpu16 is eps = 0.5, where 1.5 % of the images are left:
a number that can hardly fall. This study reruns it where the number is large enough to fall.

For each run of the study preset (runs/<preset>/<run>/ with model.pt) and each eps of the
preset, on the run's own fixed APGD subset (the evaluation's stratified sample):

* ``base``:     the strongest attack's robust accuracy (%) that the run's evaluation committed
                (results/<preset>/<run>/attacks.json), made with the run's settings;
* ``stronger``: ``apgd.more_effort_check``, the same attacks with ``factor`` x the steps and
                restarts and a new seed (``seed``); ``ok`` when it is not lower by more than
                one image of the subset.

The committed file must come from the model under runs/ (equal provenance.json), else the
study stops with one line. With ``factor: 1`` and ``seed: 0`` it reproduces ``base`` exactly,
which is how the test checks that the subset and the settings are the evaluation's.

Writes results/attack-effort/summary.csv (one row per run and eps, rewritten after each) and
provenance.json; finished rows are kept on a rerun, so a killed study resumes:

    python -m lcnn_core attack-effort [--runs runs] [--results results] [--set eps=[0.25]]
"""
import json
import time
from pathlib import Path

import pandas as pd
import torch

from ..apgd import more_effort_check
from ..atomic import atomic_path, write_json
from ..config import ConfigError
from ..evaluate import _eval_batches
from ..provenance import provenance


def committed_attacks(run_dir, results):
    """The run's published attacks.json, after checking that it was made from this run_dir."""
    run_dir = Path(run_dir)
    published = Path(results) / run_dir.parent.name / run_dir.name
    for name in ("attacks.json", "provenance.json"):
        if not (published / name).exists():
            raise ConfigError(f"{published} has no {name}: evaluate {run_dir} with eval_apgd_samples set first")
    if json.loads((published / "provenance.json").read_text()) != json.loads((run_dir / "provenance.json").read_text()):
        raise ConfigError(f"{published} was not published from {run_dir} (provenance.json differs)")
    return json.loads((published / "attacks.json").read_text())


def check_run(run_dir, eps_list, results="results", factor=2, seed=1, progress=False):
    """One row per eps: the committed strongest accuracy and the more-effort rerun of it."""
    from ..train import load_run
    attacks = committed_attacks(run_dir, results)
    model, cfg, data = load_run(run_dir, "cpu")
    batches = _eval_batches(data, cfg["eval_apgd_samples"], cfg["eval_batch_size"])
    n = sum(len(y) for _, y in batches)
    if n != attacks["n_samples"]:
        raise ConfigError(f"{run_dir}: {n} APGD images, but its attacks.json has {attacks['n_samples']}")
    settings = dict(pgd_steps=cfg["eval_pgd_steps"], pgd_restarts=cfg["eval_pgd_restarts"],
                    apgd_steps=cfg["eval_apgd_steps"], apgd_restarts=cfg["eval_apgd_restarts"],
                    apgd_targets=cfg["eval_apgd_targets"])
    rows = []
    for eps in eps_list:
        base = [r for r in attacks["table"] if abs(r["eps"] - eps) < 1e-9]
        if not base:
            raise ConfigError(f"{run_dir}: eps {eps} is not in its attacks.json grid "
                              f"{[r['eps'] for r in attacks['table']]}")
        t0 = time.perf_counter()
        check = more_effort_check(model, batches, eps, base[0]["strongest"], factor=factor, seed=seed,
                                  progress=progress, **settings)
        rows.append(dict(preset=run_dir.parent.name, run=run_dir.name, variant=cfg["variant"], seed=cfg["seed"],
                         eps=float(eps), n_samples=n, clean=attacks["clean_accuracy"], base=check["base"],
                         stronger=check["stronger"], lowered_by=check["lowered_by"],
                         tolerance=check["tolerance"], ok=check["ok"], factor=factor, attack_seed=seed,
                         settings=json.dumps(check["settings"], sort_keys=True),
                         wall_time_s=round(time.perf_counter() - t0, 1)))
    return rows


def run(settings, runs="runs", results="results", out="results/attack-effort", log=print):
    """Check every run of ``settings["runs"]`` at every eps of ``settings["eps"]``; rows already in
    ``out``/summary.csv with the same factor and seed are kept. Returns the summary table."""
    torch.set_num_threads(settings["threads"])
    out = Path(out)
    missing = [k for k in settings["runs"] if not (Path(runs) / k / "model.pt").exists()]
    if missing:
        raise ConfigError(f"{len(missing)} run(s) of the study not finished under {runs}: {', '.join(missing)}")
    eps_list = [float(e) for e in settings["eps"]]
    done = pd.read_csv(out / "summary.csv").to_dict("records") if (out / "summary.csv").exists() else []
    done = [r for r in done if r["factor"] == settings["factor"] and r["attack_seed"] == settings["seed"]]
    recorded = {k: settings[k] for k in ("runs", "eps", "factor", "seed")}  # what provenance.json records
    for key in settings["runs"]:
        todo = [e for e in eps_list if not any(f"{r['preset']}/{r['run']}" == key and abs(r["eps"] - e) < 1e-9
                                               for r in done)]
        if not todo:
            continue
        rows = check_run(Path(runs) / key, todo, results, settings["factor"], settings["seed"],
                         progress=settings["progress"])
        done += rows
        with atomic_path(out / "summary.csv") as tmp:
            pd.DataFrame(done).to_csv(tmp, index=False)
        write_json(provenance("cpu", script="lcnn_core/studies/attack_effort.py", settings=recorded,
                              wall_time_s=round(sum(r["wall_time_s"] for r in done), 1)),
                   out / "provenance.json", default=str)
        for r in rows:
            log(f"{key} eps {r['eps']:g}: {r['base']:.1f} % -> {r['stronger']:.1f} % with {r['factor']}x "
                f"({'ok' if r['ok'] else 'LOWERED'}, {r['wall_time_s']} s)")
    return pd.DataFrame(done)
