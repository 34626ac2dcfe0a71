"""What a training step costs when its arithmetic is negligible: the ops it dispatches.

On a GPU a step is bound by launching ops, not by arithmetic (shared/docs/GPU.md). The CPU shows
the same cost when a step is made tiny: ResNet-18 at width 4, batch 2, 32 x 32, one thread,
eager. There a step is Python and dispatcher work only. Per variant, interleaved over rounds
in one process: the ``aten::`` ops one step dispatches (torch.profiler, nested calls included;
deterministic) and the median CPU time of a step, each as a ratio to Standard.

    python benchmarks/dispatch.py                      # the current code
    python benchmarks/dispatch.py --before c1c7bae     # and the code of a commit, in a worktree,
                                                       # measured by the same script in a subprocess

Writes results/benchmarks/dispatch_cpu.csv and .json (with provenance; the JSON keeps every
round and the ten most frequent ops of each variant's step).
"""
import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import torch

VARIANTS = ["standard", "lcnn", "gradreg", "lcnn_gradreg", "cure", "softplus_wd", "adv"]
ROOT = Path(__file__).resolve().parent.parent


def count_ops(fn):
    """lcnn_core.step.dispatched_ops, repeated here because --before runs this script on a tree
    older than lcnn_core.step; the two must count the same events."""
    from torch.profiler import ProfilerActivity, profile
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        fn()
    return Counter(e.name for e in prof.events() if e.name.startswith("aten::"))


def make_step(variant, width, batch):
    """A closure running one training step of ``variant`` as ``lcnn_core.train`` does: through
    ``lcnn_core.step.TrainStep`` where the code has it, else the older inline loop."""
    from lcnn_core.config import resolve
    from lcnn_core.train import model_for_shape, optimizer_for, scheduler_for, training_loss
    cfg = resolve(dict(variant=variant, arch="resnet18", width=width, dataset="cifar10-jpeg"))
    torch.manual_seed(0)
    model = model_for_shape(cfg, (3, 32, 32), 10)
    opt = optimizer_for(model, cfg)
    sched = scheduler_for(opt, cfg, 10 ** 6)
    gen = torch.Generator().manual_seed(0)
    x, y = torch.rand(batch, 3, 32, 32, generator=gen), torch.randint(0, 10, (batch,), generator=gen)
    model.train()
    try:
        from lcnn_core.step import TrainStep
    except ImportError:  # the code before lcnn_core.step
        def step():
            loss, _ = training_loss(model, x, y, cfg)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
        return step
    train_step = TrainStep(model, cfg, opt, sched, torch.device("cpu"), training_loss)
    return lambda: train_step(x, y)


def measure(variants, width, batch, rounds, steps):
    steps_fn = {v: make_step(v, width, batch) for v in variants}
    for fn in steps_fn.values():  # warm-up: momentum buffers, allocator
        fn()
        fn()
    ops = {v: count_ops(fn) for v, fn in steps_fn.items()}
    times = {v: [] for v in variants}
    for r in range(rounds):
        for v, fn in steps_fn.items():
            t = time.process_time()
            for _ in range(steps):
                fn()
            times[v].append((time.process_time() - t) / steps)
        print(f"round {r + 1}/{rounds}: " + ", ".join(f"{v} {t[-1] * 1e3:.1f} ms" for v, t in times.items()),
              flush=True)
    rows = []
    for v in variants:
        rows.append(dict(variant=v, ops=sum(ops[v].values()), step_ms=1e3 * statistics.median(times[v]),
                         round_ms=[round(1e3 * t, 3) for t in times[v]], top_ops=ops[v].most_common(10)))
    base = next(r for r in rows if r["variant"] == "standard")
    for r in rows:
        r["ops_ratio"] = r["ops"] / base["ops"]
        r["time_ratio"] = r["step_ms"] / base["step_ms"]
    return rows


def before(rev, args):
    """The same measurement on the code at ``rev`` (a detached worktree), in a subprocess."""
    with tempfile.TemporaryDirectory() as tmp:
        tree = Path(tmp) / "tree"
        subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(tree), rev], check=True,
                       capture_output=True)
        try:
            out = Path(tmp) / "rows.json"
            cmd = [sys.executable, str(Path(__file__).resolve()), "--rows-only", str(out),
                   "--width", str(args.width), "--batch", str(args.batch), "--rounds", str(args.rounds),
                   "--steps", str(args.steps), "--variants", *args.variants]
            subprocess.run(cmd, check=True, cwd=tree, env=dict(__import__("os").environ, PYTHONPATH=str(tree)))
            return json.loads(out.read_text())
        finally:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(tree)], check=False)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--width", type=int, default=4)
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--steps", type=int, default=10, help="steps timed per variant per round")
    ap.add_argument("--variants", nargs="+", default=VARIANTS)
    ap.add_argument("--before", help="also measure the code of this commit (a worktree)")
    ap.add_argument("--rows-only", help=argparse.SUPPRESS)  # the --before subprocess: rows to this file
    ap.add_argument("--out", default="results/benchmarks")
    args = ap.parse_args()
    torch.set_num_threads(1)
    t0 = time.perf_counter()
    rows = measure(args.variants, args.width, args.batch, args.rounds, args.steps)
    if args.rows_only:
        Path(args.rows_only).write_text(json.dumps(rows))
        return
    from lcnn_core.provenance import provenance
    prov = provenance(torch.device("cpu"))
    for r in rows:
        r["code"] = "current"
    if args.before:
        old = before(args.before, args)
        for r in old:
            r["code"] = args.before
        rows += old
    import pandas as pd
    df = pd.DataFrame(rows)
    print(df[["code", "variant", "ops", "ops_ratio", "step_ms", "time_ratio"]].to_string(index=False))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    df.drop(columns=["round_ms", "top_ops"]).to_csv(out / "dispatch_cpu.csv", index=False)
    meta = dict(vars(args), wall_time_s=round(time.perf_counter() - t0, 1), provenance=prov, table=rows)
    (out / "dispatch_cpu.json").write_text(json.dumps(meta, indent=2, default=str))


if __name__ == "__main__":
    main()
