"""A campaign: as many of a preset's runs as fit in a time budget on one GPU (``python -m lcnn_core campaign``).

    python -m lcnn_core campaign --preset gpu-campaign --budget 480 --concurrent auto --pack $OUT
    python -m lcnn_core campaign --preset gpu-campaign --budget 480 --plan-only      # the plan, nothing run
    python -m lcnn_core campaign --preset gpu-campaign --probe --concurrent 4        # images/s for 1..4 runs
    python -m lcnn_core campaign --unpack campaign-gpu-campaign.tar.gz              # into results/

The runs are the preset's (``campaign_runs``: its grid blocks in order, each with a ``priority:``, or
seed-major variants x seeds), each named and configured as ``train --run NAME`` trains it. One call:

1. **Plans.** Runs published in ``results/<preset>/<run>/`` (provenance.json and geometry.json) are
   skipped. Each other run costs ``startup_s + remaining epochs x (epoch seconds x sharing + overhead) +
   eval_s``. Each term comes from the first of: a value the preset's ``timings:`` or ``--timing`` sets;
   what ``lcnn_core.timing`` learns from the committed records of earlier calls (every
   ``results/*/campaign.json``: start-up, epoch, per-epoch overhead and evaluation times per variant and
   model, GPU and concurrency) and, for a variant no call ran, from the newest committed GPU benchmark;
   the median ``epoch_time`` in the history.csv of finished runs of the same variant, arch, width and
   batch size (this preset's results, then the folders in ``timings.from``); a stated default. Epoch
   times are scaled by the number of training images and, for another GPU, by ``GPU_TIME`` (assumed
   ratios). ``sharing`` is the per-process slowdown with N runs on one GPU: measured by ``--probe``
   (results/<preset>/probe.json) or, unmeasured, ``max(1, N / c)`` for sources that ran c at a time.
   The plan is a list schedule in priority order on N slots: a run that cannot end (evaluation
   included) before ``budget - pack_s`` is not started, and a later, shorter one may be. The probe
   (``--concurrent auto``) tries up to ``--max-concurrent`` processes, by default one per two CPU
   cores (``probe_limit``), because the step is launch-bound.
2. **Prepares the data** once (extraction and decoding of the JPEG copy), then plans again with the
   time left, and prints both plans.
3. **Runs** each run as ``python -m lcnn_core train --preset P --run-name NAME --resume --stop-at T``
   (or ``torchrun`` over all GPUs with ``--torchrun``), N at a time, where T leaves the run's own
   evaluation time before ``budget - pack_s``: the run stops cleanly between epochs, checkpoint kept,
   and a run still going at ``budget - pack_s`` is terminated (its last checkpoint is intact). The
   train command evaluates a finished model at once (float32, TF32 off) and publishes its small files.
4. **Records** every run it started: a finished one in ``results/<preset>/<run>/``; an unfinished one
   only as ``results/<preset>/unfinished/<run>/{progress.json,history.csv}`` (how far it got, why it
   stopped), a level deeper than the result readers look, so it is never shown as a result. The call
   itself is appended to ``results/<preset>/campaign.json`` (budget, concurrency, GPU, git sha, runs).
5. **Packs** (``--pack DIR``) those small files and the run logs into ``DIR/campaign-<preset>.tar.gz``
   with an md5 sidecar, at most 16 MiB (the limit on files coming back from a lent GPU machine);
   ``--unpack`` checks the md5, extracts with tar's "data" filter and merges into results/.

Resuming: a run with a checkpoint in ``--out`` continues from it. Where that folder outlives the
call (Kaggle, Colab on Drive, a workstation: ``--resumable``) a run that cannot finish is started
anyway when one epoch fits, trains to the end of the call and continues at the next. A lent GPU
machine returns no checkpoints (a full-width ResNet-18 with its momentum is about 90 MB, over the
16 MiB per file), so there the next call restarts an unfinished run from epoch 0; that is why,
without ``--resumable``, a run whose remaining epochs do not fit is not started at all.
"""
import dataclasses
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import yaml

from .atomic import write_json
from .config import DATASET_CLASSES, ConfigError, load_preset, parse_set, preset_runs, resolve
from .data import md5_of
from .sweep import parse_devices
from . import timing
from .timing import DATASET_IMAGES, GPU_TIME, gpu_time, read_json  # noqa: F401  (re-exported: campaign.GPU_TIME)

# Planning defaults; a preset's ``timings:`` section overrides any of them.
DEFAULT_TIMINGS = {
    "from": ["h100-cifar10-jpeg"],   # result folders whose history.csv epoch_time is used
    "measured_concurrency": 3,       # the h100-cifar10-jpeg runs shared one H100 with 1-2 others
    # Seconds per epoch when no history.csv matches, taken as measured like the "from" runs (an H100
    # shared by measured_concurrency runs, full-width ResNet-18, default_images images). The first four
    # are those runs' medians; the last three were never timed on a GPU here (guesses, flagged in the
    # plan): CURE = two input gradients with double backprop (about 2 x GradReg); Softplus + WD =
    # Standard; adversarial training = 3 PGD steps + 1 step (about 4 x Standard).
    "default_epoch_s": {"standard": 7, "lcnn": 18, "gradreg": 35, "lcnn_gradreg": 47,
                        "cure": 70, "softplus_wd": 7, "adv": 28},
    "default_images": 50000,         # the training-set size the defaults are for
    "startup_s": 20,                 # Python, CUDA context, the decoded data onto the GPU
    "compile_s": 60,                 # torch.compile of a first-order variant on CUDA (compile: auto); a guess
    "epoch_scale": 1.0,              # x every epoch estimate: e.g. 0.5 once a speed-up halved the step time
                                     # of the code the measured histories came from
    "epoch_overhead_s": 1.0,         # per epoch beyond history.csv's epoch_time: the test pass, the checkpoint
    "eval_s": 300,                   # one full-width model on 1,000 images, TF32 off (guess: 4 x the ~30 s
                                     # of the committed H100 runs on 500 images with TF32 on, plus APGD-CE
                                     # + APGD-T, 100 steps x (1 + 9 targets) x 3 eps, ~0.05 s per pass)
    "pack_s": 15,                    # writing campaign.json and the archive
}
# GPU_TIME (relative time per epoch of a GPU) and DATASET_IMAGES live in lcnn_core.timing.
ARCHIVE_LIMIT = 16 * 2**20
FALLBACK_CONCURRENT = 3  # when the probe fails: what the committed H100 runs shared
# The probe's upper level with --max-concurrent auto: the training step of a full-width ResNet-18 is
# launch-bound on an H100/H200 (Standard's epoch took 5.2-5.5 s with 3 processes sharing an H200 and
# 5.3 s alone, results/h100-cifar10-jpeg/campaign.json and results/benchmarks/train_step_cuda_epoch.json),
# so each process needs a CPU core of its own to issue kernels, and one more for the data and test pass.
CORES_PER_PROCESS = 2
MAX_SHARING = 8


def probe_limit(cpu_count=None):
    """The most processes the probe tries on one GPU: cpu_count // CORES_PER_PROCESS, between 1 and
    MAX_SHARING (8 on the H200 machine's 16 cores, 1 on 2 cores)."""
    cores = cpu_count if cpu_count is not None else (os.cpu_count() or 1)
    return max(1, min(MAX_SHARING, cores // CORES_PER_PROCESS))


class CampaignError(RuntimeError):
    """Bad campaign input (archive, budget, ...): the CLI prints one line and exits with status 2."""


@dataclasses.dataclass
class Run:
    name: str
    priority: int
    overrides: dict       # config overrides (variant and seed included) on top of the preset's config
    cfg: dict             # the resolved configuration
    remaining: int = 0    # epochs still to train
    estimate: dict = None  # epoch_s, source, train_s, total_s

    @property
    def variant(self):
        return self.cfg["variant"]


# ------------------------------------------------------------------ the runs and their state
def campaign_runs(preset, sets=()):
    """The preset's runs (config.preset_runs) in priority order: grid blocks in the order written, each
    with its ``priority:`` (default: its place); without a grid, seed-major (all models of the first
    seed, then of the next), the priority being the seed's place. ``sets`` (--set) apply to every run."""
    extra = parse_set(sets)
    if preset.get("grid"):
        blocks = [(block.get("priority", i + 1), dict(preset, grid=[block])) for i, block in enumerate(preset["grid"])]
        specs, seen = [], set()
        for priority, sub in blocks:
            for name, overrides in preset_runs(sub):
                if name not in seen:
                    seen.add(name)
                    specs.append((name, priority, overrides))
    else:
        seeds = list(preset.get("seeds") or [0])
        specs = sorted(((name, seeds.index(o["seed"]) + 1, o) for name, o in preset_runs(preset)),
                       key=lambda spec: spec[1])
    runs = []
    for name, priority, overrides in specs:
        overrides = dict(extra, **overrides)  # as train does it: the grid wins over --set
        runs.append(Run(name, int(priority), overrides, resolve(overrides, base=preset["config"])))
    return runs


def published(results, preset_name, name):
    """A finished, evaluated run is in results/<preset>/<run>/ with provenance.json and geometry.json."""
    d = Path(results) / preset_name / name
    return (d / "provenance.json").is_file() and (d / "geometry.json").is_file()


def epochs_done(run_dir):
    """Finished epochs of a run folder (rows of its history.csv; 0 if none)."""
    path = Path(run_dir) / "history.csv"
    if not path.is_file():
        return 0
    try:
        return len(pd.read_csv(path))
    except (pd.errors.EmptyDataError, pd.errors.ParserError):
        return 0


# ------------------------------------------------------------------ estimates
def timings_for(preset):
    """DEFAULT_TIMINGS updated by the preset's ``timings:`` (and --timing, merged into it); ``explicit``
    names the keys set there, which win over anything learned (``estimate``)."""
    t = dict(DEFAULT_TIMINGS)
    t.update(preset.get("timings") or {})
    t["explicit"] = set(preset.get("timings") or {})
    return t


def parse_timings(items):
    """['eval_s=60', ...] -> {key: number} over DEFAULT_TIMINGS' numeric keys (what --timing may change)."""
    out = {}
    for item in items or []:
        key, _, value = str(item).partition("=")
        numeric = [k for k, v in DEFAULT_TIMINGS.items() if isinstance(v, (int, float))]
        if key not in numeric:
            raise ConfigError(f"--timing wants KEY=SECONDS with KEY one of {', '.join(numeric)}, got {item!r}")
        try:
            out[key] = float(value)
        except ValueError:
            raise ConfigError(f"--timing {key} wants a number, got {value!r}") from None
    return out


_images = timing.images


def _calls_by_run(results, preset_name):
    """{run name: (processes sharing the GPU, hardware)} from this preset's campaign.json."""
    out = {}
    for call in read_calls(Path(results) / preset_name / "campaign.json"):
        for r in call.get("runs", []):
            out[r["name"]] = (call.get("concurrent", 1), call.get("hardware", ""))
    return out


def measured_epochs(results, preset_name, timings):
    """Rows (variant, arch, width, batch_size, images, hardware, concurrency, epoch_s) of every
    history.csv of a run in this preset's results (finished or unfinished/) and of the finished
    runs in the ``timings.from`` folders."""
    rows = []
    calls = _calls_by_run(results, preset_name)
    own = Path(results) / preset_name
    sources = [(h, preset_name) for pattern in ("*/history.csv", "unfinished/*/history.csv")
               for h in sorted(own.glob(pattern))]
    for folder in timings["from"]:
        if folder != preset_name:
            sources += [(h, folder) for h in sorted((Path(results) / folder).glob("*/history.csv"))]
    for hist, folder in sources:
        d = hist.parent
        try:
            cfg = yaml.safe_load((d / "config.yaml").read_text())
            epoch_s = pd.read_csv(hist)["epoch_time"].median()
        except (OSError, ValueError, KeyError, yaml.YAMLError):
            continue
        prov = read_json(d / "provenance.json") or {}
        concurrency, hardware = calls.get(d.name, (timings["measured_concurrency"], "")) if folder == preset_name \
            else (timings["measured_concurrency"], "")
        if not isinstance(cfg, dict) or not math.isfinite(epoch_s):
            continue
        rows.append(dict(variant=cfg.get("variant"), arch=cfg.get("arch"), width=cfg.get("width"),
                         batch_size=cfg.get("batch_size"), images=_images(cfg),
                         hardware=prov.get("hardware", hardware), epoch_s=float(epoch_s), folder=folder,
                         concurrency=concurrency))
    return rows


def sharing(n, c, probe):
    """Per-process slowdown of n runs sharing a GPU, relative to c sharing it."""
    if probe:
        per = {lvl["concurrent"]: lvl["per_process_images_per_s"] for lvl in probe["levels"]}
        def slow(k):
            k = min(k, max(per))
            return per[1] / per[k] if k in per and per[k] > 0 else max(1.0, k)
        return slow(n) / slow(c)
    return max(1.0, n / c)


def estimate(run, rows, timings, n, hardware, probe, learned=None):
    """{epoch_s, source, train_s, total_s, startup_s, eval_s} for ``run`` with ``n`` sharing a GPU named
    ``hardware``. Each quantity comes from the first of: a value set explicitly (the preset's
    ``timings:`` or ``--timing``: startup_s, eval_s, epoch_overhead_s); what ``learned``
    (``timing.learn``: the committed campaign records, then the newest GPU benchmark) says; the
    history.csv ``rows`` (``measured_epochs``: this preset's results, then ``timings.from``); the
    stated defaults. total_s = startup_s + remaining x (epoch_s x epoch_scale + overhead) + eval_s."""
    cfg = run.cfg
    fixed = timings.get("explicit", set())
    share = lambda k, c: sharing(k, c, probe)  # noqa: E731
    got = learned.estimate(cfg, n, hardware, share) if learned is not None and not str(hardware).startswith("CPU") \
        else dict(startup_s=None, epoch_s=None, overhead_s=None, eval_s=None, source=None)
    same = [r for r in rows if (r["variant"], r["arch"], r["width"], r["batch_size"])
            == (cfg["variant"], cfg["arch"], cfg["width"], cfg["batch_size"])]
    here = gpu_time(hardware)
    if got["epoch_s"] is not None:
        epoch_s, source = got["epoch_s"], got["source"]
    elif same:
        own = [r for r in same if r["folder"] == same[0]["folder"]]  # prefer the first folder (this preset's)
        picks = []
        for r in own:
            there = gpu_time(r["hardware"])
            gpu = here / there if here and there else 1.0
            picks.append(r["epoch_s"] * _images(cfg) / r["images"] * gpu * sharing(n, r["concurrency"], probe))
        epoch_s = float(pd.Series(picks).median())
        source = f"history ({own[0]['folder']}, {len(own)} run{'s' * (len(own) > 1)})"
    elif cfg["variant"] in timings["default_epoch_s"]:
        gpu = here or 1.0
        epoch_s = (timings["default_epoch_s"][cfg["variant"]] * _images(cfg) / timings["default_images"] * gpu
                   * sharing(n, timings["measured_concurrency"], probe))
        source = "default (not measured)"
    else:
        raise ConfigError(f"no timing for variant {cfg['variant']}: add it to the preset's timings.default_epoch_s")
    if here is None and hardware and not hardware.startswith("CPU"):
        source += f"; {hardware} not in GPU_TIME, taken as fast as the source"

    def pick(key, learned_key):
        return timings[key] if key in fixed or got[learned_key] is None else got[learned_key]

    overhead = pick("epoch_overhead_s", "overhead_s")
    epoch_s = epoch_s * timings["epoch_scale"] + overhead
    startup_s = pick("startup_s", "startup_s") + (timings["compile_s"] if _compiles(cfg, hardware) else 0.0)
    eval_s = pick("eval_s", "eval_s")
    train_s = startup_s + run.remaining * epoch_s
    return dict(epoch_s=epoch_s, source=source, train_s=train_s, total_s=train_s + eval_s,
                startup_s=startup_s, eval_s=eval_s)


def _compiles(cfg, hardware):
    """Whether the run will spend the compile time: train.wants_compile on the device it plans for."""
    from .train import wants_compile
    return wants_compile(cfg, SimpleNamespace(type="cpu" if str(hardware).startswith("CPU") else "cuda"))


def probe_scale(probe, runs, rows, timings, n, hardware, learned=None):
    """The factor that turns the history-based epoch estimate of the probed run into what the probe
    measured with this code on this GPU (training images / per-process images/s at ``n`` processes);
    None without a usable probe. It carries a speed-up of the code since the histories were taken."""
    if not probe or probe.get("hardware") != hardware:
        return None
    run = next((r for r in runs if r.name == probe.get("run")), None)
    per = {lvl["concurrent"]: lvl["per_process_images_per_s"] for lvl in probe.get("levels", [])}
    if run is None or not per or min(n, max(per)) not in per or per[min(n, max(per))] <= 0:
        return None
    plain = dict(timings, epoch_scale=1.0, epoch_overhead_s=0.0, explicit=set(timings.get("explicit", ())) | {"epoch_overhead_s"})
    before = estimate(dataclasses.replace(run, remaining=0), rows, plain, n, hardware, None, learned)["epoch_s"]
    return _images(run.cfg) / per[min(n, max(per))] / before


def measured_eval_s(results, preset_name, default):
    """Median evaluation wall time of this preset's published runs (geometry.json), else ``default``."""
    times = []
    for g in sorted((Path(results) / preset_name).glob("*/geometry.json")):
        t = (read_json(g) or {}).get("provenance", {}).get("eval_wall_time_s")
        if isinstance(t, (int, float)):
            times.append(t)
    return float(pd.Series(times).median()) if times else default


# ------------------------------------------------------------------ the plan
def schedule(runs, slots, available_s, resumable=False):
    """List schedule in priority order: each run goes to the slot that frees first if it ends (its
    evaluation included) within ``available_s``; else it is left out, unless ``resumable`` (its
    checkpoint outlives the call) and at least one epoch fits: then it trains to the end of the call
    and goes on next time. Returns {name: (slot, start, end, partial)}."""
    free = [0.0] * slots
    placed = {}
    for run in runs:
        k = min(range(slots), key=free.__getitem__)
        e = run.estimate
        end = free[k] + e["total_s"]
        if end <= available_s:
            placed[run.name] = (k, free[k], end, False)
            free[k] = end
        elif resumable and free[k] + e["startup_s"] + e["epoch_s"] + e["eval_s"] <= available_s:
            placed[run.name] = (k, free[k], available_s, True)
            free[k] = available_s
    return placed


def plan_table(runs, done, placed, resumable=False):
    """The plan as a DataFrame, one row per run of the preset."""
    rows = []
    for run in runs:
        if run.name in done:
            rows.append(dict(priority=run.priority, run=run.name, epochs=run.cfg["epochs"], todo=0,
                             status="finished, skipped"))
            continue
        e = run.estimate
        slot = placed.get(run.name)
        rows.append(dict(priority=run.priority, run=run.name, epochs=run.cfg["epochs"], todo=run.remaining,
                         epoch_s=round(e["epoch_s"], 1), run_min=round(e["total_s"] / 60, 1),
                         gpu_h_alone=round(e["alone_s"] / 3600, 2),
                         status=(("part: " if slot[3] else "") + f"slot {slot[0] + 1}: +{slot[1]:.0f}s to "
                                 f"+{slot[2]:.0f}s" if slot else "a later call" if resumable else "does not fit"),
                         source=e["source"]))
    return pd.DataFrame(rows)


def make_plan(preset, runs, results, out, n, available_s, hardware, probe=None, log=print, title="plan",
              resumable=False, slots=None):
    """Estimates every unfinished run with ``n`` processes per GPU, schedules them on ``slots`` (default n)
    within ``available_s`` and prints the plan with the GPU-hours per run and for the whole table.
    Returns (todo runs, placed)."""
    slots = slots or n
    timings = timings_for(preset)
    if "eval_s" not in timings["explicit"]:  # older history: this preset's own evaluations, any variant
        timings["eval_s"] = measured_eval_s(results, preset["name"], timings["eval_s"])
    rows = measured_epochs(results, preset["name"], timings)
    learned = timing.learn(results)
    done = {r.name for r in runs if published(results, preset["name"], r.name)}
    scale = probe_scale(probe, runs, rows, timings, n, hardware, learned)
    if scale is not None and "epoch_scale" not in (preset.get("timings") or {}):
        timings["epoch_scale"] = scale
        log(f"epoch estimates x {scale:.2f}: the probe's {probe['run']} on this GPU against its estimate "
            "from the measured histories (the same factor assumed for every variant)")
    todo = []
    for run in runs:
        if run.name in done:
            continue
        run.remaining = run.cfg["epochs"] - min(epochs_done(Path(out) / preset["name"] / run.name), run.cfg["epochs"])
        run.estimate = estimate(run, rows, timings, n, hardware, probe, learned)
        run.estimate["alone_s"] = estimate(run, rows, timings, 1, hardware, probe, learned)["total_s"]
        todo.append(run)
    placed = schedule(todo, slots, available_s, resumable)
    table = plan_table(runs, done, placed, resumable)
    with pd.option_context("display.width", 200, "display.max_columns", 20, "display.max_colwidth", 60):
        log(f"{title}: {preset['name']}, {len(runs)} runs ({len(done)} finished), {slots} at a time "
            f"({n} per GPU) on {hardware}, {available_s:.0f} s for training and evaluation")
        log(table.to_string(index=False))
    total_h = table["gpu_h_alone"].sum() if "gpu_h_alone" in table else 0.0
    fits = [r for r in todo if r.name in placed]
    log(f"estimated GPU-hours (one run alone on the GPU): {total_h:.2f} for the {len(todo)} unfinished runs; "
        f"{len(fits)} of them fit in this call")
    return todo, placed


# ------------------------------------------------------------------ running
def train_command(preset_arg, run, out, results, stop_at, sets, kind, torchrun_procs=0):
    """The ``train`` command of one run; ``--run-name`` is ``--run`` spelled so that torchrun's own
    parser does not take it for an abbreviation of its ``--run-path``."""
    cmd = ["-m", "lcnn_core", "train", "--preset", preset_arg, "--out", str(out), "--results", str(results),
           "--resume", "--stop-at", f"{stop_at:.1f}", "--run-name", run.name]
    for item in sets:
        cmd += ["--set", item]
    if kind == "cpu":
        cmd += ["--set", "device=cpu"]
    if torchrun_procs > 1:
        return [sys.executable, "-m", "torch.distributed.run", "--standalone",
                f"--nproc_per_node={torchrun_procs}"] + cmd
    return [sys.executable] + cmd


def _stop(proc, grace=10.0):
    """SIGTERM, then SIGKILL after ``grace`` seconds: the checkpoint on disk is written atomically."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def prepare_data(runs, log=print):
    """Extract and decode each dataset once, so that concurrent runs read the cache."""
    from .data import load_dataset
    for dataset, root in dict.fromkeys((r.cfg["dataset"], r.cfg["data_root"]) for r in runs):
        t0 = time.time()
        load_dataset(dataset, root=root)
        log(f"data {dataset} ready in {time.time() - t0:.1f} s")


def device_name(kind):
    if kind == "cuda":
        import torch
        if torch.cuda.is_available():
            return torch.cuda.get_device_name(0)
    from .provenance import hardware
    return hardware("cpu")


def run_campaign(preset_arg, budget, concurrent=1, gpus="0", out="runs", results="results", sets=(),
                 pack=None, plan_only=False, torchrun=False, max_concurrent=4, probe_window=5.0,
                 resumable=False, hardware=None, timing=(), log=print):
    """One campaign call (see the module docstring). Returns the call record written to campaign.json."""
    t0 = time.time()
    if budget <= 0:
        raise CampaignError(f"--budget must be positive, got {budget}")
    preset = load_preset(preset_arg)
    preset["timings"] = dict(preset.get("timings") or {}, **parse_timings(timing))
    runs = campaign_runs(preset, sets)
    timings = timings_for(preset)
    devices = parse_devices(gpus)
    kind = devices[0][1]
    if hardware and not plan_only:
        raise CampaignError("--hardware (plan as if on another GPU) goes with --plan-only")
    hardware = hardware or device_name(kind)
    deadline = t0 + budget - timings["pack_s"]
    results_dir = Path(results) / preset["name"]
    probe = read_json(results_dir / "probe.json")
    n = max_concurrent if concurrent == "auto" else int(concurrent)
    if n < 1:
        raise CampaignError(f"--concurrent must be a positive number or 'auto', got {concurrent}")
    def n_slots():
        return len(_slots(devices, n, torchrun))

    todo, placed = make_plan(preset, runs, results, out, n, deadline - time.time(), hardware, probe, log,
                             title="plan before preparing the data", resumable=resumable, slots=n_slots())
    call = dict(call=_utc(t0), preset=preset["name"], budget_s=budget, hardware=hardware,
                git_sha=_git_sha(), host=_host_name(), concurrent=n, gpus=gpus, torchrun=torchrun,
                resumable=resumable, runs=[])
    if plan_only:
        return call
    records = []
    try:  # whatever happens below, what was recorded is written and packed
        if concurrent == "auto" and todo:  # measure the sharing first: it decides N and the plan
            first = next((r for r in todo if r.name in placed), todo[0])
            try:
                probe = run_probe(preset_arg, first, devices, max_concurrent, window=probe_window, sets=sets,
                                  log=log)
            except Exception as e:  # a failed probe must not cost the call: plan without it
                n = call["concurrent"] = min(FALLBACK_CONCURRENT, max_concurrent)
                call["probe"] = f"failed: {type(e).__name__}: {e}"
                log(f"probe failed ({type(e).__name__}: {e}); {n} at a time, unprobed")
            else:
                write_json(probe, results_dir / "probe.json")
                n = call["concurrent"] = probe["best"]
                call["probe"] = dict(run=probe["run"], best=probe["best"], levels=probe["levels"])
            todo, placed = make_plan(preset, runs, results, out, n, deadline - time.time(), hardware, probe, log,
                                     title="plan with the measured sharing", resumable=resumable, slots=n_slots())
        if placed:
            prepare_data([r for r in todo if r.name in placed], log)
            todo, placed = make_plan(preset, runs, results, out, n, deadline - time.time(), hardware, probe, log,
                                     title="plan", resumable=resumable, slots=n_slots())
            _run_queue(preset, preset_arg, [r for r in todo if r.name in placed], _slots(devices, n, torchrun),
                       call, t0, deadline, out, results, sets, timings, len(devices) if torchrun else 0, log,
                       records, resumable)
        if not records:
            log("nothing fits in the budget; nothing started")
    finally:
        call["runs"] = records
        call["wall_s"] = round(time.time() - t0, 1)
        _write_call(results_dir, call)
        if pack:
            logs = Path(out) / preset["name"] / "logs"
            archive = pack_results(results, preset["name"], [r["name"] for r in records], Path(pack), logs)
            log(f"packed {archive} ({archive.stat().st_size / 2**20:.2f} MiB)")
    log(f"campaign call done in {call['wall_s']:.0f} s of {budget} s: "
        f"{sum(r['status'] == 'finished' for r in records)} finished, "
        f"{sum(r['status'] != 'finished' for r in records)} unfinished")
    return call


def _run_queue(preset, preset_arg, queue, slots, call, t0, deadline, out, results, sets, timings, torchrun_procs,
               log, records, resumable=False):
    """Start the queued runs on free slots while they still fit, stop what is left at ``deadline``;
    appends the record of each run started to ``records``."""
    logs = Path(out) / preset["name"] / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    running = {}  # slot -> (run, proc, log file, started)
    killed = set()
    try:
        while queue or running:
            now = time.time()
            for slot, (gpu, slot_kind) in enumerate(slots):
                if slot in running or not queue:
                    continue
                fits = [r for r in queue if now + r.estimate["total_s"] <= deadline or resumable and
                        now + r.estimate["startup_s"] + r.estimate["epoch_s"] + r.estimate["eval_s"] <= deadline]
                for r in [r for r in queue if r not in fits]:
                    queue.remove(r)
                    log(f"{r.name}: no longer fits ({r.estimate['total_s']:.0f} s needed, "
                        f"{deadline - now:.0f} s left), not started")
                if not fits:
                    break
                run = fits[0]
                queue.remove(run)
                env = dict(os.environ, PYTHONUNBUFFERED="1", CUDA_VISIBLE_DEVICES=gpu)
                if slot_kind == "cpu":
                    env.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // len(slots))))
                if call["git_sha"]:
                    env["LCNN_GIT_SHA"] = call["git_sha"]
                # the run stops between epochs early enough to leave its own evaluation estimate
                cmd = train_command(preset_arg, run, out, results, deadline - run.estimate["eval_s"], sets, slot_kind,
                                    torchrun_procs)
                f = open(logs / f"{run.name}.log", "a")
                f.write(f"\n# campaign {call['call']}: {' '.join(cmd)}\n")
                f.flush()
                log(f"{run.name}: start on slot {slot + 1} ({run.remaining} epochs, about "
                    f"{run.estimate['total_s']:.0f} s), log {logs / (run.name + '.log')}")
                proc = subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT, env=env)
                running[slot] = (run, proc, f, now)
            if time.time() >= deadline:
                for slot, (run, proc, f, started) in running.items():
                    if proc.poll() is None:
                        log(f"{run.name}: still running at the budget, stopped")
                        killed.add(run.name)
                        _stop(proc)
            for slot in list(running):
                run, proc, f, started = running[slot]
                code = proc.poll()
                if code is None:
                    continue
                f.close()
                del running[slot]
                records.append(_record(run, code, started, t0, preset["name"], out, results, timings,
                                       killed=run.name in killed, call_host=call["hardware"]))
                log(f"{run.name}: {records[-1]['status']} after {records[-1]['wall_s']:.0f} s "
                    f"({records[-1]['epochs_done']}/{run.cfg['epochs']} epochs)")
            time.sleep(0.5)
    finally:  # an interrupt or an error here: stop the runs this call started and record them
        for run, proc, f, started in running.values():
            _stop(proc)
            f.close()
            records.append(_record(run, proc.returncode, started, t0, preset["name"], out, results, timings,
                                   killed=True, call_host=call["hardware"]))


def _slots(devices, n, torchrun):
    """(CUDA_VISIBLE_DEVICES, kind) per concurrent process: n per GPU, or n using all GPUs (torchrun)."""
    if torchrun:
        return [(",".join(g for g, _ in devices), devices[0][1])] * n
    return [d for _ in range(n) for d in devices]


def _record(run, code, started, t0, preset_name, out, results, timings, killed, call_host=""):
    """What became of one started run; an unfinished one is written to results/<preset>/unfinished/<run>/."""
    run_dir = Path(out) / preset_name / run.name
    done = epochs_done(run_dir)
    rec = dict(name=run.name, variant=run.variant, priority=run.priority, epochs=run.cfg["epochs"],
               epochs_done=done, started_s=round(started - t0, 1), ended_s=round(time.time() - t0, 1),
               wall_s=round(time.time() - started, 1), exit=code,
               estimated_s=round(run.estimate["total_s"], 1))
    if done:
        epoch_s = float(pd.read_csv(run_dir / "history.csv")["epoch_time"].median())
        rec.update(epoch_s_median=round(epoch_s, 2), images_per_s=round(_images(run.cfg) / epoch_s, 1))
    if published(results, preset_name, run.name):
        rec["status"] = "finished"
        unfinished = Path(results) / preset_name / "unfinished" / run.name
        shutil.rmtree(unfinished, ignore_errors=True)
        return rec
    rec["status"] = ("killed at the budget" if killed else "stopped at its deadline" if code == 0
                     else f"failed (exit {code})")
    dest = Path(results) / preset_name / "unfinished" / run.name
    dest.mkdir(parents=True, exist_ok=True)
    for f in ("history.csv", "config.yaml"):
        if (run_dir / f).is_file():
            shutil.copy2(run_dir / f, dest / f)
    write_json(dict(rec, note=f"not a result: training did not finish; its checkpoint is {run_dir / 'checkpoint.pt'} "
                              f"on the machine that ran it ({call_host}), and only there can it resume"),
               dest / "progress.json")
    return rec


# ------------------------------------------------------------------ records
def read_calls(path):
    data = read_json(path)
    return data.get("calls", []) if isinstance(data, dict) else []


def _write_call(results_dir, call):
    calls = [c for c in read_calls(results_dir / "campaign.json") if c.get("call") != call["call"]]
    write_json(dict(calls=calls + [call]), results_dir / "campaign.json")


def _utc(t):
    import datetime as dt
    return dt.datetime.fromtimestamp(t, dt.timezone.utc).isoformat(timespec="seconds")


def _git_sha():
    from .provenance import provenance
    return provenance("cpu")["git_sha"]


def _host_name():
    from .hosted import detect
    return detect().name


# ------------------------------------------------------------------ packing
def pack_results(results, preset_name, names, dest, logs=None):
    """Pack this call's small files into dest/campaign-<preset>.tar.gz (+ .md5): each run's published
    files or its unfinished record, campaign.json, probe.json, and the run logs under _logs/."""
    root = Path(results) / preset_name
    members = [root / "campaign.json"] + ([root / "probe.json"] if (root / "probe.json").is_file() else [])
    for name in names:
        if published(results, preset_name, name):
            from .evaluate import PUBLISHED  # the small files publish() copies
            members += [root / name / f for f in PUBLISHED if (root / name / f).is_file()]
        else:
            members += sorted((root / "unfinished" / name).glob("*"))
    dest.mkdir(parents=True, exist_ok=True)
    archive = dest / f"campaign-{preset_name}.tar.gz"
    tmp = archive.with_name(archive.name + ".tmp")
    with tarfile.open(tmp, "w:gz") as tf:
        for m in members:
            tf.add(m, arcname=f"{preset_name}/{m.relative_to(root).as_posix()}", recursive=False)
        for name in names if logs else []:
            log_file = Path(logs) / f"{name}.log"
            if log_file.is_file():
                tf.add(log_file, arcname=f"_logs/{name}.log")
    if tmp.stat().st_size > ARCHIVE_LIMIT:
        tmp.unlink()
        raise CampaignError(f"the archive would be over {ARCHIVE_LIMIT >> 20} MiB; nothing packed")
    os.replace(tmp, archive)
    Path(str(archive) + ".md5").write_text(f"{md5_of(archive)}  {archive.name}\n")
    return archive


def unpack(archive, results="results", logs_out="runs", log=print):
    """Check the md5 sidecar, extract (tar "data" filter) and merge into results/<preset>/: finished runs
    are added (a run already there is kept), unfinished records replace older ones and are dropped
    when the run is finished, campaign.json calls are merged. Returns the preset name."""
    archive = Path(archive)
    side = Path(str(archive) + ".md5")
    if not archive.is_file():
        raise CampaignError(f"archive {archive} not found")
    if not side.is_file():
        raise CampaignError(f"{side} not found: the md5 sidecar travels with the archive")
    expected = side.read_text().split()[0] if side.read_text().split() else ""
    if md5_of(archive) != expected:
        raise CampaignError(f"{archive} has md5 {md5_of(archive)}, the sidecar says {expected!r}; "
                            "it was damaged on the way, nothing unpacked")
    with tempfile.TemporaryDirectory(dir=Path(results).parent if Path(results).parent.exists() else None) as tmp:
        try:
            with tarfile.open(archive, "r:gz") as tf:
                members = tf.getmembers()
                tops = {m.name.split("/")[0] for m in members} - {"_logs"}
                if len(tops) != 1 or any(not (m.isfile() or m.isdir()) for m in members):
                    raise CampaignError(f"{archive} is not a campaign archive (one preset folder of plain files)")
                tf.extractall(tmp, filter="data")
        except (tarfile.TarError, EOFError, OSError) as e:
            raise CampaignError(f"could not extract {archive} ({e})") from None
        preset_name = tops.pop()
        src, dest = Path(tmp) / preset_name, Path(results) / preset_name
        dest.mkdir(parents=True, exist_ok=True)
        for run in sorted(p for p in src.iterdir() if p.is_dir() and p.name != "unfinished"):
            if published(results, preset_name, run.name):
                log(f"{preset_name}/{run.name}: already in {results}, kept")
                continue
            if not ((run / "provenance.json").is_file() and (run / "geometry.json").is_file()):
                log(f"{preset_name}/{run.name}: incomplete in the archive, skipped")
                continue
            shutil.rmtree(dest / run.name, ignore_errors=True)
            shutil.copytree(run, dest / run.name)
            shutil.rmtree(dest / "unfinished" / run.name, ignore_errors=True)
            log(f"{preset_name}/{run.name}: finished run added")
        for run in sorted((src / "unfinished").glob("*")) if (src / "unfinished").is_dir() else []:
            if published(results, preset_name, run.name):
                continue
            shutil.rmtree(dest / "unfinished" / run.name, ignore_errors=True)
            shutil.copytree(run, dest / "unfinished" / run.name)
            log(f"{preset_name}/unfinished/{run.name}: recorded as unfinished")
        if (src / "unfinished").is_dir() and not any((dest / "unfinished").glob("*")):
            shutil.rmtree(dest / "unfinished", ignore_errors=True)
        calls = {c["call"]: c for c in read_calls(dest / "campaign.json")}
        calls.update({c["call"]: c for c in read_calls(src / "campaign.json")})
        write_json(dict(calls=sorted(calls.values(), key=lambda c: c["call"])), dest / "campaign.json")
        if (src / "probe.json").is_file():
            shutil.copy2(src / "probe.json", dest / "probe.json")
        if (Path(tmp) / "_logs").is_dir():
            logs = Path(logs_out) / preset_name / "logs"
            logs.mkdir(parents=True, exist_ok=True)
            for f in (Path(tmp) / "_logs").iterdir():
                shutil.copy2(f, logs / f"{f.stem}.campaign.log")
    return preset_name


# ------------------------------------------------------------------ concurrency probe
def run_probe(preset_arg, run, devices, max_n, window=5.0, warmup=3, sets=(), log=print):
    """Images per second with 1..max_n processes training ``run``'s model on synthetic data on one GPU.

    max_n workers start at once and each signals when it has built the model and taken ``warmup``
    steps; then level k (k = 1..max_n) gives workers 0..k-1 a common window of ``window`` seconds,
    each counting the images of the training steps it finishes inside it (the first ``warmup`` steps
    of a newly active worker precede its window). Returns {levels: [{concurrent, images_per_s,
    per_process_images_per_s, slowdown}], best, ...}: best is the level with the most images/s."""
    gpu, kind = devices[0]
    env = dict(os.environ, PYTHONUNBUFFERED="1", CUDA_VISIBLE_DEVICES=gpu)
    if kind == "cpu":
        env.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // max_n)))
    spec = dict(preset=preset_arg, run=run.name, overrides=run.overrides, sets=list(sets),
                device="cpu" if kind == "cpu" else "cuda", warmup=warmup)
    procs = [subprocess.Popen([sys.executable, "-m", "lcnn_core.campaign", "probe-worker", json.dumps(spec)],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env, text=True)
             for _ in range(max_n)]
    limit = 120 + max_n * (window + 2.0)  # a hung worker must not hang the call: kill them all then
    watchdog = threading.Timer(limit, lambda: [p.kill() for p in procs])
    watchdog.start()
    try:
        for p in procs:
            line = p.stdout.readline()
            if line.strip() != "ready":
                raise CampaignError(f"probe worker failed to start (said {line.strip()!r})")
        start = time.time() + 1.0
        gap = 2.0  # between windows, for a newly active worker's warm-up steps
        for i, p in enumerate(procs):  # worker i is active from level i + 1 on
            windows = [(start + k * (window + gap) + gap, start + (k + 1) * (window + gap))
                       for k in range(i, max_n)]
            p.stdin.write(json.dumps(windows) + "\n")
            p.stdin.flush()
        try:
            counts = [json.loads(p.stdout.readline()) for p in procs]
        except ValueError:
            raise CampaignError(f"a probe worker died or took longer than {limit:.0f} s") from None
        for p in procs:
            p.wait(30)
    finally:
        watchdog.cancel()
        for p in procs:
            if p.poll() is None:
                p.kill()
    levels = []
    for k in range(1, max_n + 1):
        total = sum(counts[i][k - 1 - i] for i in range(k)) / window
        levels.append(dict(concurrent=k, images_per_s=round(total, 1), per_process_images_per_s=round(total / k, 1)))
    for lvl in levels:
        lvl["slowdown"] = round(levels[0]["per_process_images_per_s"] / max(lvl["per_process_images_per_s"], 1e-9), 3)
    best = max(levels, key=lambda lvl: lvl["images_per_s"])["concurrent"]
    probe = dict(run=run.name, variant=run.variant, batch_size=run.cfg["batch_size"], window_s=window,
                 hardware=device_name(kind), time_utc=_utc(time.time()), levels=levels, best=best)
    log(pd.DataFrame(levels).to_string(index=False))
    log(f"probe: {best} concurrent process(es) give the most images/s")
    return probe


def _probe_worker(spec):
    """One probe process: build the run's model, warm up, say 'ready'; read the windows from stdin,
    train on synthetic batches through them, print the images finished inside each window."""
    import torch
    from .step import TrainStep, fp16_gradient_scaler, wants_capture
    from .train import amp_dtype, compiled, model_for_shape, optimizer_for, scheduler_for, training_loss
    preset = load_preset(spec["preset"])
    cfg = resolve(dict(spec["overrides"], device=spec["device"]), base=preset["config"])  # --set already in
    device = torch.device(spec["device"])
    shape = (1, 28, 28) if cfg["dataset"] == "mnist5k" else (3, 32, 32)
    torch.manual_seed(0)
    model = model_for_shape(cfg, shape, DATASET_CLASSES[cfg["dataset"]], device)
    channels_last = cfg["channels_last"] == "on" or (cfg["channels_last"] == "auto" and device.type == "cuda")
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    opt, amp = optimizer_for(model, cfg), amp_dtype(cfg, device)
    net = compiled(model, cfg, device)  # as train.train calls it (torch.compile where it pays off)
    x = torch.rand((cfg["batch_size"],) + shape, device=device)
    y = torch.randint(0, DATASET_CLASSES[cfg["dataset"]], (cfg["batch_size"],), device=device)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)

    # the step train.train runs (captured as a CUDA graph where it would be), its schedule's first drop far away
    train_step = TrainStep(net, cfg, opt, scheduler_for(opt, cfg, 10 ** 6), device, training_loss, amp=amp,
                           scaler=fp16_gradient_scaler(amp, device), capture=wants_capture(cfg, device))

    def step():
        train_step(x, y)
        if device.type == "cuda":
            torch.cuda.synchronize()  # count only finished images

    model.train()
    for _ in range(spec["warmup"]):
        step()
    print("ready", flush=True)
    windows = json.loads(sys.stdin.readline())
    counts = []
    for start, end in windows:
        while time.time() < start - 0.5:  # idle until just before the window (warm-up steps below)
            time.sleep(0.01)
        n = 0
        while time.time() < end:
            step()
            t = time.time()
            n += cfg["batch_size"] if start <= t <= end else 0
        counts.append(n)
    print(json.dumps(counts), flush=True)


if __name__ == "__main__" and len(sys.argv) == 3 and sys.argv[1] == "probe-worker":
    _probe_worker(json.loads(sys.argv[2]))
