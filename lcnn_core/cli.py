"""Command line: ``python -m lcnn_core {train,sweep,evaluate,yao,tightness,linear-baseline,list-presets}``.

    python -m lcnn_core train --preset cpu-default            # every variant x seed, evaluated, published
    python -m lcnn_core train --preset smoke --variant lcnn --seed 1 --set epochs=3 --resume
    torchrun --standalone --nproc_per_node=2 -m lcnn_core train --preset team-cifar10 --variant lcnn
    python -m lcnn_core sweep --preset h100-cifar10-jpeg --gpus 0,1   # one run per GPU at a time
    python -m lcnn_core evaluate runs/cpu-default/lcnn-s0
    python -m lcnn_core yao [--preset yao-tiny]          # the studies: each driven by its study preset
    python -m lcnn_core tightness [--runs runs]
    python -m lcnn_core linear-baseline
    python -m lcnn_core list-presets
    python -m lcnn_core fingerprints                          # which committed results match the code

Bad input prints one line ``error: ...`` and exits with status 2.
"""
import argparse
import sys

from . import distributed
from .config import ConfigError, check_variant, load_preset, load_study, parse_set, preset_names, preset_runs, resolve
from .data import DataError
from .sweep import SweepError, parse_devices, sweep
from .train import CheckpointError, TrainingError, is_finished, run_dir_for, train


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
        if not is_finished(run_dir):
            run_dir = train(cfg, out=args.out, preset=preset["name"], name=name, resume=args.resume,
                            progress=not args.quiet)
        trained.append((run_dir, cfg))
        if not ddp.enabled:
            _evaluate(run_dir, cfg, args)
    if ddp.enabled:
        distributed.stop()
        for run_dir, cfg in trained if ddp.is_main else []:
            _evaluate(run_dir, cfg, args)


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


def cmd_fingerprints(args):
    from .provenance import code_fingerprint, report
    table = report(args.results)
    print(f"current code fingerprint: {code_fingerprint()}; "
          f"{int(table.current.sum())} of {len(table)} runs match")
    print(table.fillna("not recorded").to_string(index=False))


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


def parser():
    ap = argparse.ArgumentParser(prog="python -m lcnn_core", description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="command", required=True)
    t = sub.add_parser("train", help="train (and evaluate) the runs of a preset")
    t.add_argument("--preset", required=True)
    t.add_argument("--variant", help="one training variant (default: all of the preset's)")
    t.add_argument("--seed", type=int, help="one seed (default: all of the preset's)")
    t.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a config key (repeatable)")
    t.add_argument("--run", action="append", metavar="NAME", help="one run of the preset by name (repeatable)")
    t.add_argument("--name", help="run folder name (default: the preset's, VARIANT-sSEED without a grid)")
    t.add_argument("--out", default="runs", help="where run folders (with weights) go")
    t.add_argument("--results", default="results", help="where the small result files are published")
    t.add_argument("--resume", action="store_true", help="continue an unfinished run from its checkpoint")
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
    y = sub.add_parser("yao", help="Yao et al.'s batch-size study at CPU scale (results/yao/)")
    y.add_argument("--preset", default="yao", help="a yao study preset (default: yao; yao-tiny: seconds)")
    y.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a setting (repeatable)")
    y.add_argument("--out", default="results/yao")
    y.add_argument("--only", choices=["matched", "spread", "lcnn"],
                   help="run one stage alone (appends its CSV to --out; spread retrains the batch-32 seed-0 M1)")
    y.add_argument("--skip-lcnn", action="store_true")
    y.set_defaults(func=cmd_yao)
    ti = sub.add_parser("tightness", help="how loose the provable bounds are on trained runs (results/tightness/)")
    ti.add_argument("--preset", default="tightness")
    ti.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a setting (repeatable)")
    ti.add_argument("--runs", default="runs", help="where the trained run folders (model.pt) are")
    ti.add_argument("--results", default="results", help="where the runs' geometry.json are")
    ti.add_argument("--out", default="results/tightness")
    ti.add_argument("--only", default="", help="audit only runs whose <preset>/<run> contains this")
    ti.set_defaults(func=cmd_tightness)
    lb = sub.add_parser("linear-baseline", help="softmax regression on the pixels (results/linear-baseline/)")
    lb.add_argument("--preset", default="linear-baseline")
    lb.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a setting (repeatable)")
    lb.add_argument("--out", default="results/linear-baseline")
    lb.set_defaults(func=cmd_linear_baseline)
    f = sub.add_parser("fingerprints", help="each results folder's code fingerprint and whether it is current")
    f.add_argument("--results", default="results")
    f.set_defaults(func=cmd_fingerprints)
    ls = sub.add_parser("list-presets", help="the presets and what they run")
    ls.set_defaults(func=cmd_list)
    return ap


def main(argv=None):
    args = parser().parse_args(argv)
    try:
        args.func(args)
    except (ConfigError, DataError, CheckpointError, TrainingError, SweepError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
