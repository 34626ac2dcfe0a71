"""Training: the paper's seven variants with one loop (STUDY.md §3).

SGD with momentum, weight decay (never on log beta / log gamma), a multi-step (or
one-cycle) learning rate stepped per batch (``scheduler_for``); data on the device with
batch-wise augmentation; AMP (bf16) and channels_last on CUDA. Every epoch writes an atomic checkpoint, so ``resume=True``
continues a killed run to the same final weights. A run directory holds:

    config.yaml       the resolved configuration
    history.csv       one row per epoch (loss, accuracy, beta / gamma statistics, time)
    checkpoint.pt     the last finished epoch (model, optimiser, scheduler, RNG states)
    model.pt          final weights (written at the end)
    provenance.json   git sha, versions, hardware, preset, seed, times (written last:
                      its presence marks the run finished)

Started by torchrun, the same call trains one run data-parallel (lcnn_core.distributed):
each process takes its shard of every global batch, only rank 0 writes, and the
checkpoint is the one a single process writes, so either can resume the other.
"""
import math
import pickle
import shutil
import time
import warnings
from pathlib import Path

import pandas as pd
import torch
import torch.nn.functional as F
import yaml
from tqdm import tqdm  # text bars: they render in terminals, papermill logs and built books alike

from . import distributed
from .atomic import save_torch, write_text
from .bound import paper_proxy
from .checks import input_gradients
from .config import TRAINING_VARIANTS, ConfigError, resolve, run_name
from .data import Loader, load_dataset
from .layers import deferred_norms, frozen, init_norms
from .models import build_model
from .provenance import now, process_age_s, provenance
from .regularizers import cure_penalty, gradient_penalty, lcnn_penalty
from .step import TrainStep, fp16_gradient_scaler, wants_capture

NO_DECAY = ("log_beta", "log_gamma")


class TrainingError(RuntimeError):
    """The run cannot go on (non-finite loss): the last good checkpoint is kept."""


class CheckpointError(ValueError):
    """An unreadable checkpoint or one that belongs to another configuration."""


class DeadlineReached(Exception):
    """``train(stop_at=...)`` stopped between epochs: the run is unfinished, its checkpoint kept.
    Raised on every rank at once (the decision is collective), so torchrun's processes agree."""


# ------------------------------------------------------------------ set-up
def pick_device(cfg):
    if cfg["device"] == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if cfg["device"] == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device=cuda requested but CUDA is not available")
    return torch.device(cfg["device"])


def amp_dtype(cfg, device):
    """The autocast dtype, or None for fp32. ``amp: auto`` follows the hardware (GPU.md):
    bf16 on CUDA compute capability >= 8.0 (A100, L4, H100), fp16 with a GradScaler on 7.x
    (T4, V100: tensor cores for fp16 only), fp32 below (P100: no tensor cores) and on CPU.
    The capability decides, not ``torch.cuda.is_bf16_supported()``, which is True where bf16
    is only emulated."""
    mode = cfg["amp"]
    if mode == "auto":
        mode = "off"
        if device.type == "cuda":
            major, _ = torch.cuda.get_device_capability(device)
            mode = "bf16" if major >= 8 else "fp16" if major >= 7 else "off"
    return {"off": None, "bf16": torch.bfloat16, "fp16": torch.float16}[mode]


def model_for(cfg, data, device=None, init=True):
    """The run's model for a dataset (shape and classes taken from the data)."""
    return model_for_shape(cfg, tuple(data.x_train.shape[1:]), data.num_classes, device, init)


def model_for_shape(cfg, image_shape, num_classes, device=None, init=True):
    """The run's model for C x H x W images and ``num_classes`` classes, on ``device``. The
    weights are drawn on the CPU (the seed gives the same model on every device); the spectrally
    normalised convs' initial operator norms are computed on ``device`` (``layers.deferred_norms``),
    or not at all with ``init=False``, for a checkpoint that brings its own."""
    c, h, w = image_shape
    with deferred_norms():
        model = build_model(cfg["arch"], TRAINING_VARIANTS[cfg["variant"]]["model"], num_classes,
                            cfg["width"], c, (h, w))
    if device is not None:
        model = model.to(device)
    return init_norms(model) if init else model


def load_data(cfg):
    return load_dataset(cfg["dataset"], root=cfg["data_root"], n_train=cfg["n_train"],
                        n_test=cfg["n_test"], seed=cfg["subset_seed"])


def optimizer_for(model, cfg):
    decay = [p for n, p in model.named_parameters() if not n.endswith(NO_DECAY)]
    no_decay = [p for n, p in model.named_parameters() if n.endswith(NO_DECAY)]
    groups = [dict(params=decay, weight_decay=cfg["weight_decay"]), dict(params=no_decay, weight_decay=0.0)]
    # fused: one kernel for every parameter (CPU and CUDA) instead of about eight dispatched ops
    # per parameter; it rounds the update as the loop does to within an ulp (a fused multiply-add)
    return torch.optim.SGD(groups, lr=cfg["lr"], momentum=cfg["momentum"], fused=_fusable(decay + no_decay))


def _fusable(params):
    return all(p.is_floating_point() and p.device.type in ("cpu", "cuda") for p in params)


SCHEDULE_FORMAT = "per-step"  # checkpoints of the older per-epoch scheduler cannot be resumed


def milestone_steps(fractions, epochs, steps_per_epoch):
    """Optimiser steps after which lr *= lr_decay, one per fraction f of the run, increasing.

    Each f goes to the epoch boundary nearest f * epochs, as the per-epoch schedule did
    (200 epochs: 150, 175; 10 epochs: 8, 9), when those boundaries are distinct and inside
    the run (1 <= m < epochs). Otherwise (short runs: at 5 epochs both of 0.75, 0.875 round
    to epoch 4) every f goes to the step nearest f * epochs * steps_per_epoch, so the run
    keeps the schedule's shape at any length: never two drops at once, none lost at the end.
    """
    fr = sorted(float(f) for f in fractions)
    by_epoch = [round(f * epochs) for f in fr]
    if len(set(by_epoch)) == len(by_epoch) and all(1 <= m < epochs for m in by_epoch):
        return [m * steps_per_epoch for m in by_epoch]
    total, steps = epochs * steps_per_epoch, []
    for f in fr:
        m = max(1, round(f * total))
        steps.append(max(m, steps[-1] + 1) if steps else m)
    return steps


def scheduler_for(opt, cfg, steps_per_epoch):
    """The learning-rate schedule, stepped once per optimiser step (every batch).

    lr_schedule="multistep": lr * lr_decay^k after the k-th of ``milestone_steps``.
    lr_schedule="onecycle": torch's OneCycleLR over all steps, peak lr at
    onecycle_warmup of the run (linear-cosine: start lr / 25, end lr / 2.5e5, torch's
    defaults), momentum held at cfg["momentum"] (no momentum cycling).
    """
    if cfg["lr_schedule"] == "onecycle":
        return torch.optim.lr_scheduler.OneCycleLR(
            opt, max_lr=cfg["lr"], total_steps=cfg["epochs"] * steps_per_epoch,
            pct_start=cfg["onecycle_warmup"], cycle_momentum=False)
    milestones = milestone_steps(cfg["milestones"], cfg["epochs"], steps_per_epoch)
    return torch.optim.lr_scheduler.MultiStepLR(opt, milestones=milestones, gamma=cfg["lr_decay"])


def wants_compile(cfg, device):
    """Whether a run trains under ``torch.compile``: as ``compile`` says, where "auto" means
    CUDA only (on 2 CPU cores compiling a ResNet-18 took 2.5 min and saved about 12 % of an
    LCNN step: it does not pay for a 10-minute run; benchmarks/train_step.py), and there only
    where the step is not replayed as a CUDA graph (``step.wants_capture``). Never for
    GradReg or CURE, whose double backward torch.compile does not support."""
    spec = TRAINING_VARIANTS[cfg["variant"]]
    if spec["gradreg"] or spec["cure"] or cfg["compile"] == "off":
        return False
    if cfg["compile"] == "on":
        return True
    # auto: a captured step already costs one launch, and compiling costs minutes of start-up
    return device.type == "cuda" and not wants_capture(cfg, device)


class Compiled(torch.nn.Module):
    """``model`` under ``torch.compile``; if the first call fails to compile, one warning line
    and eager from then on (a missing C compiler or an unsupported op must not end a run).
    Parameters, buffers and modules are the model's own."""

    def __init__(self, model):
        super().__init__()
        self.model = model
        self._fn = [torch.compile(model)]  # a list: not registered as a second submodule
        self._checked = False

    def forward(self, *args):
        if self._fn and not self._checked:
            try:
                out = self._fn[0](*args)
            except Exception as e:
                reason = (str(e).strip().splitlines() or [""])[0][:120]
                warnings.warn(f"torch.compile failed ({type(e).__name__}: {reason}); training eager", stacklevel=2)
                self._fn = []
                return self.model(*args)
            self._checked = True
            return out
        return self._fn[0](*args) if self._fn else self.model(*args)


def compiled(model, cfg, device):
    """The network the training step calls: ``Compiled(model)`` where ``wants_compile``, else ``model``."""
    return Compiled(model) if wants_compile(cfg, device) else model


# ------------------------------------------------------------------ one step
def training_loss(model, x, y, cfg, grad_scale=None):
    """(total loss, logits) for one batch under the run's variant. ``grad_scale``: fp16's loss
    scale (a 0-d tensor), applied inside the input-gradient backward of GradReg and CURE and
    divided out again, so their penalties are the unscaled ones."""
    spec = TRAINING_VARIANTS[cfg["variant"]]
    if spec["adversarial"]:
        from .attacks import pgd_l2
        with frozen(model):  # the current sigma and running statistics; converging them per batch is waste
            # a fresh random start per batch, drawn from the run's global generator (seeded by
            # the run, saved in its checkpoint, so a resumed run draws the same starts)
            start_seed = int(torch.randint(2**31 - 1, ()))
            x = pgd_l2(model, x, y, eps=cfg["adv_eps"], steps=cfg["adv_steps"], step_size=cfg["adv_step"],
                       seed=start_seed, check=False)
    needs_grad = spec["gradreg"] or spec["cure"]
    if needs_grad:  # one forward for the loss and the per-sample input gradients it penalises
        grad, losses, logits, x = input_gradients(model, x, y, create_graph=True, check=False, scale=grad_scale)
    else:
        logits = model(x)
        losses = F.cross_entropy(logits.float(), y, reduction="none")
    loss = losses.mean()
    if needs_grad:
        if spec["gradreg"]:
            loss = loss + cfg["gradreg"] * gradient_penalty(grad)
        if spec["cure"]:
            loss = loss + cfg["cure"] * cure_penalty(model, x, y, grad, h=cfg["cure_h"], scale=grad_scale)
    if spec["lcnn_penalty"]:
        loss = loss + lcnn_penalty(model, cfg["lam_beta"], cfg["lam_gamma"])
    return loss, logits


@torch.no_grad()
def test_accuracy(model, data, batch_size=500):
    """(mean CE loss, accuracy %) on the test split, eval mode."""
    model.eval()
    total, correct, n = 0.0, 0, 0
    for x, y in Loader(data.x_test, data.y_test, batch_size):
        logits = model(x).float()
        total += F.cross_entropy(logits, y, reduction="sum").item()
        correct += (logits.argmax(1) == y).sum().item()
        n += len(y)
    return total / n, 100.0 * correct / n


# ------------------------------------------------------------------ checkpoints
def load_checkpoint(path, map_location="cpu"):
    """A checkpoint or model.pt as a dict, read with ``weights_only=True``: tensors and plain
    data (dicts, lists, numbers, strings) only, so a run folder from elsewhere (a shared Kaggle
    dataset) cannot run code when it is loaded. Anything else is a one-line CheckpointError."""
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError:  # weights_only met a global it does not allow
        raise CheckpointError(f"checkpoint {path} holds objects other than tensors and plain data; "
                              "refused (it could run code when unpickled)") from None
    except Exception as e:  # truncated zip, pickle garbage, ...
        raise CheckpointError(f"checkpoint {path} is corrupt or unreadable ({type(e).__name__}); "
                              "delete it to restart the run") from None
    if not isinstance(ckpt, dict) or "model" not in ckpt or "config" not in ckpt:
        raise CheckpointError(f"checkpoint {path} is not an lcnn_core checkpoint")
    return ckpt


def _differences(a, b, ignore=("device", "amp", "channels_last", "capture", "compile", "data_root")):
    return sorted(k for k in set(a) | set(b) if k not in ignore and a.get(k) != b.get(k))


# ------------------------------------------------------------------ the loop
def run_dir_for(cfg, out="runs", preset="custom", name=None):
    return Path(out) / preset / (name or run_name(cfg))


def is_finished(run_dir):
    return (Path(run_dir) / "provenance.json").exists()


def train(config, out="runs", preset="custom", name=None, resume=False, progress=True, log=print,
          stop_at=None):
    """Train one run; returns its directory. ``config``: overrides of DEFAULTS (validated).

    A finished run (provenance.json present) is skipped; an unfinished one needs
    ``resume=True``. Bad input raises ConfigError / DataError / CheckpointError before
    anything is written. Under torchrun every rank calls this; rank 0 alone writes and logs.

    ``stop_at`` (a ``time.time()`` value): before each epoch after the first of this call,
    stop if the last epoch's duration would carry the next one past it, raising DeadlineReached;
    the run is left unfinished with its checkpoint (``is_finished`` is False), ready for ``resume``.
    """
    ddp = distributed.context()
    if not ddp.is_main:
        progress, log = False, lambda *args: None
    cfg = resolve(config)
    run_dir = run_dir_for(cfg, out, preset, name)
    if is_finished(run_dir):
        log(f"{run_dir}: finished, skipped")
        return run_dir
    ckpt_path = run_dir / "checkpoint.pt"
    ckpt = None
    if ckpt_path.exists():
        if not resume:
            raise ConfigError(f"{run_dir} holds an unfinished run; pass --resume to continue it "
                              "or delete the folder to start again")
        ckpt = load_checkpoint(ckpt_path)
        diff = _differences(ckpt["config"], cfg)
        if diff:
            raise CheckpointError(f"cannot resume {run_dir}: config differs in {', '.join(diff)}")
        if ckpt.get("lr_schedule") != SCHEDULE_FORMAT:
            raise CheckpointError(f"cannot resume {run_dir}: its checkpoint has the older per-epoch "
                                  "learning-rate schedule; delete the folder to restart the run")
    phases = dict(start_s=process_age_s())  # seconds since the process started, at each phase
    device = ddp.start(pick_device(cfg))  # under torchrun: cuda:LOCAL_RANK, process group open
    data = load_data(cfg).to(device)  # before any file is written: missing data leaves nothing
    phases["data_s"] = process_age_s()
    torch.manual_seed(cfg["seed"])
    model = model_for(cfg, data, device)
    channels_last = cfg["channels_last"] == "on" or (cfg["channels_last"] == "auto" and device.type == "cuda")
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    opt, amp = optimizer_for(model, cfg), amp_dtype(cfg, device)
    gen = torch.Generator(device=device).manual_seed(cfg["seed"])
    loader = Loader(data.x_train, data.y_train, cfg["batch_size"], shuffle=True, augment=cfg["augment"],
                    flip=cfg["flip"], drop_last=len(data.x_train) > cfg["batch_size"], generator=gen,
                    shard=ddp.shard)
    # built before the optimiser state is loaded: OneCycleLR writes its step-0 lr when built
    sched = scheduler_for(opt, cfg, len(loader))
    history, start_epoch, wall_before = [], 0, 0.0
    if ckpt is not None:
        model.load_state_dict(ckpt["model"])
        opt.load_state_dict(ckpt["optimizer"])
        sched.load_state_dict(ckpt["scheduler"])
        gen.set_state(ckpt["generator"])
        torch.set_rng_state(ckpt["torch_rng"])
        history, start_epoch, wall_before = ckpt["history"], ckpt["epoch"], ckpt["wall_time"]
        log(f"{run_dir}: resuming after epoch {start_epoch}")
    # DDP with global batch norm under torchrun; otherwise the model, compiled where it pays off
    net = ddp.wrap(model, device) if ddp.enabled else compiled(model, cfg, device)
    capture = wants_capture(cfg, device, distributed=ddp.enabled)
    step = TrainStep(net, cfg, opt, sched, device, training_loss, amp=amp,
                     scaler=fp16_gradient_scaler(amp, device), capture=capture)
    if ddp.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "config.yaml").write_text(yaml.safe_dump(dict(cfg, preset=preset), sort_keys=False))
    started = ckpt["started"] if ckpt is not None else now()
    phases["model_s"] = process_age_s()
    log(f"{run_dir}: data at {phases['data_s']} s, model at {phases['model_s']} s after process start")
    t_start = time.perf_counter()
    spent = dict(train_s=0.0, test_s=0.0, checkpoint_s=0.0)  # this call's epochs, by phase
    last_epoch_s = None  # the whole previous epoch: training, test pass, checkpoint
    for epoch in range(start_epoch, cfg["epochs"]):
        if epoch > start_epoch:
            last_epoch_s = time.perf_counter() - t0
        if _past_deadline(stop_at, last_epoch_s, ddp, device):
            raise DeadlineReached(f"{run_dir}: stopped before epoch {epoch + 1}/{cfg['epochs']} (deadline); "
                                  "checkpoint kept, continue with --resume")
        net.train()
        t0 = time.perf_counter()
        step.start_epoch()
        bar = tqdm(loader, desc=f"{run_dir.name} epoch {epoch + 1}/{cfg['epochs']}", disable=not progress,
                   leave=False, mininterval=2.0)
        for x, y in bar:
            if channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            if "first_step_s" not in phases:
                phases["first_step_s"] = process_age_s()
            step(x, y)
            # on CPU reading a tensor costs no wait, so a non-finite loss stops the epoch at once
            # (on a GPU the epoch's end reads it: one sync an epoch)
            if device.type == "cpu" and not ddp.all_true(step.first_bad < 0):
                break
        loss_sum, correct, first_bad, seen = step.totals()
        ddp.all_sum(loss_sum, correct)  # the global batch's numbers
        seen, first_bad = seen * ddp.world_size, ddp.earliest(first_bad)
        if int(first_bad) >= 0:
            raise TrainingError(f"non-finite loss at epoch {epoch + 1}, step {int(first_bad) + 1}; "
                                f"stopped, last good checkpoint kept in {run_dir} (epoch {epoch})")
        train_time = time.perf_counter() - t0
        spent["train_s"] += train_time
        t1 = time.perf_counter()
        test_loss, test_acc = test_accuracy(model, data)
        proxy = paper_proxy(model)
        history.append(dict(
            epoch=epoch + 1, lr=opt.param_groups[0]["lr"], train_loss=float(loss_sum) / seen,
            train_acc=100.0 * float(correct) / seen, test_loss=test_loss, test_acc=test_acc,
            mean_beta=proxy["mean_beta"], sum_beta=proxy["sum_beta"], mean_gamma=proxy["mean_gamma"],
            log10_prod_gamma=math.log10(proxy["prod_gamma"]) if proxy["prod_gamma"] == proxy["prod_gamma"] else float("nan"),
            epoch_time=train_time,
        ))
        if progress:
            h = history[-1]
            log(f"{run_dir.name} epoch {h['epoch']}/{cfg['epochs']}: loss {h['train_loss']:.3f} "
                f"train {h['train_acc']:.1f}% test {h['test_acc']:.1f}% ({train_time:.1f}s)")
        spent["test_s"] += time.perf_counter() - t1
        wall = wall_before + time.perf_counter() - t_start
        if not ddp.is_main:
            continue
        t1 = time.perf_counter()
        pd.DataFrame(history).to_csv(run_dir / "history.csv", index=False)
        save_torch(dict(model=model.state_dict(), optimizer=opt.state_dict(), scheduler=sched.state_dict(),
                         generator=gen.get_state(), torch_rng=torch.get_rng_state(), history=history,
                         epoch=epoch + 1, config=cfg, wall_time=wall, started=started,
                         lr_schedule=SCHEDULE_FORMAT), ckpt_path)
        spent["checkpoint_s"] += time.perf_counter() - t1
    wall = wall_before + time.perf_counter() - t_start
    if not ddp.is_main:
        return run_dir
    save_torch(dict(model=model.state_dict(), config=cfg), run_dir / "model.pt")
    prov = provenance(device, preset=preset, variant=cfg["variant"], seed=cfg["seed"], started_utc=started,
                      finished_utc=now(), wall_time_s=round(wall, 2), epochs=cfg["epochs"],
                      processes=ddp.world_size, capture=step.replay is not None,
                      train_time_s=round(spent["train_s"], 2),  # this call's epochs (after a resume: since it)
                      phases=dict(phases, **{k: round(v, 2) for k, v in spent.items()},
                                  end_s=process_age_s()))
    write_text(pd.Series(prov).to_json(indent=2), run_dir / "provenance.json")
    return run_dir


def _past_deadline(stop_at, last_epoch_s, ddp, device):
    """True when another epoch of ``last_epoch_s`` seconds would end after ``stop_at`` (any rank)."""
    if stop_at is None:
        return False
    late = time.time() + (last_epoch_s or 0.0) > stop_at
    return not ddp.all_true(torch.tensor(not late, device=device))


def load_run(run_dir, device="cpu"):
    """(model in eval mode, config, dataset on ``device``) of a finished run."""
    run_dir = Path(run_dir)
    path = run_dir / "model.pt"
    if not path.exists():
        raise CheckpointError(f"{run_dir} has no model.pt: the run is missing or unfinished")
    saved = load_checkpoint(path, map_location=device)
    cfg = resolve(saved["config"])
    data = load_data(cfg).to(device)
    model = model_for(cfg, data, device, init=False)  # u and sigma come from the checkpoint
    model.load_state_dict(saved["model"])
    model.eval()
    return model, cfg, data


def remove_run(run_dir):
    shutil.rmtree(run_dir, ignore_errors=True)
