"""Training cost of each variant as a ratio to Standard, every variant measured in one run.

CPU (default): ResNet-18 at widths 16 and 64 on a fixed batch of 128 CIFAR-sized images, one
thread, timed by the process's CPU time (on a shared machine wall time also counts the other
processes). The variants are interleaved over several rounds (round-robin) and the median step
time is reported; the JSON keeps every round, so a ratio has an interval over rounds. Two rows reproduce the code
before the speed work in the same run, so "before" and "after" share the machine's state:

* ``lcnn_before``: the composite centered softplus (four elementwise ops forward, about
  eight backward) and the batch norm followed by a separate product with the clip factor;
* ``adv_before``: ``model.eval()`` before crafting the attack on every batch (an LCNN
  converges every SN conv with Lanczos there; Standard runs an SVD of its last layer).

GPU (--epoch): full-width ResNet-18, one epoch of the CIFAR-10 JPEG copy per variant with the
on-device loader, AMP as ``amp: auto`` picks for the GPU and channels_last (what ``lcnn_core.train``
uses), after a warm-up; ``--compile on|off|auto`` as the config key; ``--capture both`` times the
eager step and its CUDA-graph replay (``lcnn_core.step``) of each variant; ``--eval-cost N`` then
times each phase of a full-width evaluation on N images; the process's age at its first step is
the start-up cost (interpreter, imports, CUDA, decoding the data). A variant or mode that raises
leaves a row with ``mode`` "failed" and its ``error`` (the traceback goes to stderr) and the
others still run; a step whose capture fell back to eager says ``mode`` "eager", and the book's
cost table rates only steps that did replay as captured.

    python benchmarks/train_step.py                          # CPU ratios, widths 16 and 64
    python benchmarks/train_step.py --epoch --width 64       # GPU epoch times (--compile off to compare)
    LCNN_GIT_SHA=<sha> python benchmarks/train_step.py ...   # where .git did not travel

Writes results/benchmarks/train_step_<device>[_epoch].csv and .json (with provenance) and,
on CPU, train_step_profile_cpu.csv (where each variant's step goes, from torch.profiler) and
the per-epoch converge cost of an LCNN at width 64.

Remedies, chosen by measurement (numbers: the committed CSV / JSON, and the closing note of
the speed issue):

* chosen -- a fused centered softplus (``layers._CenteredSoftplusFn``: three passes forward,
  four backward, a differentiable backward for GradReg / CURE); the clip factor folded into
  batch norm's own per-channel weight; training-time attacks under ``layers.frozen`` (the
  current sigma and running statistics) instead of ``model.eval()``, which converged every SN
  conv per batch; ``torch.compile`` behind ``compile: auto`` (CUDA, first-order variants).
* rejected -- torch.compile on CPU by default: about 12 % off an LCNN step for 2.5 minutes of
  compiling on these 2 cores, a loss for a 10-minute run (``compile: on`` keeps it available);
  a two-convolution power step (sigma from the previous step's u): it would change the
  power-iteration sigma, which must match; flushing denormals (``torch.set_flush_denormal``):
  it speeds Standard's softplus (beta = 1000 underflows to denormals for x < 0) on CPU only
  and changes numerics below 1e-38; ``--flush-denormal`` measures it.
* floors -- GradReg is a forward, a backward with its graph and the double backward (about
  3x); CURE does that twice (at x and at x + h z), so it costs about two GradRegs.
"""
import argparse
import json
import statistics
import time
import traceback
from pathlib import Path

import pandas as pd
import torch
import torch.nn.functional as F

from lcnn_core import layers
from lcnn_core.config import resolve
from lcnn_core.data import Loader, load_dataset
from lcnn_core.oracles import bn_then_factor_forward, composite_softplus_forward
from lcnn_core.provenance import provenance
from lcnn_core.provenance import process_age_s
from lcnn_core.step import TrainStep, fp16_gradient_scaler, wants_capture
from lcnn_core.train import amp_dtype, compiled, model_for_shape, optimizer_for, scheduler_for, training_loss

VARIANTS = ["standard", "lcnn", "gradreg", "lcnn_gradreg", "cure", "softplus_wd", "adv"]
BEFORE = {"lcnn_before": "lcnn", "adv_before": "adv"}  # the code before the speed work, same run


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


class _Before:
    """Context: the layers' and the adversarial step's code as it was before the speed work."""

    def __enter__(self):
        self.saved = (layers.CenteredSoftplus.forward, layers.ClippedBatchNorm2d.forward)
        layers.CenteredSoftplus.forward = composite_softplus_forward
        layers.ClippedBatchNorm2d.forward = bn_then_factor_forward

    def __exit__(self, *exc):
        layers.CenteredSoftplus.forward, layers.ClippedBatchNorm2d.forward = self.saved


class Setup:
    """Model, optimiser and AMP settings of one variant, ready to step."""

    def __init__(self, name, args, device, width, image_shape=(3, 32, 32), num_classes=10, capture=False):
        self.name, self.before = name, name in BEFORE
        variant = BEFORE.get(name, name)
        self.cfg = resolve(dict(variant=variant, arch="resnet18", width=width, dataset=args.dataset,
                                compile=args.compile, capture="auto" if capture else "off"))
        torch.manual_seed(0)
        self.model = model_for_shape(self.cfg, image_shape, num_classes, device)
        self.channels_last = device.type == "cuda"
        if self.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.net = self.model if self.before else compiled(self.model, self.cfg, device)
        self.opt = optimizer_for(self.model, self.cfg)
        self.amp = amp_dtype(self.cfg, device)
        self.device = device
        self.capture = capture and wants_capture(self.cfg, device)
        sched = scheduler_for(self.opt, self.cfg, 10 ** 6)  # the run's schedule, its first drop far away
        self.train_step = TrainStep(self.net, self.cfg, self.opt, sched, device, training_loss, amp=self.amp,
                                    scaler=fp16_gradient_scaler(self.amp, device), capture=self.capture)

    def step(self, x, y):
        if self.before:
            with _Before():
                return self._step(x, y)
        return self._step(x, y)

    def _step(self, x, y):
        self.net.train()
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        if not self.before:  # what lcnn_core.train runs
            return self.train_step(x, y)
        with torch.autocast(self.device.type, dtype=self.amp or torch.float32, enabled=self.amp is not None):
            if self.before and self.cfg["variant"] == "adv":
                loss = self._adv_before_loss(x, y)
            else:
                loss, _ = training_loss(self.net, x, y, self.cfg)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()

    def _adv_before_loss(self, x, y):
        from lcnn_core.attacks import pgd_l2
        cfg = self.cfg
        self.model.eval()  # what training_loss did before: converge every SN conv, SVD the last layer
        x = pgd_l2(self.model, x, y, eps=cfg["adv_eps"], steps=cfg["adv_steps"], step_size=cfg["adv_step"])
        self.model.train()
        return F.cross_entropy(self.model(x).float(), y)


def step_times(args, device, width):
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(args.batch, 3, 32, 32, generator=gen).to(device)
    y = torch.randint(0, 10, (args.batch,), generator=gen).to(device)
    names = args.variants + [b for b in BEFORE if BEFORE[b] in args.variants]
    setups = {v: Setup(v, args, device, width) for v in names}
    times = {v: [] for v in names}
    for s in setups.values():  # warm-up (and compile, where on)
        s.step(x, y)
    rounds = args.rounds if width <= 16 else args.rounds_wide
    # On CPU the clock is the process's CPU time: with one thread it counts the step's own work,
    # where wall time on a shared machine also counts whoever else held the cores meanwhile.
    clock = time.perf_counter if device.type == "cuda" else time.process_time
    for r in range(rounds):
        for v, s in setups.items():
            sync(device)
            t = clock()
            s.step(x, y)
            sync(device)
            times[v].append(clock() - t)
        print(f"width {width} round {r + 1}/{rounds}: " +
              ", ".join(f"{v} {t[-1]:.2f}s" for v, t in times.items()), flush=True)
    rows = [dict(width=width, variant=v, step_s=statistics.median(t), rounds=len(t),
                 min_s=min(t), max_s=max(t), round_s=[round(e, 5) for e in t]) for v, t in times.items()]
    base = next(r["step_s"] for r in rows if r["variant"] == "standard")
    for r in rows:
        r["ratio_to_standard"] = r["step_s"] / base
    return rows, setups, (x, y)


def profile_rows(setups, batch, top=6):
    """Self CPU time of each variant's three steps by operator: the top ``top`` and the rest."""
    from torch.profiler import ProfilerActivity, profile
    rows = []
    x, y = batch
    for v, s in setups.items():
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            for _ in range(3):
                s.step(x, y)
        ops = sorted(prof.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)
        total = sum(e.self_cpu_time_total for e in ops)
        for e in ops[:top]:
            rows.append(dict(variant=v, op=e.key, calls_per_step=e.count / 3,
                             self_ms_per_step=e.self_cpu_time_total / 3e3, share=e.self_cpu_time_total / total))
        rest = sum(e.self_cpu_time_total for e in ops[top:])
        rows.append(dict(variant=v, op="(other)", calls_per_step=None, self_ms_per_step=rest / 3e3,
                         share=rest / total))
    return rows


def converge_cost(device, width=64, steps=20):
    """Seconds of the switch to eval mode (Lanczos on every SN conv) for an LCNN after
    ``steps`` SGD steps from initialisation, then again right after (already converged)."""
    cfg = resolve(dict(variant="lcnn", arch="resnet18", width=width, dataset="cifar10-jpeg"))
    torch.manual_seed(0)
    model = model_for_shape(cfg, (3, 32, 32), 10, device)
    opt = optimizer_for(model, cfg)
    gen = torch.Generator().manual_seed(1)
    x, y = torch.rand(32, 3, 32, 32, generator=gen).to(device), torch.randint(0, 10, (32,), generator=gen).to(device)
    for _ in range(steps):
        model.train()
        loss, _ = training_loss(model, x, y, cfg)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    out = {}
    for label in ("after_sgd_steps_s", "already_converged_s"):
        model.train()
        sync(device)
        t = time.perf_counter()
        model.eval()
        sync(device)
        out[label] = round(time.perf_counter() - t, 2)
    return dict(width=width, sgd_steps=steps, **out)


def epoch_times(args, device, out=None):
    """One pass over the training images per variant and per mode (eager, captured), after a
    warm-up of 10 steps (cuDNN autotuning, compiling, graph capture); the CSV is rewritten after
    every row, so a call cut short keeps what it measured."""
    data = load_dataset(args.dataset, n_train=args.n_train).to(device)
    rows, first_step = [], None
    modes = {"eager": [False], "captured": [True], "both": [False, True]}[args.capture]
    for v in args.variants:
        for capture in modes:
            try:
                row, age = _epoch_row(args, device, data, v, capture)
            except Exception as e:  # one variant's failure (a lent GPU's first minutes) leaves the others' rows
                traceback.print_exc()
                row, age = dict(width=args.width, variant=v, compile=args.compile, mode="failed", capture_asked=capture,
                                epoch_s=None, error=f"{type(e).__name__}: {(str(e).strip().splitlines() or [''])[0][:200]}"), None
            first_step = first_step if first_step is not None else age
            rows.append(row)
            print(rows[-1], flush=True)
            if out is not None:
                _ratios(rows)
                pd.DataFrame(rows).to_csv(out, index=False)
    _ratios(rows)
    return rows, first_step


def _epoch_row(args, device, data, v, capture):
    """(row, process age at the first step) of one variant and mode: a warm-up of 10 steps, then
    one timed pass over the training images."""
    s = Setup(v, args, device, args.width, tuple(data.x_train.shape[1:]), data.num_classes, capture=capture)
    gen = torch.Generator(device=device).manual_seed(0)
    loader = Loader(data.x_train, data.y_train, args.batch, shuffle=True, augment=True, drop_last=True,
                    generator=gen)
    age = None
    for i, (x, y) in enumerate(loader):  # warm-up (cudnn autotuning, compiling, capture)
        age = process_age_s() if age is None else age
        s.step(x, y)
        if i == 10:
            break
    sync(device)
    t = time.perf_counter()
    for x, y in loader:
        s.step(x, y)
    sync(device)
    return dict(width=args.width, variant=v, compile=args.compile,
                mode="captured" if s.train_step.replay is not None else "eager",
                capture_asked=capture, amp=str(s.amp).replace("torch.", ""),
                epoch_s=time.perf_counter() - t, images=len(data.x_train),
                loss_sum=float(s.train_step.loss_sum)), age


def _ratios(rows):
    base = {r["capture_asked"]: r["epoch_s"] for r in rows if r["variant"] == "standard" and r["epoch_s"] is not None}
    for r in rows:
        ok = r["epoch_s"] is not None and r["capture_asked"] in base
        r["ratio_to_standard"] = r["epoch_s"] / base[r["capture_asked"]] if ok else None


def eval_cost(device, samples=500, width=64, dataset="cifar10-jpeg"):
    """Seconds of each phase of a full-width LCNN's evaluation (lcnn_core.evaluate's steps,
    on an untrained model): the switch to eval (Lanczos per SN conv), the geometry on
    ``samples`` test images for the three outputs, PGD on them, and the provable bound."""
    from lcnn_core.bound import loss_bound
    from lcnn_core.evaluate import CURVATURE_OUTPUTS, _eval_batches, evaluate_geometry, full_precision
    from lcnn_core.attacks import robust_accuracy
    cfg = resolve(dict(variant="lcnn", arch="resnet18", width=width, dataset=dataset))
    data = load_dataset(dataset, n_train=1000).to(device)
    torch.manual_seed(0)
    model = model_for_shape(cfg, tuple(data.x_train.shape[1:]), data.num_classes, device)
    out = {}
    with full_precision():
        sync(device)
        t = time.perf_counter()
        model.eval()
        sync(device)
        out["eval_switch_s"] = time.perf_counter() - t
        batches = _eval_batches(data, samples, cfg["eval_batch_size"])
        for output in CURVATURE_OUTPUTS:
            t = time.perf_counter()
            evaluate_geometry(model, batches, progress=False, output=output,
                              **({} if output == "loss" else dict(hessian_methods=("lanczos",))))
            sync(device)
            out[f"geometry_{output}_s"] = time.perf_counter() - t
        t = time.perf_counter()
        robust_accuracy(model, batches, eps_list=tuple(cfg["eval_pgd_eps"]), steps=cfg["eval_pgd_steps"], progress=False)
        sync(device)
        out["pgd_s"] = time.perf_counter() - t
        t = time.perf_counter()
        loss_bound(model, tuple(data.x_test.shape[1:]))
        out["bound_s"] = time.perf_counter() - t
    out = {k: round(v, 2) for k, v in out.items()}
    out.update(samples=samples, width=width, total_s=round(sum(out.values()), 2))
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--widths", type=int, nargs="+", default=[16, 64], help="CPU step widths")
    ap.add_argument("--width", type=int, default=64, help="GPU epoch width")
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--rounds", type=int, default=9, help="rounds at width <= 16")
    ap.add_argument("--rounds-wide", type=int, default=3, help="rounds at wider widths")
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads (1: CPU time is the step's own work)")
    ap.add_argument("--epoch", action="store_true", help="time one full epoch per variant")
    ap.add_argument("--compile", default="auto", choices=["auto", "on", "off"])
    ap.add_argument("--capture", default="eager", choices=["eager", "captured", "both"],
                    help="--epoch: the eager step, the CUDA-graph replay, or both")
    ap.add_argument("--eval-cost", type=int, default=0, help="--epoch: then time a full-width evaluation on N images")
    ap.add_argument("--name", default=None, help="output file stem (default train_step_<device>[_epoch])")
    ap.add_argument("--flush-denormal", action="store_true")
    ap.add_argument("--no-profile", action="store_true")
    ap.add_argument("--converge-width", type=int, default=64, help="LCNN width for the eval-switch cost (0: skip)")
    ap.add_argument("--dataset", default="cifar10-jpeg")
    ap.add_argument("--n-train", type=int, default=None)
    ap.add_argument("--variants", nargs="+", default=VARIANTS)
    ap.add_argument("--out", default="results/benchmarks")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.set_flush_denormal(args.flush_denormal)
    device = torch.device(args.device)
    prov = provenance(device)  # at the start: the code that runs, whatever the tree becomes meanwhile
    t0 = time.perf_counter()
    extra = {}
    name = args.name or f"train_step_{device.type}" + ("_epoch" if args.epoch else "")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.epoch:
        rows, extra["first_step_s"] = epoch_times(args, device, out / f"{name}.csv")
        print(f"first step {extra['first_step_s']} s after process start", flush=True)
        if args.eval_cost:  # the epochs' JSON first: a call cut short during the evaluation keeps them
            _write_json(out / f"{name}.json", args, t0, prov, rows, extra)
            extra["eval_cost"] = eval_cost(device, args.eval_cost, args.width, args.dataset)
            print(extra["eval_cost"], flush=True)
    else:
        rows, profile = [], []
        for width in args.widths:
            r, setups, batch = step_times(args, device, width)
            rows += r
            if width == min(args.widths) and not args.no_profile:
                profile = profile_rows(setups, batch)
        if args.converge_width:
            extra["converge"] = converge_cost(device, args.converge_width)
            print(extra["converge"], flush=True)
    df = pd.DataFrame(rows).drop(columns="round_s", errors="ignore")  # per-round times: the JSON
    print(df.to_string(index=False))
    df.to_csv(out / f"{name}.csv", index=False)
    if not args.epoch and profile:
        pd.DataFrame(profile).to_csv(out / "train_step_profile_cpu.csv", index=False)
    _write_json(out / f"{name}.json", args, t0, prov, rows, extra)


def _write_json(path, args, t0, prov, rows, extra):
    meta = dict(vars(args), wall_time_s=round(time.perf_counter() - t0, 1),
                provenance=prov, table=rows, **extra)
    path.write_text(json.dumps(meta, indent=2, default=str))


if __name__ == "__main__":
    main()
