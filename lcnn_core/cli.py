"""Command line: ``python -m lcnn_core {train,sweep,campaign,evaluate,yao,tightness,linear-baseline,attack-effort,mode-gap,list-presets}``.

    python -m lcnn_core train --preset cpu-default            # every variant x seed, evaluated, published
    python -m lcnn_core train --preset smoke --variant lcnn --seed 1 --set epochs=3 --resume
    python -m lcnn_core train --preset cpu-default --resume --skip-current   # regenerate what is stale
    torchrun --standalone --nproc_per_node=2 -m lcnn_core train --preset team-cifar10 --variant lcnn
    python -m lcnn_core sweep --preset h100-cifar10-jpeg --gpus 0,1   # one run per GPU at a time
    python -m lcnn_core campaign --preset gpu-campaign --budget 480 --concurrent auto --pack $OUT
    python -m lcnn_core campaign --unpack campaign-gpu-campaign.tar.gz
    python -m lcnn_core evaluate runs/cpu-default/lcnn-s0
    python -m lcnn_core yao [--preset yao-tiny]          # the studies: each driven by its study preset
    python -m lcnn_core tightness [--runs runs]
    python -m lcnn_core linear-baseline
    python -m lcnn_core attack-effort                    # more steps and restarts: does the number fall?
    python -m lcnn_core list-presets
    python -m lcnn_core fingerprints                          # which committed results match the code
    python -m lcnn_core compare --preset P                    # a rerun beside the committed run: matches?

Bad input prints one line ``error: ...`` and exits with status 2.
"""
import argparse
import json
import sys
from pathlib import Path

from . import distributed
from .config import ConfigError, check_variant, load_preset, load_study, parse_set, preset_names, preset_runs, resolve
from .data import DataError
from .campaign import CampaignError
from .compare import CompareError
from .sweep import SweepError, parse_devices, sweep
from .train import CheckpointError, DeadlineReached, TrainingError, is_finished, run_dir_for, train


def _runs(args):
    """(preset, [(run name, config overrides)]) selected by the arguments: the preset's runs
    (config.preset_runs: variants x seeds, or its grid), filtered by --variant / --seed / --run,
    with --set applied on top."""
    preset = load_preset(args.preset)
    overrides = parse_set(args.set)
    if args.variant:
        check_variant(args.variant)
    runs = preset_runs(preset, variants=[args.variant] if args.variant else None,
                       seeds=[args.seed] if args.seed is not None else None)
    if args.run:
        missing = sorted(set(args.run) - {n for n, _ in runs})
        if missing:
            raise ConfigError(f"preset {preset['name']} has no run named {', '.join(missing)}; "
                              f"its runs: {', '.join(n for n, _ in runs)}")
        runs = [(n, o) for n, o in runs if n in args.run]
    if not runs:
        raise ConfigError(f"preset {preset['name']} has no run with these --variant / --seed")
    name = getattr(args, "name", None)
    picked = [(name or n, dict(overrides, **o)) for n, o in runs]  # the grid wins over --set
    for _, run in picked:  # validate every run before training any
        resolve(run, base=preset["config"])
    return preset, picked


def cmd_train(args):
    preset, runs = _runs(args)
    ddp = distributed.context()  # under torchrun: every rank trains each run, then rank 0 evaluates them
    trained = []
    for name, run in runs:
        cfg = resolve(run, base=preset["config"])
        run_dir = run_dir_for(cfg, args.out, preset["name"], name)
        if args.skip_current and is_current(Path(args.results) / preset["name"] / name, cfg, preset["name"]):
            print(f"{preset['name']}/{name}: results current (fingerprint, clean tree, same config); skipped")
            continue
        if not is_finished(run_dir):
            try:
                run_dir = train(cfg, out=args.out, preset=preset["name"], name=name, resume=args.resume,
                                progress=not args.quiet, stop_at=args.stop_at)
            except DeadlineReached as stopped:  # --stop-at: no evaluation, no further runs
                if ddp.is_main:
                    print(stopped)
                break
        trained.append((run_dir, cfg))
        if not ddp.enabled:
            _evaluate(run_dir, cfg, args)
    if ddp.enabled:
        distributed.stop()
        for run_dir, cfg in trained if ddp.is_main else []:
            _evaluate(run_dir, cfg, args)


def is_current(result_dir, cfg, preset):
    """Whether ``result_dir`` (results/<preset>/<run>/) was trained and evaluated by the current code
    (``provenance.report``: both fingerprints match) from a clean tree, with the resolved config
    ``cfg``: what ``train --skip-current`` skips, so that a regeneration resumes on a machine
    whose runs/ is gone."""
    import yaml
    from .provenance import report
    result_dir = Path(result_dir)
    if not (result_dir / "provenance.json").exists() or not (result_dir / "config.yaml").exists():
        return False
    current = bool(report(result_dir.parent).set_index("folder").loc[result_dir.name, "current"])
    clean = json.loads((result_dir / "provenance.json").read_text()).get("git_dirty") is False
    same = yaml.safe_load((result_dir / "config.yaml").read_text()) == yaml.safe_load(
        yaml.safe_dump(dict(cfg, preset=preset), sort_keys=False))
    return current and clean and same


def _evaluate(run_dir, cfg, args):
    if args.no_eval:
        return
    from .evaluate import evaluate_run, publish
    if not (run_dir / "geometry.json").exists():
        print(f"{run_dir}: evaluating")
        evaluate_run(run_dir, device=cfg["device"] if cfg["device"] != "auto" else _auto_device(),
                     progress=not args.quiet)
    print(f"published {publish(run_dir, args.results)}")


def cmd_sweep(args):
    preset, runs = _runs(args)
    sweep(preset, runs, parse_devices(args.gpus), out=args.out, results=args.results, sets=args.set or [],
          evaluate=not args.no_eval)


def cmd_campaign(args):
    import os
    from . import campaign, hosted
    if args.git_sha:
        os.environ["LCNN_GIT_SHA"] = args.git_sha  # for a copy of the tree without .git
    host = hosted.detect()
    out = args.out or str(host.runs)
    results = args.results or str(host.results)
    if args.unpack:
        name = campaign.unpack(args.unpack, results=results, logs_out=out)
        print(f"unpacked {args.unpack} into {Path(results) / name}")
        return
    if args.budget is None:
        raise ConfigError("campaign needs --budget SECONDS (or --unpack ARCHIVE)")
    concurrent = args.concurrent
    if concurrent != "auto" and not (concurrent.isdigit() and int(concurrent) > 0):
        raise ConfigError(f"--concurrent wants a positive number or 'auto', got {concurrent!r}")
    limit = str(args.max_concurrent)
    if limit != "auto" and not (limit.isdigit() and int(limit) > 0):
        raise ConfigError(f"--max-concurrent wants a positive number or 'auto', got {limit!r}")
    args.max_concurrent = campaign.probe_limit() if limit == "auto" else int(limit)
    gpus = hosted.gpu_spec() if args.gpus == "auto" else args.gpus
    print(f"host: {host.name} ({host.note or 'working folder ' + str(host.work)}); runs in {out}, "
          f"results in {results}, devices {gpus}")
    if host.name == "kaggle":
        hosted.seed_from_inputs(host, load_preset(args.preset)["name"])
    if args.probe:
        from .sweep import parse_devices
        preset = load_preset(args.preset)
        runs = campaign.campaign_runs(preset, args.set or [])
        run = next((r for r in runs if r.name == args.probe_run), None) if args.probe_run else runs[0]
        if run is None:
            raise ConfigError(f"preset {preset['name']} has no run {args.probe_run!r}")
        n = args.max_concurrent if concurrent == "auto" else int(concurrent)
        probe = campaign.run_probe(args.preset, run, parse_devices(gpus), n, window=args.probe_window,
                                   sets=args.set or [])
        campaign.write_json(probe, Path(results) / preset["name"] / "probe.json")
        return
    campaign.run_campaign(args.preset, args.budget, concurrent=concurrent, gpus=gpus, out=out,
                          results=results, sets=args.set or [], pack=args.pack, plan_only=args.plan_only,
                          torchrun=args.torchrun, max_concurrent=args.max_concurrent,
                          probe_window=args.probe_window,
                          resumable=args.resumable or (host.name != "local" and host.persistent),
                          hardware=args.hardware, timing=args.timing or [])


def _auto_device():
    import torch
    return "cuda" if torch.cuda.is_available() else "cpu"


def cmd_evaluate(args):
    from .evaluate import evaluate_run, publish
    evaluate_run(args.run_dir, device=args.device or _auto_device(), progress=not args.quiet)
    print(f"published {publish(args.run_dir, args.results)}")


def _study(args, verb):
    preset = load_study(args.preset, parse_set(args.set))
    if preset["study"] != verb:
        raise ConfigError(f"{args.preset} is a {preset['study']} preset: python -m lcnn_core {preset['study']} "
                          f"--preset {args.preset}")
    return preset["settings"]


def cmd_yao(args):
    from .studies import yao
    yao.run(_study(args, "yao"), out=args.out, only=args.only, skip_lcnn=args.skip_lcnn)


def cmd_tightness(args):
    from .studies import tightness_audit
    tightness_audit.run(_study(args, "tightness"), runs=args.runs, results=args.results, out=args.out,
                        only=args.only, log=lambda m: print(m, flush=True))


def cmd_linear_baseline(args):
    from .studies import linear_baseline
    linear_baseline.run(_study(args, "linear-baseline"), out=args.out)


def cmd_attack_effort(args):
    from .studies import attack_effort
    attack_effort.run(_study(args, "attack-effort"), runs=args.runs, results=args.results, out=args.out,
                      log=lambda m: print(m, flush=True))


def cmd_mode_gap(args):
    from .studies import mode_gap
    mode_gap.run(_study(args, "mode-gap"), runs=args.runs, out=args.out, log=lambda m: print(m, flush=True))


def cmd_fingerprints(args):
    from .provenance import code_fingerprint, report
    table = report(args.results)
    print(f"current code fingerprint: {code_fingerprint()}; "
          f"{int(table.current.sum())} of {len(table)} runs match")
    print(table.fillna("not recorded").to_string(index=False))


def cmd_compare(args):
    from .compare import committed_results, compare, record, summary
    tmp, committed = committed_results(args.preset, args.against) if not args.committed else (None, Path(args.committed))
    try:
        table = compare(Path(args.results) / args.preset, committed, runs=args.run)
        print(table.round(4).to_string(index=False))
        for line in summary(table):
            print(line)
        if args.record:
            print(f"recorded {record(table, args.preset, Path(args.results) / args.preset, committed, args.results, args.note)}")
    finally:
        if tmp is not None:
            tmp.cleanup()
    if args.strict and (table["verdict"] != "matches").any():
        return 1


def cmd_list(args):
    for name in preset_names():
        try:
            p = load_preset(name)
        except ConfigError:  # a study preset
            p = load_study(name)
            print(f"{name:18s} {' '.join(p['description'].split())}")
            print(f"{'':18s} study: python -m lcnn_core {p['study']} --preset {name}")
            continue
        print(f"{name:18s} {' '.join(p['description'].split())}")
        runs = preset_runs(p)
        print(f"{'':18s} variants: {', '.join(p['variants'])}; seeds: {p['seeds']}; {len(runs)} runs"
              + (f" ({', '.join(n for n, _ in runs)})" if p.get("grid") else ""))


def _study_parser(sub, verb, help, preset_help=None, reads=None):
    """The subcommand of one study: --preset (default: the verb's own), --set, and --out
    (results/<verb>); with ``reads`` (the result file it reads per run) also --runs and --results,
    for a study over trained runs."""
    p = sub.add_parser(verb, help=help)
    p.add_argument("--preset", default=verb, help=preset_help)
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a setting (repeatable)")
    if reads:
        p.add_argument("--runs", default="runs", help="where the trained run folders (model.pt) are")
        p.add_argument("--results", default="results", help=f"where the runs' {reads} are")
    p.add_argument("--out", default=f"results/{verb}")
    return p


def parser():
    ap = argparse.ArgumentParser(prog="python -m lcnn_core", description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="command", required=True)
    t = sub.add_parser("train", help="train (and evaluate) the runs of a preset")
    t.add_argument("--preset", required=True)
    t.add_argument("--variant", help="one training variant (default: all of the preset's)")
    t.add_argument("--seed", type=int, help="one seed (default: all of the preset's)")
    t.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a config key (repeatable)")
    # --run-name too: torchrun reads a bare --run anywhere on its command line as its own --run-path
    t.add_argument("--run", "--run-name", action="append", metavar="NAME", help="one run of the preset by name (repeatable)")
    t.add_argument("--name", help="run folder name (default: the preset's, VARIANT-sSEED without a grid)")
    t.add_argument("--stop-at", type=float, metavar="UNIX_TIME",
                   help="stop cleanly (checkpoint kept, no evaluation) before an epoch that would end after this time")
    t.add_argument("--out", default="runs", help="where run folders (with weights) go")
    t.add_argument("--results", default="results", help="where the small result files are published")
    t.add_argument("--resume", action="store_true", help="continue an unfinished run from its checkpoint")
    t.add_argument("--skip-current", action="store_true",
                   help="skip a run whose published results match the current code, a clean tree and its config")
    t.add_argument("--no-eval", action="store_true", help="train only")
    t.add_argument("--quiet", action="store_true")
    t.set_defaults(func=cmd_train)
    s = sub.add_parser("sweep", help="every run of a preset as subprocesses, one per device at a time")
    s.add_argument("--preset", required=True)
    s.add_argument("--gpus", default="0", help="GPU ids (0,1), 'cpu' or 'cpu:N' for N CPU workers (default: 0)")
    s.add_argument("--variant", help="one training variant (default: all of the preset's)")
    s.add_argument("--seed", type=int, help="one seed (default: all of the preset's)")
    s.add_argument("--run", action="append", metavar="NAME", help="one run of the preset by name (repeatable)")
    s.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a config key (repeatable)")
    s.add_argument("--out", default="runs", help="where run folders (and logs/ with one log per run) go")
    s.add_argument("--results", default="results", help="where the small result files are published")
    s.add_argument("--no-eval", action="store_true", help="train only")
    s.set_defaults(func=cmd_sweep)
    e = sub.add_parser("evaluate", help="geometry table row, gradient robustness and PGD of a finished run")
    e.add_argument("run_dir")
    e.add_argument("--device")
    e.add_argument("--results", default="results")
    e.add_argument("--quiet", action="store_true")
    e.set_defaults(func=cmd_evaluate)
    y = _study_parser(sub, "yao", "Yao et al.'s batch-size study at CPU scale (results/yao/)",
                      preset_help="a yao study preset (default: yao; yao-tiny: seconds)")
    y.add_argument("--only", choices=["matched", "spread", "lcnn"],
                   help="run one stage alone (appends its CSV to --out; spread retrains the batch-32 seed-0 M1)")
    y.add_argument("--skip-lcnn", action="store_true")
    y.set_defaults(func=cmd_yao)
    ti = _study_parser(sub, "tightness", "how loose the provable bounds are on trained runs (results/tightness/)",
                       reads="geometry.json")
    ti.add_argument("--only", default="", help="audit only runs whose <preset>/<run> contains this")
    ti.set_defaults(func=cmd_tightness)
    lb = _study_parser(sub, "linear-baseline", "softmax regression on the pixels (results/linear-baseline/)")
    lb.set_defaults(func=cmd_linear_baseline)
    ae = _study_parser(sub, "attack-effort", "the strongest attack again with more effort (results/attack-effort/)",
                       reads="attacks.json")
    ae.set_defaults(func=cmd_attack_effort)
    mg = _study_parser(sub, "mode-gap", "training against eval mode on retrained MNIST ablation runs (results/mode-gap/)")
    mg.add_argument("--runs", default="runs", help="where the retrained run folders go (a finished one is reused)")
    mg.set_defaults(func=cmd_mode_gap)
    f = sub.add_parser("fingerprints", help="each results folder's code fingerprint and whether it is current")
    f.add_argument("--results", default="results")
    f.set_defaults(func=cmd_fingerprints)
    c = sub.add_parser("campaign", help="as many of a preset's runs as fit in a time budget, packed for the way back")
    c.add_argument("--preset", default="gpu-campaign", help="a preset name or a .yaml file (default: gpu-campaign)")
    c.add_argument("--budget", type=float, metavar="SECONDS", help="wall time of the whole call, packing included")
    c.add_argument("--concurrent", default="1", help="processes sharing each GPU, or 'auto': probe 1..--max-concurrent first")
    c.add_argument("--max-concurrent", default="auto",
                   help="the probe's most processes per GPU, or 'auto': CPU cores // 2, at most 8 (campaign.probe_limit)")
    c.add_argument("--gpus", default="auto", help="GPU ids (0,1), 'cpu', 'cpu:N' or auto (every visible GPU, else cpu)")
    c.add_argument("--torchrun", action="store_true", help="each run data-parallel over all --gpus (torchrun)")
    c.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a config key of every run")
    c.add_argument("--out", help="run folders with checkpoints (default: runs, or the Kaggle/Colab working folder)")
    c.add_argument("--results", help="published results (default: results, or the Kaggle/Colab working folder)")
    c.add_argument("--pack", metavar="DIR", help="pack this call's small files into DIR/campaign-PRESET.tar.gz (+ .md5)")
    c.add_argument("--plan-only", action="store_true", help="print the plan and stop")
    c.add_argument("--hardware", metavar="GPU_NAME", help="with --plan-only: plan as if on this GPU (e.g. 'Tesla T4')")
    c.add_argument("--timing", action="append", metavar="KEY=SECONDS",
                   help="override a planning estimate, e.g. eval_s=60 or startup_s=10 (campaign.DEFAULT_TIMINGS)")
    c.add_argument("--resumable", action="store_true",
                   help="--out outlives this call: start runs that cannot finish too (on by itself on Kaggle, Colab with Drive)")
    c.add_argument("--probe", action="store_true", help="measure images/s for 1..N processes sharing the GPU, then stop")
    c.add_argument("--probe-run", help="the run whose model the probe trains (default: the preset's first)")
    c.add_argument("--probe-window", type=float, default=5.0, metavar="SECONDS")
    c.add_argument("--unpack", metavar="ARCHIVE", help="check, extract and merge a packed archive into --results")
    c.add_argument("--git-sha", help="the code's git sha, for provenance where .git did not travel")
    c.set_defaults(func=cmd_campaign)
    cm = sub.add_parser("compare", help="a rerun's headline numbers beside the committed run's: matches, or differs beyond tolerance")
    cm.add_argument("--preset", required=True)
    cm.add_argument("--run", action="append", help="a run folder to compare (repeatable; default: every rerun with a committed twin)")
    cm.add_argument("--results", default="results", help="where the reruns were published (train writes results/)")
    cm.add_argument("--against", default="HEAD", help="the git revision whose results/<preset>/ is the committed one")
    cm.add_argument("--committed", help="a folder of committed runs instead of --against (no git needed)")
    cm.add_argument("--strict", action="store_true", help="exit 1 when a run differs beyond tolerance")
    cm.add_argument("--record", action="store_true",
                    help="write results/equivalence/PRESET.json: the comparison and both code fingerprints")
    cm.add_argument("--note", help="with --record: how the reruns were made (a sentence kept in the record)")
    cm.set_defaults(func=cmd_compare)
    ls = sub.add_parser("list-presets", help="the presets and what they run")
    ls.set_defaults(func=cmd_list)
    return ap


def main(argv=None):
    args = parser().parse_args(argv)
    try:
        rc = args.func(args)
    except (ConfigError, DataError, CheckpointError, TrainingError, SweepError, CampaignError, CompareError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return rc or 0


if __name__ == "__main__":
    sys.exit(main())
