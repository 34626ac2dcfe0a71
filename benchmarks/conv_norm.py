"""Accuracy and cost of the convolution operator norm: Lanczos (lcnn_core) vs power iteration.

Two parts, one CSV each under results/benchmarks/:

* ``conv_norm_dense.csv``: random small convolutions (stride 1 and 2, 1 x 1 to 5 x 5 kernels,
  3 x 3 to 8 x 8 inputs), where the dense SVD of the unrolled convolution is the truth.
  Relative error of ``layers.conv_operator_norm`` (Lanczos, from above) and of power
  iteration with the old rule (at most 300 steps, stop at a relative change below 1e-7).
* ``conv_norm_trained.csv``: every spectrally normalised conv of every finished LCNN run
  under runs/ (too large for a dense SVD). Both estimates, started from the vector u stored in
  the checkpoint (what the old eval-mode step started from) and from a fixed random vector,
  with their products with A^T A and wall time. Lanczos is an estimate from above and power
  iteration one from below, so the gap between them bounds the error of each.

    python benchmarks/conv_norm.py [--runs runs] [--random 200]

Writes results/benchmarks/conv_norm_{dense,trained}.csv and conv_norm.json (provenance).
"""
import argparse
import json
import time
from pathlib import Path

import pandas as pd
import torch
import torch.nn.functional as F

from lcnn_core.layers import SNConv2d, _pair, conv_operator_norm, conv_output_padding
from lcnn_core.provenance import provenance

OUT = Path(__file__).resolve().parent.parent / "results" / "benchmarks"


def power_norm(w, input_size, stride, padding, u, iters=300, tol=1e-7):
    """(sigma, steps): power iteration on A^T A from u, the rule lcnn_core used before Lanczos."""
    stride, padding = _pair(stride), _pair(padding)
    out_pad = conv_output_padding(input_size, w.shape[-2:], stride, padding)
    u, sigma = u / u.norm(), 0.0
    for step in range(1, iters + 1):
        v = F.conv2d(u, w, stride=stride, padding=padding)
        new = float(v.norm())
        u = F.conv_transpose2d(v, w, stride=stride, padding=padding, output_padding=out_pad)
        u = u / u.norm()
        if abs(new - sigma) <= tol * new:
            sigma = new
            break
        sigma = new
    return float(F.conv2d(u, w, stride=stride, padding=padding).norm()), step


def counted(fn):
    """Wrap conv2d to count products with A^T A (one conv2d each, plus Lanczos' residual checks)."""
    calls = [0]
    original = F.conv2d

    def conv2d(*args, **kwargs):
        calls[0] += 1
        return original(*args, **kwargs)

    F.conv2d = conv2d
    try:
        start = time.perf_counter()
        value = fn()
        return value, calls[0], time.perf_counter() - start
    finally:
        F.conv2d = original


def dense_norm(w, input_size, stride, padding):
    cin = w.shape[1]
    eye = torch.eye(cin * input_size[0] * input_size[1], dtype=torch.float64).view(-1, cin, *input_size)
    mat = F.conv2d(eye, w, stride=stride, padding=padding).flatten(1)
    return float(torch.linalg.matrix_norm(mat, ord=2))


def random_convs(n, seed=0):
    gen = torch.Generator().manual_seed(seed)
    rows = []
    for i in range(n):
        pick = lambda hi: int(torch.randint(1, hi + 1, (1,), generator=gen))  # noqa: E731
        cin, cout, k = pick(3), pick(4), [1, 2, 3, 5][pick(4) - 1]
        stride, padding, size = pick(2), pick(2) - 1, 2 + pick(6)
        if size + 2 * padding < k:
            continue
        w = torch.randn(cout, cin, k, k, generator=gen, dtype=torch.float64)
        u = torch.randn(1, cin, size, size, generator=gen, dtype=torch.float64)
        true = dense_norm(w, (size, size), stride, padding)
        lanczos = float(conv_operator_norm(w, (size, size), stride, padding, u=u)[0])
        power, _ = power_norm(w, (size, size), stride, padding, u)
        rows.append(dict(case=i, cin=cin, cout=cout, kernel=k, stride=stride, padding=padding, size=size,
                         true=true, lanczos_rel_err=(lanczos - true) / true, power_rel_err=(power - true) / true))
    return pd.DataFrame(rows)


def trained_convs(runs):
    from lcnn_core.train import is_finished, load_checkpoint, load_run
    rows = []
    for run_dir in sorted(Path(runs).glob("*/*")):
        if not is_finished(run_dir) or "lcnn" not in run_dir.name:
            continue
        stored = load_checkpoint(run_dir / "model.pt")["model"]  # u as saved, before any re-convergence
        model, cfg, _ = load_run(run_dir, "cpu")
        for name, conv in model.named_modules():
            if not isinstance(conv, SNConv2d):
                continue
            w = conv.weight.detach().double()
            args = (w, conv.input_size, conv.stride, conv.padding)
            row = dict(run=f"{run_dir.parent.name}/{run_dir.name}", layer=name, dim=conv.u.numel())
            starts = dict(stored=stored[f"{name}.u"].double(),
                          cold=torch.randn(conv.u.shape, generator=torch.Generator().manual_seed(0), dtype=torch.float64))
            for start, u in starts.items():
                (lanczos, _), calls, l_time = counted(lambda: conv_operator_norm(*args, u=u))
                (power, steps), _, p_time = counted(lambda: power_norm(*args, u))
                row.update({f"{start}_lanczos": float(lanczos), f"{start}_power": power,
                            f"{start}_gap": (float(lanczos) - power) / float(lanczos),
                            f"{start}_lanczos_products": calls, f"{start}_power_steps": steps,
                            f"{start}_lanczos_s": l_time, f"{start}_power_s": p_time})
            rows.append(row)
        print(run_dir, flush=True)
    return pd.DataFrame(rows)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", default="runs")
    ap.add_argument("--random", type=int, default=200, help="random small convs checked against the dense SVD")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    dense = random_convs(args.random)
    trained = trained_convs(args.runs)
    OUT.mkdir(parents=True, exist_ok=True)
    dense.to_csv(OUT / "conv_norm_dense.csv", index=False)
    trained.to_csv(OUT / "conv_norm_trained.csv", index=False)
    summary = dict(
        dense_cases=len(dense),
        dense_lanczos_rel_err=[float(dense.lanczos_rel_err.min()), float(dense.lanczos_rel_err.max())],
        dense_power_rel_err=[float(dense.power_rel_err.min()), float(dense.power_rel_err.max())],
        trained_convs=len(trained), trained_runs=int(trained.run.nunique()) if len(trained) else 0,
        **{f"trained_{start}_gap_{stat}": float(getattr(trained[f"{start}_gap"], stat)()) if len(trained) else None
           for start in ("stored", "cold") for stat in ("median", "max")},
    )
    meta = provenance("cpu", script="benchmarks/conv_norm.py", wall_time_s=round(time.perf_counter() - start, 1),
                      settings=vars(args), summary=summary)
    (OUT / "conv_norm.json").write_text(json.dumps(meta, indent=2) + "\n")
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
