"""Time per training step of each variant as a ratio to Standard, measured in one run.

CPU (default): a narrow ResNet-18 (width 16) on a fixed batch of 128 CIFAR-sized images;
the variants are interleaved over several rounds and the median step time is reported.
GPU (--epoch): full-width ResNet-18, one epoch on the chosen dataset with the on-device
loader, AMP bf16 and channels_last (what ``lcnn_core.train`` uses), after a warm-up.

    python benchmarks/train_step.py                      # CPU ratios
    python benchmarks/train_step.py --epoch --dataset cifar10-jpeg --width 64   # GPU epoch times

Writes results/benchmarks/train_step_<device>.csv and .json (with provenance).
"""
import argparse
import json
import statistics
import time
from pathlib import Path

import pandas as pd
import torch

from lcnn_core.config import resolve
from lcnn_core.data import Loader, load_dataset
from lcnn_core.provenance import provenance
from lcnn_core.train import amp_dtype, model_for_shape, optimizer_for, training_loss

VARIANTS = ["standard", "lcnn", "gradreg", "lcnn_gradreg", "cure", "softplus_wd", "adv"]


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


class Setup:
    """Model, optimiser and AMP settings of one variant, ready to step."""

    def __init__(self, variant, args, device, image_shape=(3, 32, 32), num_classes=10):
        self.cfg = resolve(dict(variant=variant, arch="resnet18", width=args.width, dataset=args.dataset))
        torch.manual_seed(0)
        self.model = model_for_shape(self.cfg, image_shape, num_classes).to(device)
        self.channels_last = device.type == "cuda"
        if self.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.opt = optimizer_for(self.model, self.cfg)
        self.amp = amp_dtype(self.cfg, device)
        self.device = device

    def step(self, x, y):
        self.model.train()
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.autocast(self.device.type, dtype=self.amp or torch.float32, enabled=self.amp is not None):
            loss, _ = training_loss(self.model, x, y, self.cfg)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()


def step_times(args, device):
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(args.batch, 3, 32, 32, generator=gen).to(device)
    y = torch.randint(0, 10, (args.batch,), generator=gen).to(device)
    setups = {v: Setup(v, args, device) for v in args.variants}
    times = {v: [] for v in args.variants}
    for v, s in setups.items():  # warm-up
        s.step(x, y)
    for _ in range(args.rounds):
        for v, s in setups.items():
            sync(device)
            t = time.perf_counter()
            s.step(x, y)
            sync(device)
            times[v].append(time.perf_counter() - t)
    return [dict(variant=v, step_s=statistics.median(t)) for v, t in times.items()]


def epoch_times(args, device):
    data = load_dataset(args.dataset, n_train=args.n_train).to(device)
    rows = []
    for v in args.variants:
        s = Setup(v, args, device, tuple(data.x_train.shape[1:]), data.num_classes)
        gen = torch.Generator(device=device).manual_seed(0)
        loader = Loader(data.x_train, data.y_train, args.batch, shuffle=True, augment=True, drop_last=True,
                        generator=gen)
        for i, (x, y) in enumerate(loader):  # warm-up (cudnn autotuning)
            s.step(x, y)
            if i == 10:
                break
        sync(device)
        t = time.perf_counter()
        for x, y in loader:
            s.step(x, y)
        sync(device)
        rows.append(dict(variant=v, epoch_s=time.perf_counter() - t, images=len(data.x_train)))
        print(rows[-1], flush=True)
    return rows


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--width", type=int, default=16)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--epoch", action="store_true", help="time one full epoch per variant")
    ap.add_argument("--dataset", default="cifar10-jpeg")
    ap.add_argument("--n-train", type=int, default=None)
    ap.add_argument("--variants", nargs="+", default=VARIANTS)
    ap.add_argument("--out", default="results/benchmarks")
    args = ap.parse_args()
    device = torch.device(args.device)
    t0 = time.perf_counter()
    rows = epoch_times(args, device) if args.epoch else step_times(args, device)
    df = pd.DataFrame(rows)
    key = "epoch_s" if args.epoch else "step_s"
    df["ratio_to_standard"] = df[key] / df.loc[df.variant == "standard", key].iloc[0]
    print(df.to_string(index=False))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    name = f"train_step_{device.type}" + ("_epoch" if args.epoch else "")
    df.to_csv(out / f"{name}.csv", index=False)
    meta = dict(vars(args), wall_time_s=round(time.perf_counter() - t0, 1),
                provenance=provenance(device), table=rows)
    (out / f"{name}.json").write_text(json.dumps(meta, indent=2, default=str))


if __name__ == "__main__":
    main()
