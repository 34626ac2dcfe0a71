"""Command line: ``python -m lcnn_core {train,sweep,evaluate,list-presets}``.

    python -m lcnn_core train --preset cpu-default            # every variant x seed, evaluated, published
    python -m lcnn_core train --preset smoke --variant lcnn --seed 1 --set epochs=3 --resume
    torchrun --standalone --nproc_per_node=2 -m lcnn_core train --preset team-cifar10 --variant lcnn
    python -m lcnn_core sweep --preset h100-cifar10-jpeg --gpus 0,1   # one run per GPU at a time
    python -m lcnn_core evaluate runs/cpu-default/lcnn-s0
    python -m lcnn_core list-presets
    python -m lcnn_core fingerprints                          # which committed results match the code

Bad input prints one line ``error: ...`` and exits with status 2.
"""
import argparse
import sys

from . import distributed
from .config import ConfigError, check_variant, load_preset, parse_set, preset_names, resolve
from .data import DataError
from .sweep import SweepError, parse_devices, sweep
from .train import CheckpointError, TrainingError, is_finished, run_dir_for, train


def _runs(args):
    """(preset, [config overrides per run]) selected by the arguments."""
    preset = load_preset(args.preset)
    overrides = parse_set(args.set)
    variants = [args.variant] if args.variant else preset.get("variants") or [preset["config"]["variant"]]
    seeds = [args.seed] if args.seed is not None else preset.get("seeds") or [0]
    for v in variants:
        check_variant(v)
    grid = preset["grid"]
    if args.tag is not None:
        grid = [e for e in grid if e.get("tag", "") == args.tag]
        if not grid:
            tags = [e.get("tag", "") for e in preset["grid"]]
            raise ConfigError(f"preset {preset['name']} has no grid entry {args.tag!r}; tags: {', '.join(tags)}")
    runs = [dict(entry, **overrides, variant=v, seed=s) for v in variants for entry in grid for s in seeds]
    for run in runs:  # validate every run before training any
        resolve(run, base=preset["config"])
    return preset, runs


def cmd_train(args):
    preset, runs = _runs(args)
    ddp = distributed.context()  # under torchrun: every rank trains each run, then rank 0 evaluates them
    trained = []
    for run in runs:
        cfg = resolve(run, base=preset["config"])
        run_dir = run_dir_for(cfg, args.out, preset["name"], args.name)
        if not is_finished(run_dir):
            run_dir = train(cfg, out=args.out, preset=preset["name"], name=args.name, resume=args.resume,
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


def cmd_fingerprints(args):
    from .provenance import code_fingerprint, report
    table = report(args.results)
    print(f"current code fingerprint: {code_fingerprint()}; "
          f"{int(table.current.sum())} of {len(table)} runs match")
    print(table.fillna("not recorded").to_string(index=False))


def cmd_list(args):
    for name in preset_names():
        p = load_preset(name)
        print(f"{name:18s} {' '.join(p['description'].split())}")
        print(f"{'':18s} variants: {', '.join(p['variants'])}; seeds: {p['seeds']}")


def parser():
    ap = argparse.ArgumentParser(prog="python -m lcnn_core", description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="command", required=True)
    t = sub.add_parser("train", help="train (and evaluate) the runs of a preset")
    t.add_argument("--preset", required=True)
    t.add_argument("--variant", help="one training variant (default: all of the preset's)")
    t.add_argument("--seed", type=int, help="one seed (default: all of the preset's)")
    t.add_argument("--tag", help="one grid entry of the preset (default: all)")
    t.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a config key (repeatable)")
    t.add_argument("--name", help="run folder name (default: VARIANT-sSEED)")
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
    s.add_argument("--tag", help="one grid entry of the preset (default: all)")
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
