"""What a training run costs on a GPU, learned from the committed records of earlier calls.

A campaign call's record (``results/<preset>/campaign.json``, written by ``lcnn_core.campaign``) names
each run it started, when it started and ended (``started_s``, ``ended_s``, seconds after the call's
start ``call``), the GPU (``hardware``) and how many processes shared it (``concurrent``). The run's own
files give the rest: ``provenance.json`` (``started_utc`` just before the first step, ``finished_utc``
and ``wall_time_s`` of training) and ``history.csv`` (``epoch_time``, the training steps of each epoch).
Per finished run of a record:

    startup_s  = started_utc − (call + started_s)       process start to the first step: Python, CUDA,
                                                         the data onto the GPU, the model (LCNN's operator norms)
    epoch_s    = median over epochs of epoch_time         the training steps of one epoch, n processes sharing
    overhead_s = wall_time_s / epochs − epoch_s          per epoch beyond the steps: test pass, proxy, checkpoint
    eval_s     = (call + ended_s) − finished_utc          evaluation, publishing and the process's exit

(the two clocks are the same machine's, each read to the second). A GPU benchmark
(``results/benchmarks/train_step_cuda*.json``, ``benchmarks/train_step.py --epoch``) gives ``epoch_s``
of each variant alone on its GPU for its ``images`` per epoch (the eager rows); the newest one is read.

``Learned.estimate`` turns these into one run's estimate on a GPU with n processes sharing it:

    epoch_s   = median_r  epoch_s(r) × images / images(r) × gpu / gpu(r) × sharing(n, c(r))
    startup_s = median_r' startup_s(r')                   r' of the same model (config.TRAINING_VARIANTS)
    overhead  = median_r' overhead_s(r') × gpu / gpu(r')
    eval_s    = median_r' eval_s(r') × (eval_samples + eval_pgd_samples) / (the same of r') × gpu / gpu(r')

with r the records of the run's variant, arch, width and batch size (those on the same GPU if any),
``gpu`` the relative time per epoch of ``campaign.GPU_TIME`` and ``sharing`` the slowdown of n processes
against c (``campaign.sharing``). Where no record has the variant, the benchmark's epoch_s is used,
times the slowdown that the records of other variants on the same GPU show against the same benchmark
at their concurrency (1 with no such record), times ``sharing(n, c)``. Evaluation times are learned only
from records with the same kind of evaluation (with or without APGD). A quantity with no record is None:
``campaign.estimate`` then falls back to older history and the stated defaults.
"""
import datetime as dt
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from statistics import median

import pandas as pd
import yaml

from .config import TRAINING_VARIANTS

DATASET_IMAGES = {"cifar10": 50000, "cifar10-jpeg": 50000, "cifar100": 50000, "mnist5k": 4000}
# Relative time per epoch of a GPU; H100 = 1 (assumed ratios, not measured here: the book's rough
# guess for a T4; an H200 is an H100's chip with faster memory, taken as equal).
GPU_TIME = {"H100": 1.0, "H200": 1.0, "A100": 1.6, "L4": 5.0, "T4": 10.0, "P100": 10.0}


def gpu_time(hardware):
    """Relative time per epoch of the GPU named in ``hardware`` (GPU_TIME), None if unknown."""
    for key, value in GPU_TIME.items():
        if key in (hardware or ""):
            return value
    return None


def gpu_kind(hardware):
    """The GPU_TIME key in ``hardware`` ('H200' for 'NVIDIA H200 (CUDA 13.0)'), else the name itself."""
    return next((key for key in GPU_TIME if key in (hardware or "")), hardware or "")


def images(cfg):
    """Training images per epoch of a run config."""
    return cfg.get("n_train") or DATASET_IMAGES.get(cfg.get("dataset"), 1)


def _utc(text):
    return dt.datetime.fromisoformat(text).timestamp()


def read_json(path):
    """A JSON file's content, or None where it is missing or unreadable."""
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None


def record_runs(results):
    """One dict per finished run of every call in every committed ``results/*/campaign.json``, with
    the run's folder present: variant, arch, width, batch_size, images, epochs, model, hardware,
    concurrent, the eval sizes, and the four measured times of the module docstring (seconds)."""
    rows = []
    for path in sorted(Path(results).glob("*/campaign.json")):
        calls = (read_json(path) or {}).get("calls", [])
        for call in calls if isinstance(calls, list) else []:
            for rec in call.get("runs", []):
                row = _record_row(path.parent / rec.get("name", ""), call, rec)
                if row is not None:
                    rows.append(dict(row, folder=path.parent.name, call=call["call"]))
    return rows


def _record_row(run_dir, call, rec):
    if rec.get("status") != "finished" or not (run_dir / "provenance.json").is_file():
        return None
    prov = read_json(run_dir / "provenance.json") or {}
    try:
        cfg = yaml.safe_load((run_dir / "config.yaml").read_text())
        epoch_times = pd.read_csv(run_dir / "history.csv")["epoch_time"]
        t0 = _utc(call["call"])
        startup = _utc(prov["started_utc"]) - (t0 + rec["started_s"])
        evaluation = t0 + rec["ended_s"] - _utc(prov["finished_utc"])
        epoch_s = float(epoch_times.median())
        overhead = prov["wall_time_s"] / len(epoch_times) - epoch_s
    except (OSError, ValueError, KeyError, TypeError, yaml.YAMLError):
        return None
    if not isinstance(cfg, dict) or not all(math.isfinite(x) for x in (startup, evaluation, epoch_s, overhead)):
        return None
    return dict(variant=cfg["variant"], arch=cfg.get("arch"), width=cfg.get("width"), batch_size=cfg.get("batch_size"),
                images=images(cfg), epochs=len(epoch_times), model=TRAINING_VARIANTS.get(cfg["variant"], {}).get("model"),
                hardware=call.get("hardware", ""), concurrent=int(call.get("concurrent", 1)),
                eval_images=(cfg.get("eval_samples") or 0) + (cfg.get("eval_pgd_samples") or 0),
                apgd=cfg.get("eval_apgd_samples") is not None,
                startup_s=max(startup, 0.0), epoch_s=epoch_s, overhead_s=max(overhead, 0.0),
                eval_s=max(evaluation, 0.0))


def benchmark_rows(results):
    """The newest committed GPU training-cost benchmark (``results/benchmarks/train_step_cuda*.json``,
    by its provenance time): one dict per variant with epoch_s alone on the GPU, images, width,
    batch, hardware; [] without one or when its table has no epoch times."""
    newest = None
    for path in sorted((Path(results) / "benchmarks").glob("train_step_cuda*.json")):
        d = read_json(path)
        if isinstance(d, dict) and d.get("epoch") and isinstance(d.get("table"), list):
            when = (d.get("provenance") or {}).get("time_utc", "")
            if newest is None or when > newest[0]:
                newest = (when, path.name, d)
    if newest is None:
        return []
    _, name, d = newest
    rows = []
    for r in d["table"]:
        if "epoch_s" in r and "variant" in r and not r.get("capture_asked"):  # the eager step, as train runs it
            rows.append(dict(variant=r["variant"], width=r.get("width", d.get("width")), batch_size=d.get("batch"),
                             images=r.get("images") or d.get("n_train") or DATASET_IMAGES.get(d.get("dataset"), 1),
                             epoch_s=float(r["epoch_s"]), hardware=d["provenance"].get("hardware", ""),
                             file=name))
    return rows


@dataclass
class Learned:
    """The committed records (``record_runs``) and the newest GPU benchmark (``benchmark_rows``)."""
    records: list = field(default_factory=list)
    benchmark: list = field(default_factory=list)

    def estimate(self, cfg, n, hardware, sharing):
        """{startup_s, epoch_s, overhead_s, eval_s, source}: each learned value for a run of ``cfg``
        with ``n`` processes on ``hardware``, None where nothing was learned (module docstring).
        ``sharing(n, c)``: the per-process slowdown of n processes against c."""
        here = gpu_time(hardware) or 1.0
        ratio = lambda r: here / (gpu_time(r["hardware"]) or here)  # noqa: E731
        prefer = lambda rows: [r for r in rows if gpu_kind(r["hardware"]) == gpu_kind(hardware)] or rows  # noqa: E731
        key = (cfg["variant"], cfg.get("arch"), cfg.get("width"), cfg.get("batch_size"))
        same = prefer([r for r in self.records if (r["variant"], r["arch"], r["width"], r["batch_size"]) == key])
        out = dict(startup_s=None, epoch_s=None, overhead_s=None, eval_s=None, source=None)
        if same:
            out["epoch_s"] = median(r["epoch_s"] * images(cfg) / r["images"] * ratio(r) * sharing(n, r["concurrent"])
                                    for r in same)
            out["source"] = f"record ({same[0]['folder']}, {len(same)} run{'s' * (len(same) > 1)} on {same[0]['hardware']})"
        else:
            bench = [b for b in self.benchmark if b["variant"] == cfg["variant"] and b["width"] == cfg.get("width")]
            if bench and cfg.get("arch") == "resnet18":
                b = bench[0]
                slow, c = self._slowdown(b["hardware"])
                out["epoch_s"] = (b["epoch_s"] * images(cfg) / b["images"] * here / (gpu_time(b["hardware"]) or here)
                                  * slow * sharing(n, c))
                out["source"] = (f"benchmark ({b['file']}, {b['hardware']}, alone"
                                 + (f"; x {slow:.2f} sharing as the records at {c}" if c > 1 else "") + ")")
        model = TRAINING_VARIANTS[cfg["variant"]]["model"]
        kin = prefer([r for r in self.records if r["model"] == model and (r["arch"], r["width"], r["batch_size"])
                      == key[1:]])
        if kin:
            out["startup_s"] = median(r["startup_s"] for r in kin)
            out["overhead_s"] = median(r["overhead_s"] * ratio(r) for r in kin)
        apgd = cfg.get("eval_apgd_samples") is not None
        ev = [r for r in kin if r["apgd"] == apgd and r["eval_images"] > 0]
        if ev:
            want = (cfg.get("eval_samples") or 0) + (cfg.get("eval_pgd_samples") or 0)
            out["eval_s"] = median(r["eval_s"] * want / r["eval_images"] * ratio(r) for r in ev)
        return out

    def _slowdown(self, hardware):
        """(median over variants of record epoch_s / benchmark epoch_s at the same images, the records'
        concurrency) on ``hardware``'s GPU; (1.0, 1) without such a pair."""
        pairs = []
        for r in self.records:
            b = next((b for b in self.benchmark if b["variant"] == r["variant"] and b["width"] == r["width"]), None)
            if b is not None and r["arch"] == "resnet18" and gpu_kind(r["hardware"]) == gpu_kind(hardware):
                pairs.append((r["epoch_s"] / (b["epoch_s"] * r["images"] / b["images"]), r["concurrent"]))
        if not pairs:
            return 1.0, 1
        c = max(set(c for _, c in pairs), key=[c for _, c in pairs].count)  # the most common concurrency
        return median(s for s, k in pairs if k == c), c


def learn(results):
    """Learned(record_runs(results), benchmark_rows(results)); unreadable records are skipped."""
    return Learned(record_runs(results), benchmark_rows(results))
