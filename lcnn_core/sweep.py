"""Sweeps: every run of a preset, one run per device at a time (``python -m lcnn_core sweep``).

    python -m lcnn_core sweep --preset h100-cifar10-jpeg --gpus 0,1    # two GPUs, one run on each
    python -m lcnn_core sweep --preset smoke --gpus cpu:2              # two CPU workers

The runs are the preset's (variants x seeds, or its grid: config.preset_runs), or those
chosen by --variant / --seed / --run, named as ``train`` names them. Each is one subprocess

    python -m lcnn_core train --preset P --variant V --seed S --run NAME [--set ...] --resume

with CUDA_VISIBLE_DEVICES set to its GPU (empty and ``--set device=cpu`` on a
CPU worker), so a run sees one device and a device runs one run at a time. A
run that is finished (provenance.json, and geometry.json unless --no-eval) is
skipped; one with a checkpoint continues from it (``--resume``), so a killed
sweep is restarted with the same command. Each run's output goes to
<out>/<preset>/logs/<run>.log (appended to). A failed run does not stop the
others; the sweep reports it at the end (``SweepError``).
"""
import os
import queue
import subprocess
import sys
import threading
from pathlib import Path

from .config import ConfigError, resolve
from .train import is_finished, run_dir_for


class SweepError(RuntimeError):
    """One or more runs of a sweep failed (the message names them and their logs)."""


def parse_devices(spec):
    """'0,1' -> [('0', 'cuda'), ('1', 'cuda')]; 'cpu' -> one CPU slot; 'cpu:N' -> N CPU slots."""
    spec = str(spec).strip()
    if spec == "cpu" or spec.startswith("cpu:"):
        n = spec[4:] or "1"
        if not n.isdigit() or int(n) < 1:
            raise ConfigError(f"--gpus cpu:N needs a positive number of workers, got {spec!r}")
        return [("", "cpu")] * int(n)
    ids = [g.strip() for g in spec.split(",")]
    if not ids or not all(g.isdigit() for g in ids) or len(set(ids)) != len(ids):
        raise ConfigError(f"--gpus wants distinct GPU ids like 0,1 or 'cpu' / 'cpu:N', got {spec!r}")
    return [(g, "cuda") for g in ids]


def is_done(run_dir, evaluate=True):
    """Trained, and evaluated too unless ``evaluate`` is False: nothing left to run."""
    return is_finished(run_dir) and (not evaluate or (Path(run_dir) / "geometry.json").exists())


def command(preset_name, run, sets, out, results, evaluate, device_kind, name=None):
    """The ``train`` command line of one run (this Python, this package)."""
    cmd = [sys.executable, "-m", "lcnn_core", "train", "--preset", preset_name, "--variant", run["variant"],
           "--seed", str(run["seed"]), "--out", str(out), "--results", str(results), "--resume"]
    if name:
        cmd += ["--run", name]
    for item in sets:
        cmd += ["--set", item]
    if device_kind == "cpu":
        cmd += ["--set", "device=cpu"]
    if not evaluate:
        cmd.append("--no-eval")
    return cmd


def sweep(preset, runs, devices, out="runs", results="results", sets=(), evaluate=True, log=print):
    """Run ``runs`` ((name, config overrides with variant and seed), as cli._runs makes them) of ``preset``
    on ``devices`` (parse_devices), one run per device at a time. Returns {run name: exit status}
    of the runs it started; raises SweepError if any failed."""
    todo = queue.Queue()
    logs = Path(out) / preset["name"] / "logs"
    for name, run in runs:
        cfg = resolve(run, base=preset["config"])
        run_dir = run_dir_for(cfg, out, preset["name"], name)
        if is_done(run_dir, evaluate):
            log(f"{run_dir}: finished, skipped")
            continue
        state = ("evaluate" if is_finished(run_dir) else
                 "resume" if (run_dir / "checkpoint.pt").exists() else "start")
        todo.put((run_dir.name, run, state))
    if todo.empty():
        return {}
    logs.mkdir(parents=True, exist_ok=True)
    status, live, lock = {}, set(), threading.Lock()
    cpu_threads = str(max(1, (os.cpu_count() or 1) // max(1, sum(kind == "cpu" for _, kind in devices))))

    def worker(gpu, kind):
        env = dict(os.environ, CUDA_VISIBLE_DEVICES=gpu, PYTHONUNBUFFERED="1")
        if kind == "cpu":
            env.setdefault("OMP_NUM_THREADS", cpu_threads)
        while True:
            try:
                name, run, state = todo.get_nowait()
            except queue.Empty:
                return
            where = f"GPU {gpu}" if kind == "cuda" else "CPU"
            log(f"{name}: {state} on {where}, log {logs / (name + '.log')}")
            with open(logs / f"{name}.log", "a") as f:
                p = subprocess.Popen(command(preset["name"], run, sets, out, results, evaluate, kind, name),
                                     stdout=f, stderr=subprocess.STDOUT, env=env)
                with lock:
                    live.add(p)
                code = p.wait()
                with lock:
                    live.discard(p)
            status[name] = code
            log(f"{name}: {'done' if code == 0 else f'failed (exit {code})'}")

    threads = [threading.Thread(target=worker, args=device, daemon=True) for device in devices]
    for t in threads:
        t.start()
    try:
        for t in threads:
            t.join()
    except KeyboardInterrupt:  # stop the runs this sweep started; their checkpoints stay
        with lock:
            for p in live:
                p.terminate()
        raise
    failed = [name for name, code in status.items() if code != 0]
    if failed:
        raise SweepError(f"{len(failed)} of {len(status)} runs failed ({', '.join(sorted(failed))}); "
                         f"see their logs in {logs}")
    return status
